"""Task and adapter names cannot escape LORASOUP_HOME or share a registry name: every path and registry
name made from one is a slug, a name with no safe character gets a hash of its own, and two names with
one slug are refused at config load (the registry refuses them across runs: tests/lorasoup_core/registry)."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from lorasoup_core.adapters import TrainingConfig, slug
from lorasoup_core.config import ConfigError
from lorasoup_core.data import load_task
from lorasoup_core.experiment import load_experiment
from lorasoup_core.pool import PoolConfig, ensure_adapter
from lorasoup_core.registry import model_name
from lorasoup_core.tracking import RunContext

CYRILLIC, CHINESE = "привет", "你好"


def test_slug_keeps_the_names_it_always_gave():
    assert slug("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB-SmolLM2-135M"
    assert slug("count_then_add") == "count_then_add" and slug("add-lorahub-cma") == "add-lorahub-cma"
    assert slug("../../../../escape") == "escape" and slug("a b/c") == "a-b-c" and slug("x") == "x"
    assert slug("задача add") == "add"  # a name with some safe characters keeps its old slug


@pytest.mark.parametrize("name", [CYRILLIC, CHINESE, "..", "/", "-.-", "", "\u00e9\u00e8"])
def test_a_name_without_safe_characters_gets_a_hash_of_its_own(name):
    s = slug(name)
    assert re.fullmatch(r"x-[0-9a-f]{10}", s) and s == slug(name)  # deterministic
    assert model_name("tiny-llama", name) == f"lorasoup.tiny-llama.{s}"


def test_cyrillic_and_chinese_names_get_different_registry_names():
    assert slug(CYRILLIC) != slug(CHINESE)
    assert model_name("tiny-llama", CYRILLIC) != model_name("tiny-llama", CHINESE)


def test_slug_clash_names_both():
    from lorasoup_core.adapters import slug_clash

    assert slug_clash(["add", "double", "add"]) is None  # the same name twice is not a clash of two names
    assert slug_clash(["a b", "x", "a/b"]) == ("'a b' and 'a/b' both become the name 'a-b' in paths and the "
                                               "registry; rename one of them")


def _tasks(*names):
    return [{"source": "jsonl", "name": n, "path": f"/data/{i}.jsonl"} for i, n in enumerate(names)]


def test_pool_config_refuses_two_tasks_with_one_slug():
    with pytest.raises(ValidationError) as err:
        PoolConfig(tasks=_tasks("sort words", "sort/words"))
    problem = err.value.errors()[0]["msg"]
    assert "'sort words' and 'sort/words' both become the name 'sort-words'" in problem and "\n" not in problem
    PoolConfig(tasks=_tasks(CYRILLIC, CHINESE))  # their own hashed slugs: no clash


def test_experiment_config_refuses_compositions_with_one_registry_name():
    """Compositions register as <target>-<method>: 'a b' and 'a/b' targets would share `a-b-lorahub`."""
    targets = "targets=[{task: {source: jsonl, name: a b, path: /x.jsonl}}, {task: {source: jsonl, name: a/b, " \
              "path: /y.jsonl}}]"
    with pytest.raises(ConfigError, match=r"adapter names: 'a b-lorahub' and 'a/b-lorahub' both become the name "
                                          r"'a-b-lorahub'"):
        load_experiment("configs/demo.yaml", [targets, "methods=[lorahub]"])
    with pytest.raises(ConfigError, match=r"'sort words' and 'sort/words' both become the name 'sort-words'"):
        load_experiment("configs/demo.yaml", ["pool.tasks=[{source: jsonl, name: sort words, path: /a.jsonl}, "
                                              "{source: jsonl, name: sort/words, path: /b.jsonl}]"])


def test_a_task_named_to_escape_trains_under_lorasoup_home(tmp_path, monkeypatch, tiny_llama, task_dirs, registry):
    home = tmp_path / "deep" / "home"
    monkeypatch.setenv("LORASOUP_HOME", str(home))
    task = load_task({"source": "jsonl", "name": "../../../../escape", "path": str(task_dirs["length"])})
    ensured = ensure_adapter(tiny_llama, task, TrainingConfig(steps=2, batch_size=4, max_validation=2), registry,
                             RunContext("names", registry.client.tracking_uri), embed_examples=0, progress=False)
    assert ensured.trained and ensured.version.name == "lorasoup.tiny-llama.escape"
    outside = [p for p in (tmp_path / "deep").rglob("*") if home not in (p, *p.parents)]
    assert outside == []  # neither the work directory nor its lock landed beside the home
    work = list((home / "work" / "trained").glob("*/escape-*"))
    assert {p.suffix for p in work} == {"", ".lock"}
