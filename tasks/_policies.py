"""Shared task policies: retries with backoff for I/O only, caching keyed on the typed inputs."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

# Errors worth retrying: storage and registry I/O. A code error or a bad input fails at once;
# training is never re-run because of one.
_RETRYABLE_NAMES = {"ConnectionError", "TimeoutError", "ClientError", "EndpointConnectionError",
                    "ReadTimeoutError", "ConnectTimeoutError", "ServerTimeoutError", "ProtocolError",
                    "ClientConnectorError"}
# MLflow wraps everything in MlflowException; only these codes are transient.
_MLFLOW_TRANSIENT = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}


def is_io_error(exc: BaseException) -> bool:
    from lorasoup_core.storage import StoreError

    if isinstance(exc, StoreError):  # a refused publish (other content under a key) is not transient
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return True
    if type(exc).__name__ in ("MlflowException", "RestException"):
        return getattr(exc, "error_code", "") in _MLFLOW_TRANSIENT
    return any(cls.__name__ in _RETRYABLE_NAMES for cls in type(exc).__mro__)


def retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only when the failure was an I/O error."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001  (the state's exception is re-raised here)
        return is_io_error(exc)
    return False


IO_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_on_io,
}


def typed_inputs_key(context: Any, parameters: dict[str, Any]) -> str:
    """A task's cache key from the identities of its typed inputs (a Task by its data fingerprint, a base
    model by its weights' fingerprint, an adapter version by its files; a RunContext not at all) and the
    lorasoup version, so a code release never reuses old compositions and scores."""
    from lorasoup_core.fingerprint import cache_key

    return f"lorasoup-{context.task.name}-{cache_key(*parameters.values())}"
