"""MLflow tracking through an explicit client and run ids.

Pipeline steps run in worker threads or processes, where MLflow's fluent "active run" is not
shared; every call here names its run, and nested runs carry their parent's id.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from lorasoup_core.reporting import ResultRow, markdown_table, result_figures
from lorasoup_core.settings import get_settings, is_stale, process_tags

PARENT_TAG = "mlflow.parentRunId"
# MLflow 3's UI opens an experiment of this kind on its runs table (charts, compare), not on GenAI traces
EXPERIMENT_KIND, MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"


@dataclass(frozen=True)
class RunContext:
    """Where a step logs: the MLflow experiment, the tracking URI (None: the environment's) and the parent
    run its runs nest under."""

    experiment: str
    tracking_uri: str | None = None
    parent_run_id: str | None = None
    store_uri: str | None = None  # the artifact store: a remote one also holds the experiment's MLflow artifacts

    def cache_identity(self) -> list[str]:
        """Where a cached result's references point: the tracking store its run ids live in and the local
        home its files were written under (never the parent run: a re-run must find the cached result)."""
        settings = get_settings()
        return [self.tracking_uri or settings.tracking_uri, str(settings.home)]

    def under(self, parent_run_id: str | None) -> RunContext:
        return RunContext(self.experiment, self.tracking_uri, parent_run_id, self.store_uri)
_MAX_PARAM = 6000  # MLflow's limit on a param value


_READY: set[str] = set()  # sqlite databases this process has opened (so migrated) once
_READY_LOCK = threading.Lock()


def client(tracking_uri: str | None = None) -> MlflowClient:
    uri = tracking_uri or get_settings().tracking_uri
    if uri.startswith("sqlite:///") and uri not in _READY:
        return _open_sqlite_once(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _open_sqlite_once(uri: str) -> MlflowClient:
    """MLflow creates and migrates a new sqlite database the first time a process opens it, with no lock:
    two processes starting on a fresh home both migrate and one fails (`duplicate column name`, `table
    ... already exists`). Open it once per process under a file lock beside the database."""
    from filelock import FileLock

    db = Path(uri.removeprefix("sqlite:///")).expanduser()
    if not db.name or db.name == ":memory:":
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    db.parent.mkdir(parents=True, exist_ok=True)
    with _READY_LOCK, FileLock(str(db.with_name(f"{db.name}.init.lock"))):
        c = MlflowClient(tracking_uri=uri, registry_uri=uri)  # builds the tracking store: creates/migrates
        c.search_registered_models(max_results=1)  # the registry's store is built lazily: here, under the lock
        _READY.add(uri)
    return c


def default_artifact_location(tracking_uri: str, store_uri: str | None = None, experiment: str = "") -> str | None:
    """Where a new experiment's MLflow artifacts go: under the artifact store when that is remote (S3:
    `<store>/mlflow/<experiment>`, so one bucket prefix holds everything, whatever the tracking server's
    own default); else beside a local tracking database (`<db>-artifacts/`), never `./mlruns` of whatever
    directory the command runs in, and never shared by two databases. Else the tracking server decides
    (None)."""
    from lorasoup_core.adapters.card import slug
    from lorasoup_core.storage.store import split_uri

    if store_uri and split_uri(store_uri)[0] not in ("file", "memory"):
        return f"{store_uri.rstrip('/')}/mlflow/{slug(experiment or 'default')}"
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri.removeprefix("sqlite:///")).expanduser()
    return db.with_name(f"{db.stem}-artifacts").resolve().as_uri()


def experiment_id(name: str, tracking_uri: str | None = None, artifact_location: str | None = None,
                  store_uri: str | None = None) -> str:
    """The id of the named experiment, created when missing (one experiment per config), its artifacts
    at `artifact_location` or `default_artifact_location`."""
    c = client(tracking_uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.tags.get(EXPERIMENT_KIND) is None:  # made before the tag existed: MLflow's UI would open traces
            c.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND, MODEL_DEVELOPMENT)
        return exp.experiment_id
    location = artifact_location or default_artifact_location(c.tracking_uri, store_uri, name)
    try:
        return c.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND: MODEL_DEVELOPMENT})
    except Exception:  # created concurrently by another worker
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def git_commit(repo: str | Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo or Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def start_run(experiment: str, name: str, *, parent_run_id: str | None = None, tags: Mapping[str, str] | None = None,
              tracking_uri: str | None = None, store_uri: str | None = None, system_metrics: bool = False) -> str:
    """Create a run (nested under ``parent_run_id`` when given) and return its id. `system_metrics`
    samples CPU, memory, disk, network (and GPU) into `system/*` metrics until `end_run`."""
    c = client(tracking_uri)
    # the process that owns the run: a later run on this host marks it KILLED once that process is gone
    all_tags = {"mlflow.runName": name, **process_tags(), **(tags or {})}
    commit = git_commit()
    if commit:
        all_tags.setdefault("mlflow.source.git.commit", commit)
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = c.create_run(experiment_id(experiment, tracking_uri, store_uri=store_uri), tags=all_tags, run_name=name)
    if system_metrics and _system_metrics_on():
        _start_monitor(run.info.run_id, c.tracking_uri)
    return run.info.run_id


def end_run(run_id: str, status: str = "FINISHED", tracking_uri: str | None = None) -> None:
    monitor = _MONITORS.pop(run_id, None)
    if monitor is not None:
        monitor.finish()  # flushes the last samples while the run is still RUNNING
    client(tracking_uri).set_terminated(run_id, status=status)


_MONITORS: dict[str, Any] = {}  # run id -> its MLflow SystemMetricsMonitor


def _system_metrics_on() -> bool:
    """On unless MLflow's own switch (`MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING`) says false."""
    import os

    return os.environ.get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true").strip().lower() not in ("false", "0", "no")


def _start_monitor(run_id: str, tracking_uri: str) -> None:
    """MLflow's own monitor (a daemon thread); its interval is MLflow's `MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`
    (default here 5 s: a training run lasts a minute or two)."""
    import logging

    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # four INFO lines per run otherwise

    monitor = SystemMetricsMonitor(run_id, sampling_interval=5, tracking_uri=tracking_uri)
    monitor.start()
    _MONITORS[run_id] = monitor


def mark_stale_runs(experiment: str, tracking_uri: str | None = None) -> list[str]:
    """Runs of the experiment still RUNNING whose process (same host, recorded in their tags) is gone,
    killed without ending them: marked KILLED. Runs of other hosts are left alone (their processes
    cannot be checked from here). Returns the run ids marked."""
    c = client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    marked = []
    for r in c.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'", max_results=1000):
        tags = r.data.tags
        if is_stale(tags.get("lorasoup.host"), tags.get("lorasoup.process")):
            c.set_tag(r.info.run_id, "lorasoup.stale", "its process ended without ending the run")
            c.set_terminated(r.info.run_id, status="KILLED")
            marked.append(r.info.run_id)
    return marked


@contextlib.contextmanager
def run(experiment: str, name: str, *, parent_run_id: str | None = None, tags: Mapping[str, str] | None = None,
        tracking_uri: str | None = None, store_uri: str | None = None, system_metrics: bool = False) -> Iterator[str]:
    """A run that ends FINISHED, or FAILED when the block raises."""
    run_id = start_run(experiment, name, parent_run_id=parent_run_id, tags=tags, tracking_uri=tracking_uri,
                       store_uri=store_uri, system_metrics=system_metrics)
    try:
        yield run_id
    except BaseException:
        end_run(run_id, "FAILED", tracking_uri)
        raise
    end_run(run_id, "FINISHED", tracking_uri)


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested config -> {'a.b.c': 'value'}: params are the fully resolved config."""
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return {prefix.rstrip("."): text[:_MAX_PARAM]}


def log_params(run_id: str, params: Mapping[str, Any], tracking_uri: str | None = None) -> None:
    flat = flatten(dict(params))
    items = [Param(k, v) for k, v in flat.items()]
    c = client(tracking_uri)
    for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
        c.log_batch(run_id, params=items[i: i + 100])


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int = 0, tracking_uri: str | None = None) -> None:
    import time

    now = int(time.time() * 1000)
    items = [Metric(_metric_key(k), float(v), now, step) for k, v in metrics.items() if v is not None]
    if items:
        client(tracking_uri).log_batch(run_id, metrics=items)


def log_series(run_id: str, key: str, values: list[float], tracking_uri: str | None = None) -> None:
    """A curve (loss per step, objective per evaluation) as one metric with steps."""
    import time

    now = int(time.time() * 1000)
    items = [Metric(_metric_key(key), float(v), now, i) for i, v in enumerate(values)]
    c = client(tracking_uri)
    for i in range(0, len(items), 1000):
        c.log_batch(run_id, metrics=items[i: i + 1000])


def set_tags(run_id: str, tags: Mapping[str, Any], tracking_uri: str | None = None) -> None:
    client(tracking_uri).log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def _metric_key(key: str) -> str:
    # MLflow metric names allow alphanumerics, _ - . / and spaces
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in key)


def log_results(run_id: str, rows: list[ResultRow], *, weights: Mapping[str, Mapping[str, float]] | None = None,
                traces: Mapping[str, list[float]] | None = None, tracking_uri: str | None = None) -> str:
    """Log the task x method results as an MLflow table, metrics, a markdown file and plots.

    Returns the markdown table.
    """
    import matplotlib.pyplot as plt

    c = client(tracking_uri)
    table = markdown_table(rows)
    data = {k: [getattr(r, k) for r in rows] for k in ("task", "method", "score", "ci_low", "ci_high", "n")}
    c.log_table(run_id, data, artifact_file="results/results.json")
    log_metrics(run_id, {f"score/{r.task}/{r.method}": r.score for r in rows}, tracking_uri=tracking_uri)
    c.log_text(run_id, table, "results/results.md")
    for name, fig in result_figures(rows, weights, traces).items():
        c.log_figure(run_id, fig, f"results/{name}")
        plt.close(fig)
    return table


def log_dir(run_id: str, local_dir: str | Path, artifact_path: str, tracking_uri: str | None = None) -> None:
    client(tracking_uri).log_artifacts(run_id, str(local_dir), artifact_path)


def log_text(run_id: str, text: str, artifact_file: str, tracking_uri: str | None = None) -> None:
    client(tracking_uri).log_text(run_id, text, artifact_file)


def log_json(run_id: str, value: Any, artifact_file: str, tracking_uri: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        path.write_text(json.dumps(value, indent=2, default=str))
        parent = str(Path(artifact_file).parent)
        client(tracking_uri).log_artifact(run_id, str(path), None if parent == "." else parent)
