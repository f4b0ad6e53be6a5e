"""MLflow tracking through an explicit client and run ids.

Pipeline steps run in worker threads or processes, where MLflow's fluent "active run" is not
shared; every call here names its run, and nested runs carry their parent's id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from lorasoup_core.reporting import ResultRow, markdown_table, result_figures
from lorasoup_core.settings import bound_mlflow_waits, fault, get_settings, is_stale, process_tags

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
# a database being created: `.<db name>.creating-<hex>` (+ sqlite's own -journal/-wal/-shm beside it)
_CREATING = re.compile(r"^\.(?P<db>.+)\.creating-[0-9a-f]{32}(-journal|-wal|-shm)?$")


class TrackingDatabaseError(RuntimeError):
    """A local MLflow database that cannot be opened and holds data: left as it is, for the user to decide."""


def client(tracking_uri: str | None = None) -> MlflowClient:
    uri = tracking_uri or get_settings().tracking_uri
    bound_mlflow_waits()  # cheap; covers library use and workers that never ran the CLI
    if uri.startswith("sqlite:///") and uri not in _READY:
        return _open_sqlite_once(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _open_sqlite_once(uri: str) -> MlflowClient:
    """MLflow creates and migrates a new sqlite database the first time a process opens it, with no lock
    and in place: two processes starting on a fresh home both migrate and one fails, and a first command
    killed mid-migration leaves a half-made schema every later command fails on (`duplicate column name`,
    `table ... already exists`). So: once per process, under a file lock beside the database, a new
    database is made in a temporary file and renamed into place whole; what a killed creation left is
    removed, and a half-made database from an older version is moved aside when it holds nothing."""
    from filelock import FileLock

    db = Path(uri.removeprefix("sqlite:///")).expanduser()
    if not db.name or db.name == ":memory:":
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    db.parent.mkdir(parents=True, exist_ok=True)
    with _READY_LOCK, FileLock(str(db.with_name(f"{db.name}.init.lock"))):
        for leftover in db.parent.iterdir():  # under the lock no creation is running: these are dead
            m = _CREATING.match(leftover.name)
            if m and m["db"] == db.name:
                leftover.unlink(missing_ok=True)
        if not db.exists() or db.stat().st_size == 0:  # sqlite writes nothing to a file until its schema
            _create_sqlite(db)
        try:
            c = _opened(uri)
        except Exception as err:
            if not _half_made(db):
                raise
            _dispose(uri)  # its pooled connections point at the file about to move
            if _holds_data(db):
                raise TrackingDatabaseError(
                    f"MLflow database {db} has a half-made schema ({type(err).__name__}) and holds runs, "
                    "experiments or models: left as it is; back it up, then move it aside or run "
                    f"`mlflow db upgrade {uri}`") from None
            aside = db.with_name(f"{db.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-journal", "-wal", "-shm"):  # a hot journal follows its database's name
                if Path(f"{db}{suffix}").exists():
                    os.replace(f"{db}{suffix}", f"{aside}{suffix}")
            logging.getLogger(__name__).warning(
                f"warning: MLflow database {db} was half made (a first command killed while creating it) and "
                f"held no data: moved aside to {aside.name}, made afresh")
            _create_sqlite(db)
            c = _opened(uri)
        _READY.add(uri)
    return c


def _opened(uri: str) -> MlflowClient:
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)  # builds the tracking store: creates/migrates
    c.search_registered_models(max_results=1)  # the registry's store is built lazily: here, under the lock
    return c


def _create_sqlite(db: Path) -> None:
    """Create and fully migrate (tracking and registry tables) a new database beside `db`, close it, and
    rename it into place: a kill at any point leaves either no database or a whole one."""
    from mlflow.tracking._model_registry.utils import _get_sqlalchemy_store as registry_store
    from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store as tracking_store

    tmp = db.with_name(f".{db.name}.creating-{uuid.uuid4().hex}")
    tmp_uri = f"sqlite:///{tmp}"
    try:
        try:
            tracking_store(tmp_uri, None)  # MLflow's own builders: the same schema and default experiment
            fault("mid-tracking-db")
            registry_store(tmp_uri)
        finally:
            _dispose(tmp_uri)
        os.replace(tmp, db)
    except BaseException:  # Ctrl-C or an error: nothing half made stays behind
        for leftover in db.parent.glob(f"{tmp.name}*"):
            leftover.unlink(missing_ok=True)
        raise


def _dispose(uri: str) -> None:
    """Close and forget the SQLAlchemy engines MLflow's stores cache per URI (class-level maps)."""
    import importlib

    for module in ("mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store"):
        engine = getattr(importlib.import_module(module).SqlAlchemyStore, "_engine_map", {}).pop(uri, None)
        if engine is not None:
            engine.dispose()


def _half_made(db: Path) -> bool:
    """The schema is short of MLflow's: tables missing, or no (or an old) alembic revision. Any other
    failure (a locked or unreadable file) is not this function's to repair."""
    import sqlite3

    from mlflow.store.db.base_sql_model import Base
    from mlflow.store.db.utils import _get_latest_schema_revision

    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            revision = con.execute("SELECT version_num FROM alembic_version").fetchone() \
                if "alembic_version" in tables else None
    except sqlite3.Error:
        return False
    return not set(Base.metadata.tables) <= tables or revision is None or revision[0] != _get_latest_schema_revision()


def _holds_data(db: Path) -> bool:
    """Any row beyond what creation writes (the schema revision, the default workspace and experiment 0);
    rows in alembic's temporary copies count (a killed batch migration may hold them only there)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            kind = table.removeprefix("_alembic_tmp_")
            if kind in ("alembic_version", "workspaces") or table.startswith("sqlite_"):
                continue
            where = " WHERE experiment_id != 0" if kind == "experiments" else ""
            if con.execute(f'SELECT 1 FROM "{table}"{where} LIMIT 1').fetchone():  # noqa: S608 (names from the db)
                return True
    return False


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
    now = int(time.time() * 1000)
    items = [Metric(_metric_key(k), float(v), now, step) for k, v in metrics.items() if v is not None]
    if items:
        client(tracking_uri).log_batch(run_id, metrics=items)


def log_series(run_id: str, key: str, values: list[float], tracking_uri: str | None = None) -> None:
    """A curve (loss per step, objective per evaluation) as one metric with steps."""
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
