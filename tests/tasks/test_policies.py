"""Cache keys of the Prefect tasks come from the identities of typed inputs and the lorasoup version."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from lorasoup_core.compose import Candidate
from lorasoup_core.config import ModelConfig, StorageConfig
from lorasoup_core.data import Example, load_task
from lorasoup_core.models.cache import BaseRef
from lorasoup_core.registry import AdapterVersion
from lorasoup_core.tracking import RunContext
from tasks._policies import is_io_error, typed_inputs_key

CONTEXT = SimpleNamespace(task=SimpleNamespace(name="compose_adapter"))


def _version(**changes) -> AdapterVersion:
    fields = dict(name="lorasoup.tiny-llama.add", version="1", task="add", base_model="tiny-llama",
                  base_fingerprint="b" * 64, data_fingerprint="d" * 64, config_fingerprint="c" * 64, rank=8,
                  targets=["q_proj"], store_uri="file:///store/adapters/x", origin="trained")
    return AdapterVersion(**{**fields, **changes})


def _params(**changes):
    task = load_task({"source": "skills", "name": "add", "n_train": 20, "n_validation": 2, "n_test": 2})
    params = {"base": BaseRef(model=ModelConfig(spec="tiny-llama"), fingerprint="f" * 64), "target": task,
              "shots": [Example("1+1", "2")], "adapter": _version(), "seed": 0,
              "storage": StorageConfig(uri="file:///a"), "run": RunContext("exp", "sqlite:///a.db", "parent-1")}
    return {**params, **changes}


def test_the_key_follows_what_a_cached_result_refers_to(monkeypatch):
    """A composition's cached result names an MLflow run and a local directory: another tracking store or
    another LORASOUP_HOME must not reuse it; another parent run or experiment name (a re-run) must."""
    key = typed_inputs_key(CONTEXT, _params())
    assert key.startswith("lorasoup-compose_adapter-")
    assert typed_inputs_key(CONTEXT, _params(run=RunContext("other", "sqlite:///a.db", "parent-2"))) == key
    assert typed_inputs_key(CONTEXT, _params(run=RunContext("exp", "sqlite:///b.db", "parent-1"))) != key
    monkeypatch.setenv("LORASOUP_HOME", "/elsewhere")
    assert typed_inputs_key(CONTEXT, _params()) != key


def test_where_artifacts_are_stored_is_no_part_of_the_key():
    key = typed_inputs_key(CONTEXT, _params())
    assert typed_inputs_key(CONTEXT, _params(storage=StorageConfig(uri="s3://b/p", s3_endpoint_url="http://x"))) == key
    # aliases and tags of a version move over time; its files do not
    assert typed_inputs_key(CONTEXT, _params(adapter=_version(aliases=["champion"], tags={"a": "b"}))) == key


def test_what_a_result_depends_on_changes_the_key(monkeypatch):
    key = typed_inputs_key(CONTEXT, _params())
    other_task = load_task({"source": "skills", "name": "add", "seed": 1, "n_train": 20, "n_validation": 2,
                            "n_test": 2})
    for change in ({"base": BaseRef(model=ModelConfig(spec="tiny-llama"), fingerprint="e" * 64)},
                   {"target": other_task}, {"shots": [Example("1+2", "3")]}, {"seed": 1},
                   {"adapter": _version(data_fingerprint="0" * 64)}, {"adapter": None}):
        assert typed_inputs_key(CONTEXT, _params(**change)) != key, change
    import lorasoup_core

    monkeypatch.setattr(lorasoup_core, "__version__", "99.0.0")  # a new release never reuses old results
    assert typed_inputs_key(CONTEXT, _params()) != key


def test_candidates_are_keyed_by_content_not_local_path(tiny_pool):
    from lorasoup_core.adapters import AdapterCard

    card = AdapterCard.read(tiny_pool["add"])
    here = Candidate("add", tiny_pool["add"], card, "lorasoup.tiny-llama.add/1")
    there = Candidate("add", Path("/elsewhere/add"), card, "lorasoup.tiny-llama.add/1")
    assert typed_inputs_key(CONTEXT, {"c": [here]}) == typed_inputs_key(CONTEXT, {"c": [there]})
    retrained = card.model_copy(update={"data_fingerprint": "0" * 64})
    assert typed_inputs_key(CONTEXT, {"c": [here]}) != typed_inputs_key(
        CONTEXT, {"c": [Candidate("add", tiny_pool["add"], retrained, "lorasoup.tiny-llama.add/1")]})


def test_only_io_errors_are_retried():
    from lorasoup_core.storage import StoreError

    assert is_io_error(ConnectionError("reset")) and is_io_error(TimeoutError())
    assert not is_io_error(ValueError("bad config")) and not is_io_error(StoreError("other content"))
    assert not is_io_error(FileNotFoundError("x"))
