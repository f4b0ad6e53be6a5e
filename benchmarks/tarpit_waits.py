"""How long each command takes to fail against a service that accepts connections and never answers.

    .venv/bin/python benchmarks/tarpit_waits.py --json
    .venv/bin/python benchmarks/tarpit_waits.py --cases tracking:pool-list,s3:run --cap 200 --json

A "tarpit" on 127.0.0.1 accepts every connection and never sends a byte, as a hung tracking server or S3
gateway would. Each case runs one command with the tracking URI (`tracking:`) or the S3 endpoint of the
artifact store (`s3:`) pointing at it, in a fresh home; per case: seconds until the command ended (`cap`
if it was still waiting then and was killed; interpreter start-up and imports included), its exit code,
whether its output named the tarpit, and the last line it wrote to stderr. `preflight:` cases time
`lorasoup run`'s preflight alone, in this process.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fault_injection import make_pool, tarpit  # benchmarks/ is on sys.path when a script runs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
LORASOUP = str(Path(sys.executable).parent / "lorasoup")
COMMANDS = ("pool-list", "pool-train", "compose", "run")
CASES = (*(f"{service}:{command}" for service in ("tracking", "s3") for command in COMMANDS),
         "preflight:tracking", "preflight:s3", "preflight:both")


def _pool_config(root: Path, store: str | None, tracking: str | None) -> Path:
    return make_pool(root, n_tasks=1, steps=2, store=store, tracking=tracking)


def _experiment_config(root: Path, store: str, tracking: str) -> Path:
    import yaml

    cfg = {"name": "tarpit", "model": {"spec": "tiny-llama", "device": "cpu"}, "storage": {"uri": store},
           "tracking": {"tracking_uri": tracking},
           "pool": {"tasks": [{"source": "skills", "name": "add", "n_train": 20, "n_validation": 4, "n_test": 4}],
                    "training": {"steps": 2}, "embed_examples": 0},
           "targets": [{"task": {"source": "skills", "name": "double", "n_test": 4}, "shots": 2}],
           "selection": {"filters": ["random"], "k": 1}, "methods": ["uniform"], "eval": {"limit": 4}}
    path = root / "experiment.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def preflight_case(case: str, url: str, root: Path) -> dict[str, Any]:
    """`run`'s preflight alone, in this process (no interpreter start-up in the figure)."""
    from lorasoup_core.config import ConfigError
    from lorasoup_core.experiment.config import ExperimentConfig
    from lorasoup_core.experiment.preflight import check_services

    which = case.split(":")[1]
    for var, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "LORASOUP_HOME": str(root / "home")}.items():
        os.environ.setdefault(var, value)
    services = {"storage": {"uri": (root / "store").as_uri()}, "tracking": {"tracking_uri": f"sqlite:///{root}/m.db"}}
    if which in ("s3", "both"):
        services["storage"] = {"uri": "s3://tarpit-bucket/x", "s3_endpoint_url": url}
    if which in ("tracking", "both"):
        services["tracking"] = {"tracking_uri": url}
    cfg = ExperimentConfig.model_validate({
        "name": "tarpit", "model": {"spec": "tiny-llama"}, "methods": ["uniform"], **services,
        "pool": {"tasks": [{"source": "skills", "name": "add"}]}, "targets": [{"task": {"source": "skills",
                                                                                         "name": "double"}}]})
    started = time.monotonic()
    try:
        check_services(cfg)
        message = "answered"
    except ConfigError as err:
        message = str(err).replace("\n", " |")
    return {"case": case, "seconds": round(time.monotonic() - started, 1), "exit": None, "named": url in message,
            "last_line": message[:400]}


def run_case(case: str, url: str, root: Path, cap: float) -> dict[str, Any]:
    service, command = case.split(":")
    if service == "preflight":
        return preflight_case(case, url, root)
    env = {**os.environ, "LORASOUP_HOME": str(root / "home"), "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "OMP_NUM_THREADS": "1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    for var in ("MLFLOW_TRACKING_URI", "LORASOUP_STORE", "LORASOUP_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL",
                "LORASOUP_FAULT"):
        env.pop(var, None)
    store, tracking = (root / "store").as_uri(), f"sqlite:///{root / 'mlflow.db'}"
    if service == "tracking":
        tracking = url
    else:
        store = "s3://tarpit-bucket/x"
        env["LORASOUP_S3_ENDPOINT_URL"] = url
    env["MLFLOW_TRACKING_URI"], env["LORASOUP_STORE"] = tracking, store
    args = {"pool-list": ["pool", "list"],
            "pool-train": ["pool", "train", "--no-progress", "--config", str(_pool_config(root, store, tracking))],
            "compose": ["compose", "--target", "skills:double", "--method", "uniform", "--model", "tiny-llama"],
            "run": ["run", "--config", str(_experiment_config(root, store, tracking))]}[command]
    started = time.monotonic()
    proc = subprocess.Popen([LORASOUP, *args], env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=cap)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    seconds = round(time.monotonic() - started, 1)
    lines = [line.strip("│ ") for line in err.splitlines() if any(ch.isalpha() for ch in line) and " INFO " not in line]
    return {"case": case, "seconds": seconds, "exit": code, "named": url in err,
            "last_line": lines[-1][:300] if lines else (out.strip().splitlines() or [""])[-1][:300]}


def main(argv: list[str] | None = None) -> int:
    from benchmarks._report import emit

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--cap", type=float, default=180, help="kill a command still waiting after this many seconds")
    ap.add_argument("--json", action="store_true", help="one JSON object")
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        ap.error(f"unknown cases: {', '.join(unknown)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="tarpit-") as tmp, tarpit() as url:
        for i, case in enumerate(cases):
            (Path(tmp) / str(i)).mkdir()
            results.append(run_case(case, url, Path(tmp) / str(i), args.cap))
    emit({"cap_s": args.cap, "cases": results}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
