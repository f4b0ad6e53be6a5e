"""configs/lorahub_paper.yaml: LoraHub's protocol on its own pool (the published flan-t5-large LoRAs, a random
20 per target and seed, 5 seeds, BBH's 27 tasks). Offline it validates to one error naming what is missing;
with the pool imported it needs no hub at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lorasoup_core.config import ConfigError
from lorasoup_core.experiment import load_experiment
from lorasoup_core.pool import hub, import_adapters
from lorasoup_core.pool.hub import tag
from tests.conftest import REPO_ROOT, free_port
from tests.lorasoup_core.pool.hubkit import HubServer, write_repo

CONFIG = REPO_ROOT / "configs" / "lorahub_paper.yaml"
POOL = "lorahub:flan-t5-large"


def _sets(tmp_path: Path, *extra: str) -> list[str]:
    return [f"storage.uri={(tmp_path / 'store').as_uri()}", f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            *extra]


def test_the_config_is_lorahubs_protocol_on_its_published_pool(shared_data):
    from lorasoup_core.data import list_tasks

    cfg = load_experiment(CONFIG)
    assert (cfg.model.spec, cfg.model.dtype, cfg.hub_pool, cfg.pool.task_names) == (
        "google/flan-t5-large", "float32", [POOL], [])
    assert [t.name for t in cfg.targets] == list_tasks("bbh") and len(cfg.targets) == 27
    assert (cfg.selection.filters, cfg.selection.k, cfg.run_seeds, cfg.methods) == (["random"], 20, [1, 2, 3, 4, 5],
                                                                                    ["lorahub", "zero-shot", "icl"])
    with pytest.raises(ConfigError, match=r"hub_pool: Value error, unknown hub pool 'lorahub:flan-t5-xl'; known: "
                                          r"lorahub:flan-t5-large"):
        load_experiment(CONFIG, ["hub_pool=[lorahub:flan-t5-xl]"])


def test_run_offline_names_what_is_missing_and_starts_nothing(tmp_path, shared_data):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PREFECT_HOME": str(tmp_path / "pf"),
           "LORASOUP_HOME": str(tmp_path / "home"), "COLUMNS": "300"}
    args = ["run", "--config", str(CONFIG), *(x for s in _sets(tmp_path) for x in ("--set", s))]
    proc = subprocess.run([str(Path(sys.executable).parent / "lorasoup"), *args], capture_output=True, text=True,
                          env=env, timeout=300)
    shown = f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    err = " ".join(proc.stderr.replace("│", " ").split())  # typer's panel wraps and frames lines
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, shown
    assert ("config 'lorahub-paper': task data (2 problem(s)) hub_pool lorahub:flan-t5-large: none of its adapters is "
            "imported for google/flan-t5-large and HF_HUB_OFFLINE is set; run `lorasoup pool import "
            "lorahub:flan-t5-large --model google/flan-t5-large` where the hub answers") in err, shown
    assert "model.spec google/flan-t5-large: not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in err, shown
    assert not (tmp_path / "pf").exists() and not (tmp_path / "store").exists(), shown


def test_the_pool_check_asks_the_registry_then_the_hub(tmp_path, tiny_t5, registry, monkeypatch):
    cfg = load_experiment(CONFIG, _sets(tmp_path, "model.spec=tiny-t5"))

    def config_problems(cfg, timeout=None):
        return hub.config_problems(cfg.hub_pool, cfg.model.spec, cfg.storage, cfg.tracking.tracking_uri, timeout)

    assert config_problems(cfg) == [f"hub_pool {POOL}: none of its adapters is imported for tiny-t5 and HF_HUB_OFFLINE "
                                    f"is set; run `lorasoup pool import {POOL} --model tiny-t5` where the hub answers "
                                    "(or set HF_ENDPOINT to a mirror), with the same store and tracking server"]
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HF_ENDPOINT", dead)
    [problem] = config_problems(cfg, timeout=2)
    assert f"none of its adapters is imported for tiny-t5 and the hub at {dead} (HF_ENDPOINT) did not answer" in problem
    (tmp_path / "hub-root").mkdir()
    with HubServer(tmp_path / "hub-root") as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        assert config_problems(cfg, timeout=2) == []  # the hub answers: the import can run
        assert server.requests[0][1] == "/api/models"
    # imported (and tagged as from the pool) in the config's registry: no hub needed
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", dead)
    adapter = write_repo(tmp_path / "local", "lorahub/flan_t5_large-boolq", tiny_t5, 0)
    version = import_adapters([str(adapter)], tiny_t5, registry).ok[str(adapter)]
    tag(registry, version, "lorahub/flan_t5_large-boolq", "0" * 40)
    assert config_problems(cfg) == []


def test_lorahub_paper_runs_offline_on_an_imported_stand_in_pool(tmp_path, tiny_t5, monkeypatch):
    """The protocol end to end on a tiny stand-in: the pool imported once through a hub on 127.0.0.1, then
    `lorasoup run --config configs/lorahub_paper.yaml` offline (2 BBH targets, 2 seeds, a random 2 of 3)."""
    import huggingface_hub.constants as hf

    from lorasoup_core.registry import AdapterRegistry
    from lorasoup_core.storage import open_store

    root = tmp_path / "hub"
    for seed, task in enumerate(["anli_r1", "boolq", "wiki_qa"]):
        write_repo(root, f"lorahub/flan_t5_large-{task}", tiny_t5, seed)
    registry = AdapterRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                               store=open_store((tmp_path / "store").as_uri()))
    with HubServer(root) as server, monkeypatch.context() as m:
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            m.delenv(var, raising=False)
        m.setenv("HF_ENDPOINT", server.url)
        m.setattr(hf, "HF_HUB_OFFLINE", False)
        m.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        assert len(import_adapters([POOL], tiny_t5, registry).ok) == 3

    sets = _sets(tmp_path, "model.spec=tiny-t5", "targets=[{task: bbh:navigate}, {task: bbh:snarks}]", "seeds=[1, 2]",
                 "selection.k=2", "eval.limit=2", "eval.max_new_tokens=4", "methods=[lorahub, zero-shot]",
                 "compose.lorahub.budget=3")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PREFECT_HOME": str(tmp_path / "pf"), "COLUMNS": "300",
           "LORASOUP_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(Path(sys.executable).parent / "lorasoup"), "run", "--config", str(CONFIG),
                           *(x for s in sets for x in ("--set", s))], capture_output=True, text=True, env=env, timeout=300)
    shown = f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, shown
    assert "| navigate |" in proc.stdout and "| snarks |" in proc.stdout, shown
    composed = registry.list(origin="composed")
    assert len(composed) == 2 * 2, shown  # each target, each seed
    for v in composed:
        picked = v.tags["lineage.candidates"].split(", ")
        assert len(picked) == 2 and all(p.startswith("lorasoup.tiny-t5.flan_t5_large-") for p in picked), v.tags
