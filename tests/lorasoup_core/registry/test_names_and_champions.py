"""A registered model holds one adapter name: a different name with the same slug is refused (naming both),
not added as its next version; and a trained adapter without a validation loss says why it is no champion."""

from __future__ import annotations

import logging

import pytest

from lorasoup_core.adapters import AdapterCard, TrainingConfig, train_lora
from lorasoup_core.data import Example, Task
from lorasoup_core.registry import AdapterRegistry, RegistryError
from lorasoup_core.storage import open_store


@pytest.fixture(scope="module")
def tiny_pool(tiny_llama, tmp_path_factory):
    """Two quickly trained adapters (what they learn does not matter here, only that they register)."""
    root = tmp_path_factory.mktemp("names")
    words = [Example(w, w[i]) for i in (0, -1) for w in ("apple", "river", "stone", "cloud")]
    out = {}
    for name, examples in (("add", words[:4]), ("double", words[4:])):
        train_lora(tiny_llama, Task(name, examples, examples[:2], []), TrainingConfig(steps=2, batch_size=4),
                   root / name, progress=False, embed_examples=0)
        out[name] = root / name
    return out


def _registry(tmp_path):
    return AdapterRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                           store=open_store((tmp_path / "store").as_uri()))


def _card(path, name, n, **update):
    """The trained card at `path`, renamed, with its own config fingerprint (so it is a new adapter)."""
    return AdapterCard.read(path).model_copy(update={"name": name, "task": name, "config_fingerprint": str(n) * 64,
                                                     **update})


def test_cyrillic_and_chinese_tasks_are_two_registered_models(tmp_path, tiny_pool):
    reg = _registry(tmp_path)
    a = reg.register(_card(tiny_pool["add"], "привет", 1), tiny_pool["add"], decide_champion=True)
    b = reg.register(_card(tiny_pool["double"], "你好", 2), tiny_pool["double"], decide_champion=True)
    assert a.name != b.name and a.version == b.version == "1"  # not v1 and v2 of one model `...x`
    assert "champion" in a.aliases and "champion" in b.aliases  # val_loss never compared across the two
    assert (a.task, b.task) == ("привет", "你好")


def test_another_name_with_the_same_slug_is_refused_naming_both(tmp_path, tiny_pool):
    reg = _registry(tmp_path)
    first = reg.register(_card(tiny_pool["add"], "sort words", 1), tiny_pool["add"], decide_champion=True)
    assert first.name == "lorasoup.tiny-llama.sort-words"
    with pytest.raises(RegistryError) as err:
        reg.register(_card(tiny_pool["double"], "sort/words", 2), tiny_pool["double"], decide_champion=True)
    message = str(err.value)
    assert "\n" not in message and "'sort/words'" in message and "'sort words'" in message
    assert "lorasoup.tiny-llama.sort-words" in message
    assert [v.ref for v in reg.list()] == [first.ref]  # no second version
    assert reg.store.list("adapters/") == [first.store_key]  # and the refused one's files were removed again
    again = reg.register(_card(tiny_pool["double"], "sort words", 3), tiny_pool["double"])  # the same name: fine
    assert again.name == first.name and again.version == "2"


def test_a_model_registered_before_the_adapter_tag_is_checked_by_its_task_tag(tmp_path, tiny_pool):
    reg = _registry(tmp_path)
    first = reg.register(_card(tiny_pool["add"], "sort words", 1), tiny_pool["add"])
    reg.client.delete_registered_model_tag(first.name, "adapter")
    with pytest.raises(RegistryError, match=r"task 'sort/words': registered model .* holds task 'sort words'"):
        reg.register(_card(tiny_pool["double"], "sort/words", 2), tiny_pool["double"])


def test_a_trained_adapter_without_val_loss_warns_that_it_cannot_be_champion(tmp_path, tiny_pool, caplog):
    reg = _registry(tmp_path)
    card = _card(tiny_pool["add"], "add", 1)
    metrics = {k: v for k, v in card.metrics.items() if k != "val_loss"}
    with caplog.at_level(logging.WARNING, logger="lorasoup_core.registry.registry"):
        v = reg.register(card.model_copy(update={"metrics": metrics}), tiny_pool["add"], decide_champion=True)
    assert v.aliases == ["latest"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [f"{v.ref}: no val_loss (the task has no validation examples, or max_validation is 0), so it "
                      "cannot become champion; it is only the latest version"]


def test_compositions_without_val_loss_do_not_warn(tmp_path, tiny_pool, caplog):
    reg = _registry(tmp_path)
    card = _card(tiny_pool["add"], "count-lorahub", 1, origin="composed", metrics={"few_shot_loss": 1.0})
    with caplog.at_level(logging.WARNING, logger="lorasoup_core.registry.registry"):
        reg.register(card, tiny_pool["add"], decide_champion=True)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
