"""Crash recovery of `lorasoup pool train`: kill it with SIGKILL at named points, run it again, count the damage.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fault_injection.py --json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fault_injection.py --points after-publish,concurrent --json

Each point gets a fresh home, store and tracking database and a tiny pool (tiny-llama, a few steps). The
first run has LORASOUP_FAULT=<point> (the code kills itself there, see `lorasoup_core.settings.fault`);
the rerun has none. Points, in the order a training passes them:

    mid-train        training written to its staging dir, not yet renamed into place
    after-train      the finished training is in its work dir, nothing published
    after-publish    the artifact is committed in the store, no registry version yet
    after-version    the version exists; no duplicate check, no run link, no champion decision yet
    before-champion  everything but the champion decision
    concurrent       no fault: two runs at once on a fresh home (one must wait for the other)

Per point, after the rerun: `retrained_finished` (adapters finished before the rerun and trained again),
`duplicates` (extra versions with the same fingerprints), `orphans` (committed artifacts no version points
to), `no_champion`, `champion_pending`, `running_runs` (MLflow runs left RUNNING), `stale_work` (staging
dirs left), `broken` (versions whose files fail verification); all 0 and every task registered is `ok`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

POINTS = ("mid-train", "after-train", "after-publish", "after-version", "before-champion")
SCENARIOS = (*POINTS, "concurrent")
WORDS = ["apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "ocean", "maple", "zebra"]
ANSWERS = {"first_letter": lambda w: w[0], "last_letter": lambda w: w[-1], "length": lambda w: str(len(w))}
EXPERIMENT = "fault-injection"



@contextmanager
def tarpit() -> Iterator[str]:
    """A service that accepts every connection and never sends a byte (a 'tarpit'): yields its
    http://127.0.0.1:<port> URL; closed on exit."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()

def make_pool(root: Path, n_tasks: int, steps: int, store: str | None = None, tracking: str | None = None) -> Path:
    """A pool config of `n_tasks` tiny jsonl tasks with its own store and tracking database under `root`
    (or the given store URI and tracking server)."""
    import yaml

    tasks = []
    for name in list(ANSWERS)[:n_tasks]:
        d = root / "data" / name
        d.mkdir(parents=True, exist_ok=True)
        rows = [json.dumps({"input": w, "target": ANSWERS[name](w)}) for w in WORDS]
        (d / "train.jsonl").write_text("\n".join(rows * 2) + "\n")
        (d / "validation.jsonl").write_text("\n".join(rows[:4]) + "\n")
        tasks.append({"source": "jsonl", "name": name, "path": str(d)})
    cfg = {"model": {"spec": "tiny-llama", "device": "cpu"},
           "pool": {"embed_examples": 0, "training": {"steps": steps, "max_validation": 4}, "tasks": tasks},
           "storage": {"uri": store or (root / "store").as_uri()},
           "tracking": {"tracking_uri": tracking or f"sqlite:///{root / 'mlflow.db'}", "experiment": EXPERIMENT}}
    path = root / "pool.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start(config: Path, log: Path, fault: str | None = None) -> subprocess.Popen:
    """`lorasoup pool train` in a child process of its own (the home beside the config); output to `log`."""
    env = {**os.environ, "LORASOUP_HOME": str(config.parent / "home"), "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("LORASOUP_FAULT", None)
    if fault:
        env["LORASOUP_FAULT"] = fault
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-c", "from lorasoup_core.cli import main; main()", "pool", "train",
                                 "--config", str(config), "--no-progress"], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def _open(config: Path):
    import yaml

    from lorasoup_core.registry import AdapterRegistry
    from lorasoup_core.storage import open_store

    cfg = yaml.safe_load(config.read_text())
    return AdapterRegistry(cfg["tracking"]["tracking_uri"], open_store(cfg["storage"]["uri"]))


def finished(config: Path) -> set[str]:
    """Tasks whose training had finished: registered, published, or complete in the local work dir."""
    from lorasoup_core.adapters import CARD_FILE
    from lorasoup_core.pool.ensure import PARTIAL

    reg = _open(config)
    done = {v.task for v in reg.list()} | {k.split("/")[2] for k in reg.store.list("adapters/")}
    work = config.parent / "home" / "work" / "trained"
    for d in work.glob("*/*") if work.is_dir() else []:
        if PARTIAL not in d.name and (d / CARD_FILE).is_file():
            done.add(d.name.rsplit("-", 2)[0])
    return done


def damage(config: Path, since: float, done_before: set[str]) -> dict[str, Any]:
    """What the runs since `since` (epoch s) left: see the module docstring."""
    from lorasoup_core.pool.ensure import PARTIAL
    from lorasoup_core.registry import RegistryError
    from lorasoup_core.registry.registry import CHAMPION_PENDING

    reg = _open(config)
    versions = reg.list()
    exp = reg.client.get_experiment_by_name(EXPERIMENT)
    runs = reg.client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    trainings = [r for r in runs if r.data.tags.get("lorasoup.step") == "train" and r.info.start_time >= since * 1000
                 and r.data.tags.get("lorasoup.reused_local_training") != "true"]
    by_fingerprints: dict[tuple[str, str, str], int] = {}
    for v in versions:
        key = (v.base_fingerprint, v.data_fingerprint, v.config_fingerprint)
        by_fingerprints[key] = by_fingerprints.get(key, 0) + 1
    no_champion = 0
    for name in {v.name for v in versions}:
        try:
            reg.get(f"{name}@champion")
        except RegistryError:
            no_champion += 1
    broken = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, v in enumerate(versions):
            try:
                reg.download(v, Path(tmp) / str(i))
            except Exception:
                broken += 1
    work = config.parent / "home" / "work" / "trained"
    return {
        "registered": sorted(v.task for v in versions),
        "trainings": len(trainings),
        "retrained_finished": sum(r.data.tags.get("lorasoup.task") in done_before for r in trainings),
        "duplicates": sum(n - 1 for n in by_fingerprints.values()),
        "orphans": len(reg.orphans()),
        "no_champion": no_champion,
        "champion_pending": sum(CHAMPION_PENDING in v.tags for v in versions),
        "running_runs": sum(r.info.status == "RUNNING" for r in runs),
        "killed_runs": sum(r.info.status == "KILLED" for r in runs),
        "stale_work": len(list(work.glob(f"*/*{PARTIAL}*"))) if work.is_dir() else 0,
        "broken": broken,
    }


def _tail(log: Path, n: int = 3000) -> str:
    return log.read_text(errors="replace")[-n:] if log.is_file() else ""


def run_point(point: str, root: Path, n_tasks: int = 2, steps: int = 3, timeout: float = 600,
              store: str | None = None, tracking: str | None = None) -> dict[str, Any]:
    """One scenario in a fresh directory `root` (a fresh S3 prefix and tracking server with `store` and
    `tracking`); the result says `ok` and keeps the logs' tails otherwise."""
    root.mkdir(parents=True, exist_ok=True)
    config = make_pool(root, n_tasks, steps, store, tracking)
    tasks = sorted(list(ANSWERS)[:n_tasks])
    t0 = time.time()
    logs = [root / "run-1.log", root / "run-2.log"]
    if point == "concurrent":
        procs = [start(config, log) for log in logs]
        codes = [wait(p, timeout) for p in procs]
        result = {"point": point, "exit_codes": codes, "done_before": []}
        result.update(damage(config, t0, set()))
        ok = codes == [0, 0] and result["trainings"] == n_tasks
    else:
        first = wait(start(config, logs[0], fault=point), timeout)
        done_before = finished(config)
        t1 = time.time()
        second = wait(start(config, logs[1]), timeout)
        result = {"point": point, "exit_codes": [first, second], "done_before": sorted(done_before)}
        result.update(damage(config, t1, done_before))
        ok = first == -signal.SIGKILL and second == 0 and result["retrained_finished"] == 0
    ok = ok and result["registered"] == tasks and not any(
        result[k] for k in ("duplicates", "orphans", "no_champion", "champion_pending", "running_runs",
                            "stale_work", "broken"))
    result["seconds"] = round(time.time() - t0, 1)
    result["ok"] = bool(ok)
    if not ok:
        result["logs"] = {log.name: _tail(log) for log in logs}
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", default=",".join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}")
    ap.add_argument("--tasks", type=int, default=2, help="pool size (1-3)")
    ap.add_argument("--steps", type=int, default=3, help="training steps per adapter")
    ap.add_argument("--workdir", help="keep everything here (default: a temporary directory, removed)")
    ap.add_argument("--store", help="store root URI, e.g. s3://bucket/prefix (default: one per point under the workdir)")
    ap.add_argument("--tracking-uri", help="MLflow tracking server (default: one sqlite database per point)")
    ap.add_argument("--json", action="store_true", help="one JSON object")
    args = ap.parse_args(argv)
    points = [p for p in args.points.split(",") if p]
    unknown = set(points) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown points {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    if args.tracking_uri and len(points) > 1:
        ap.error("--tracking-uri takes one point at a time (the points would share one registry)")
    with tempfile.TemporaryDirectory(prefix="lorasoup-faults-") as tmp:
        base = Path(args.workdir) if args.workdir else Path(tmp)
        results = [run_point(p, base / p, args.tasks, args.steps, store=args.store and f"{args.store}/{p}",
                             tracking=args.tracking_uri) for p in points]
    summary = {"ok": all(r["ok"] for r in results), "points": results}
    if args.json:
        print(json.dumps(summary))
    else:
        for r in results:
            print(f"{r['point']:>16}: {'ok' if r['ok'] else 'FAILED'} " + json.dumps(
                {k: v for k, v in r.items() if k not in ("point", "ok", "logs")}))
            for name, tail in r.get("logs", {}).items():
                print(f"--- {name} ---\n{tail}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
