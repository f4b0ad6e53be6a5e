"""Before anything trains: the artifact store and the MLflow tracking server a config names answer.

A dead S3 endpoint or tracking server otherwise shows up after the first adapter has trained (minutes,
or an hour on a GPU), as a retry storm in the middle of the run. Each probe is one request with a short
timeout; a failure is one line naming the service and what the config or environment set it to.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request

from lorasoup_core.config import ConfigError
from lorasoup_core.experiment.config import ExperimentConfig

PROBE_TIMEOUT_S = 5.0


def check_services(cfg: ExperimentConfig, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise ConfigError naming every service of `cfg` that does not answer within `timeout` seconds."""
    problems = [p for p in (_store_problem(cfg, timeout), _tracking_problem(cfg, timeout)) if p]
    if problems:
        raise ConfigError("\n".join([f"config {cfg.name!r}: {len(problems)} service(s) not reachable",
                                     *(f"  {p}" for p in problems)]))


def _store_problem(cfg: ExperimentConfig, timeout: float) -> str | None:
    from lorasoup_core.registry.registry import use_storage
    from lorasoup_core.storage import open_store
    from lorasoup_core.storage.backends import s3_timeout

    use_storage(cfg.storage)
    previous = os.environ.get("LORASOUP_S3_TIMEOUT")
    try:
        os.environ["LORASOUP_S3_TIMEOUT"] = str(min(timeout, s3_timeout()))  # a shorter setting still wins
        store = open_store(cfg.storage.uri)
        store.check_reachable()
    except Exception as err:  # noqa: BLE001 (whatever the backend raises is the answer)
        return f"storage.uri: {err}"
    finally:
        if previous is None:
            os.environ.pop("LORASOUP_S3_TIMEOUT", None)
        else:
            os.environ["LORASOUP_S3_TIMEOUT"] = previous
    return None


def _tracking_problem(cfg: ExperimentConfig, timeout: float) -> str | None:
    from lorasoup_core.settings import get_settings

    uri = cfg.tracking.tracking_uri or get_settings().tracking_uri
    if not uri.startswith(("http://", "https://")):
        return None  # a local database: created on first use
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return None
    except urllib.error.HTTPError as err:
        if err.code < 500:
            return None  # it answered (an auth proxy may refuse /health); MLflow's client reports the rest
        why = f"HTTP {err.code}"
    except (OSError, ValueError) as err:
        why = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
    source = "tracking.tracking_uri" if cfg.tracking.tracking_uri else "MLFLOW_TRACKING_URI"
    return f"{source}: MLflow tracking server {uri} did not answer {uri.rstrip('/')}/health within {timeout:g} s ({why})"
