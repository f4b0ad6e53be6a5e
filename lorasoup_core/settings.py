"""Process-wide settings read from the environment, with the defaults a local user expects; and the few
process-level helpers that must not import anything heavy (Prefect's home, process identity, fault hooks,
MLflow's HTTP waits). The probes of the store and the tracking server live in `lorasoup_core.services`."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

from pydantic import BaseModel, Field

CLEAN_MIN_AGE_DEFAULT = 60.0  # minutes: a publish (or staging) younger than this may still be in progress


class Settings(BaseModel):
    """Where lorasoup keeps things. Every field has an environment variable."""

    home: Path = Field(description="Root for local state (LORASOUP_HOME, default ~/.lorasoup).")
    store_uri: str = Field(description="Artifact store root URI (LORASOUP_STORE): file://, s3:// or memory://.")
    model_cache: Path = Field(description="Converted model weights (LORASOUP_MODEL_CACHE).")
    arrow_cache: Path = Field(description="Arrow prototypes per adapter content (LORASOUP_ARROW_CACHE, default "
                                          "$LORASOUP_HOME/cache/arrow).")
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
            arrow_cache=Path(os.environ.get("LORASOUP_ARROW_CACHE", home / "cache" / "arrow")).expanduser(),
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

