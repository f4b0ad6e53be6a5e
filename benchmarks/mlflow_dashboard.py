"""Screenshots of what a team looks at in MLflow's UI, taken by headless Chromium (Debian's `chromium`).

    .venv/bin/python benchmarks/mlflow_dashboard.py --tracking-uri sqlite:///$LORASOUP_HOME/mlflow.db \
        --experiment tiny-dashboard --out /tmp/dashboard --json
    .venv/bin/python benchmarks/mlflow_dashboard.py --tracking-uri sqlite:///$LORASOUP_HOME/mlflow.db \
        --experiment study-bbh --task navigate --seed 0 --out /tmp/dashboard --json

Starts `mlflow server` on 127.0.0.1 over the tracking database, takes the latest experiment run of
`--experiment`, and captures: its evaluation runs in the runs table (searched by
`tags.lorasoup.step = 'evaluate'`), MLflow's compare view of those runs (score, interval, n side by side),
the parent run's page (macro metrics) and the Models page. Prints the PNG paths and what the page
showed as text (so a missing view fails loudly). The server is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _report import emit  # noqa: E402  (benchmarks/ is on sys.path when a script runs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    raise SystemExit("no chromium on PATH: apt-get install chromium")


def shot(url: str, out: Path, size: str = "1700,1100") -> str:
    """Screenshot of a rendered page, and its DOM text (what the page showed)."""
    base = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--window-size={size}", "--virtual-time-budget=20000"]
    subprocess.run([*base, f"--screenshot={out}", url], check=True, capture_output=True, timeout=120)
    dom = subprocess.run([*base, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120).stdout
    return dom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--out", default="mlflow-screenshots")
    parser.add_argument("--task", help="Compare only this target's evaluation runs (a study has hundreds; "
                        "MLflow's compare view of them all does not render in time)")
    parser.add_argument("--seed", help="... and only this seed's")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from mlflow.tracking import MlflowClient

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(args.tracking_uri)
    from lorasoup_core.tracking import experiment_id

    experiment_id(args.experiment, args.tracking_uri)  # tags an older experiment so the UI opens its runs
    exp = client.get_experiment_by_name(args.experiment)
    parent = client.search_runs([exp.experiment_id], "tags.`lorasoup.kind` = 'experiment'", max_results=1,
                                order_by=["attributes.start_time DESC"])[0]
    only = "".join(f" and tags.`lorasoup.{k}` = '{v}'" for k, v in (("task", args.task), ("seed", args.seed)) if v)
    evals = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}' and "
                               f"tags.`lorasoup.step` = 'evaluate'{only}", max_results=1000)
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", args.tracking_uri, "--workers", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    ui = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{ui}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        search = urllib.parse.quote(f"tags.`lorasoup.step` = 'evaluate'{only}")
        ids = json.dumps([r.info.run_id for r in evals], separators=(",", ":"))
        pages = {
            "runs_table": f"{ui}/#/experiments/{exp.experiment_id}/runs?searchFilter={search}",
            "chart": f"{ui}/#/experiments/{exp.experiment_id}/runs?searchFilter={search}&compareRunsMode=CHART",
            "compare": f"{ui}/#/compare-runs?runs={urllib.parse.quote(ids)}&experiments="
                       f"{urllib.parse.quote(json.dumps([exp.experiment_id]))}",
            "parent_run": f"{ui}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}",
            "models": f"{ui}/#/models",
        }
        result = {"experiment": args.experiment, "parent_run": parent.info.run_id, "evaluation_runs": len(evals)}
        for name, url in pages.items():
            dom = shot(url, out / f"{name}.png")
            result[name] = {"png": str(out / f"{name}.png"), "url": url,
                            "shows_eval_runs": sum(r.info.run_name in dom for r in evals),
                            "shows_score": "score" in dom, "shows_models": "lorasoup." in dom}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    emit(result, args.json)


if __name__ == "__main__":
    main()
