"""compose_for_target: each composition run exports into its own directory, so two runs composing the same
cell at once (two teammates, one home) never write or publish each other's files."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.compose import Candidate
from lorasoup_core.compose.target import compose_for_target
from lorasoup_core.tracking import RunContext


def test_two_compositions_of_one_cell_get_separate_complete_directories(tiny_llama, tiny_pool, target, tmp_path):
    task, shots = target
    cands = [Candidate(s, tiny_pool[s], AdapterCard.read(tiny_pool[s]), version=f"v-{s}") for s in ("add", "double")]
    run = RunContext("compose-dirs", f"sqlite:///{tmp_path / 'mlflow.db'}")
    first, second = (compose_for_target(tiny_llama, cands, task, shots, "uniform", {}, run) for _ in range(2))
    assert first.adapter_dir != second.adapter_dir
    assert first.adapter_dir.parent == second.adapter_dir.parent  # the cell's key names the parent
    assert {first.adapter_dir.name, second.adapter_dir.name} == {first.run_id, second.run_id}
    a, b = (load_file(d / "adapter_model.safetensors") for d in (first.adapter_dir, second.adapter_dir))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all((d / "adapter_config.json").is_file() for d in (first.adapter_dir, second.adapter_dir))
