"""Before anything trains: the artifact store and the MLflow tracking server a config names answer.

A dead or hung S3 endpoint or tracking server otherwise shows up after the first adapter has trained
(minutes, or an hour on a GPU), or as minutes of client retries. The probes themselves take URIs and
live in `lorasoup_core.services` (light to import: `pool list`, `pool train` and `compose` run them too);
a failure is one line per service naming it, the URI and what set it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lorasoup_core.config import ConfigError
from lorasoup_core.services import PROBE_TIMEOUT_S, ServicesUnreachable, check_uris, service_problems

if TYPE_CHECKING:
    from lorasoup_core.experiment.config import ExperimentConfig

__all__ = ["PROBE_TIMEOUT_S", "ServicesUnreachable", "check_services", "check_uris", "service_problems"]


def check_services(cfg: ExperimentConfig, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise ConfigError naming every service of `cfg` that does not answer within `timeout` seconds."""
    from lorasoup_core.registry.registry import use_storage
    from lorasoup_core.settings import get_settings

    use_storage(cfg.storage)  # the config's S3 endpoint, for the probe too
    settings = get_settings()
    try:
        check_uris(cfg.storage.uri or settings.store_uri, cfg.tracking.tracking_uri or settings.tracking_uri, timeout,
                   store_source="storage.uri", config_name=cfg.name,
                   tracking_source="tracking.tracking_uri" if cfg.tracking.tracking_uri else "MLFLOW_TRACKING_URI")
    except ServicesUnreachable as err:
        raise ConfigError(str(err)) from None
