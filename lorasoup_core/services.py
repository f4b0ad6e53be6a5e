"""The services this process talks to: probes of the artifact store and the MLflow tracking server.

Each probe is one request under a short deadline, so a dead or hung S3 endpoint or tracking server is
reported at the start of a command (one line per service, naming its URI and what set it) rather than
after minutes of client retries or an hour of training. `lorasoup_core.experiment.preflight` builds the
config-level check on these; `pool list`, `pool train` and `compose` run them too.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from lorasoup_core.settings import get_settings

# Here, not in `lorasoup_core.experiment.preflight` (the config-level check built on these): importing
# that package loads torch and transformers, seconds that `lorasoup pool list` has no other use for. So
# this module imports nothing heavy at its top: the store's client is imported by the probe that uses it.
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
    # imported here: fsspec (and s3fs) load only when a store is probed
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
