"""Process-wide settings read from the environment, with the defaults a local user expects; and the few
process-level helpers that must not import anything heavy (Prefect's home, process identity, fault hooks,
how long to wait on the tracking server and the store)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

CLEAN_MIN_AGE_DEFAULT = 60.0  # minutes: a publish (or staging) younger than this may still be in progress


class Settings(BaseModel):
    """Where lorasoup keeps things. Every field has an environment variable."""

    home: Path = Field(description="Root for local state (LORASOUP_HOME, default ~/.lorasoup).")
    store_uri: str = Field(description="Artifact store root URI (LORASOUP_STORE): file://, s3:// or memory://.")
    model_cache: Path = Field(description="Converted model weights (LORASOUP_MODEL_CACHE).")
    tracking_uri: str = Field(description="MLflow tracking URI (MLFLOW_TRACKING_URI).")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (LORASOUP_S3_ENDPOINT_URL or AWS_ENDPOINT_URL)."
    )
    clean_min_age_s: float = Field(
        default=CLEAN_MIN_AGE_DEFAULT * 60,
        description="`store clean` leaves leftovers younger than this alone: another writer may still commit "
                    "them (LORASOUP_CLEAN_MIN_AGE, minutes, default 60).")

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("LORASOUP_HOME", Path.home() / ".lorasoup")).expanduser()
        return cls(
            home=home,
            store_uri=os.environ.get("LORASOUP_STORE", (home / "artifacts").as_uri()),
            model_cache=Path(os.environ.get("LORASOUP_MODEL_CACHE", home / "models")).expanduser(),
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}"),
            s3_endpoint_url=os.environ.get("LORASOUP_S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL"),
            clean_min_age_s=_minutes("LORASOUP_CLEAN_MIN_AGE", CLEAN_MIN_AGE_DEFAULT) * 60,
        )


def _minutes(var: str, default: float) -> float:
    raw = os.environ.get(var)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ValueError(f"{var}={raw!r}: expected a number of minutes >= 0")
    return value


def get_settings() -> Settings:
    """Read afresh each call: tests and CLIs change the environment at run time."""
    return Settings.from_env()


# MLflow's client waits 120 s for each answer and retries 7 times: a tracking server that accepts
# connections and never answers held a command for minutes. A short preflight probe catches it at the
# start; these bound a server that stops answering later to about 3 x 10 s plus 3 s of backoff.
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def bound_mlflow_waits() -> None:
    """MLflow's HTTP timeout and retries from MLFLOW_HTTP_DEFAULTS, each unless the user has set it.
    MLflow reads them at every request, so this may run any time before the first one."""
    for var, value in MLFLOW_HTTP_DEFAULTS.items():
        if not os.environ.get(var, "").strip():
            os.environ[var] = value


def use_prefect_home() -> Path | None:
    """Give Prefect a home inside LORASOUP_HOME ($LORASOUP_HOME/prefect) unless PREFECT_HOME is set, so two
    lorasoup homes never share one Prefect database and result cache. Must run before Prefect is imported
    (Prefect reads its settings then); returns the home set, or None when it changed nothing. The user's
    Prefect profiles (an API URL, say) stay where they were."""
    if os.environ.get("PREFECT_HOME") or "LORASOUP_HOME" not in os.environ or "prefect" in sys.modules:
        return None
    profiles = Path.home() / ".prefect" / "profiles.toml"
    if "PREFECT_PROFILES_PATH" not in os.environ and profiles.is_file():
        os.environ["PREFECT_PROFILES_PATH"] = str(profiles)
    home = get_settings().home / "prefect"
    home.mkdir(parents=True, exist_ok=True)  # Prefect's sqlite cannot create its own parent directories
    os.environ["PREFECT_HOME"] = str(home)
    return home


# -- this process ---------------------------------------------------------------------------------------
def process_token(pid: int | None = None) -> str | None:
    """'pid:start time' of a live process (None when it is gone or a zombie): a pid reused by a later
    process gives another token, so a recorded token says whether *that* process still runs."""
    pid = os.getpid() if pid is None else pid
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"{pid}:{proc.create_time():.2f}"
    except ImportError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return f"{pid}:?"
    except Exception:  # psutil.NoSuchProcess, AccessDenied
        return None


def process_tags() -> dict[str, str]:
    """Who is doing this: recorded on runs and in work-directory names, read back by `is_stale`."""
    return {"lorasoup.host": socket.gethostname(), "lorasoup.pid": str(os.getpid()),
            "lorasoup.process": process_token() or f"{os.getpid()}:?"}


def is_stale(host: str | None, token: str | None) -> bool:
    """True when the recorded process ran on this host and is gone; never for another host's process
    (this machine cannot tell whether it still runs)."""
    if not host or not token or host != socket.gethostname():
        return False
    pid, _, started = token.partition(":")
    if not pid.isdigit():
        return False
    now = process_token(int(pid))
    if now is None:
        return True
    try:  # the same pid started at another time: a later process reusing it (1 s: clock rounding)
        return abs(float(now.split(":", 1)[1]) - float(started)) > 1.0
    except ValueError:  # a start time unknown on either side: the pid is alive, assume it is the owner
        return False


def fault(point: str) -> None:
    """Fault injection for the crash tests: LORASOUP_FAULT=<point> kills this process with SIGKILL there
    (nothing runs after it: no finally, no atexit), as a machine losing power would."""
    if os.environ.get("LORASOUP_FAULT") == point:
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


# -- the services this process talks to ------------------------------------------------------------------
# Here, not in `lorasoup_core.experiment.preflight` (the config-level check built on these): importing
# that package loads torch and transformers, seconds that `lorasoup pool list` has no other use for.
PROBE_TIMEOUT_S = 5.0


class ServicesUnreachable(RuntimeError):
    """The store or the tracking server did not answer the preflight probe."""


def check_uris(store_uri: str | None, tracking_uri: str | None, timeout: float = PROBE_TIMEOUT_S, *,
               store_source: str = "LORASOUP_STORE", tracking_source: str = "MLFLOW_TRACKING_URI",
               config_name: str | None = None) -> None:
    """Raise ServicesUnreachable when the store at `store_uri` or the tracking server at `tracking_uri`
    does not answer within `timeout` seconds (None skips that service): one line, or with `config_name` a
    heading naming the config and a line per service."""
    problems = service_problems(store_uri, tracking_uri, timeout, store_source=store_source,
                                tracking_source=tracking_source)
    if problems and config_name is None:
        raise ServicesUnreachable("; ".join(problems))
    if problems:
        raise ServicesUnreachable("\n".join([f"config {config_name!r}: {len(problems)} service(s) not reachable",
                                             *(f"  {p}" for p in problems)]))


def service_problems(store_uri: str | None, tracking_uri: str | None, timeout: float = PROBE_TIMEOUT_S, *,
                     store_source: str = "LORASOUP_STORE", tracking_source: str = "MLFLOW_TRACKING_URI") -> list[str]:
    """One line per service that did not answer, prefixed by what set its URI. Both are probed at once,
    each one request under a deadline whatever the client's own retries, so a service that accepts
    connections and never answers costs `timeout` seconds, not the sum of every retry."""
    probes: list[tuple[str, str, Callable[[], str | None]]] = []
    if store_uri:
        probes.append((store_source, store_uri, _store_probe(store_uri, timeout)))
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):  # a local database: made on first use
        probes.append((tracking_source, tracking_uri, lambda: _tracking_problem(tracking_uri, timeout)))
    answers: dict[int, str | None] = {}

    def ask(i: int, probe: Callable[[], str | None]) -> None:
        try:
            answers[i] = probe()
        except Exception as err:  # noqa: BLE001 (whatever the client raises is the answer)
            answers[i] = f"{err}".replace("\n", " ")

    # daemon threads: a probe still stuck in a client's retries must not keep the process from exiting
    threads = [threading.Thread(target=ask, args=(i, p), daemon=True) for i, (_, _, p) in enumerate(probes)]
    deadline = time.monotonic() + timeout + 0.5  # the clients' own timeouts end most probes before this
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    problems = []
    for i, (source, uri, _) in enumerate(probes):
        answer = answers[i] if i in answers else _silence(uri, timeout)
        if answer:
            problems.append(f"{source}: {answer}")
    return problems


def _store_probe(uri: str, timeout: float) -> Callable[[], str | None]:
    """Open the store here (no request yet; the S3 client takes its timeout from the environment now) and
    return the request to make: S3 `head_bucket`, or a check that a local root is writable."""
    from lorasoup_core.storage import open_store
    from lorasoup_core.storage.backends import s3_timeout

    previous = os.environ.get("LORASOUP_S3_TIMEOUT")
    try:
        os.environ["LORASOUP_S3_TIMEOUT"] = str(min(timeout, s3_timeout()))  # a shorter setting still wins
        store = open_store(uri)
    except Exception as err:  # noqa: BLE001 (an unknown scheme, a bad setting: the answer too)
        message = f"{err}".replace("\n", " ")
        return lambda: message
    finally:
        if previous is None:
            os.environ.pop("LORASOUP_S3_TIMEOUT", None)
        else:
            os.environ["LORASOUP_S3_TIMEOUT"] = previous

    def probe() -> None:
        store.check_reachable()

    return probe


def _silence(uri: str, timeout: float) -> str:
    if uri.startswith("s3://"):
        endpoint = get_settings().s3_endpoint_url or "the default AWS S3 endpoint"
        return f"S3 endpoint {endpoint} did not answer within {timeout:g} s (store {uri})"
    if uri.startswith(("http://", "https://")):
        return f"MLflow tracking server {uri} did not answer {uri.rstrip('/')}/health within {timeout:g} s"
    return f"store {uri} did not answer within {timeout:g} s"


def _tracking_problem(uri: str, timeout: float) -> str | None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return None
    except urllib.error.HTTPError as err:
        if err.code < 500:
            return None  # it answered (an auth proxy may refuse /health); MLflow's client reports the rest
        why = f"HTTP {err.code}"
    except (OSError, ValueError) as err:
        why = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
    return f"MLflow tracking server {uri} did not answer {uri.rstrip('/')}/health within {timeout:g} s ({why})"
