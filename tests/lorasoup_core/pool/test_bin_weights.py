"""Tensor-only `adapter_model.bin` weights import (stored as safetensors); a pickle that carries code does not,
and is never unpickled (its payload would write a marker file)."""

import copy
import json
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.pool import import_adapters
from lorasoup_core.pool.bin_weights import pickle_globals
from tests.lorasoup_core.pool.hubkit import hostile_bin

BIN, SAFE = "adapter_model.bin", "adapter_model.safetensors"


def _bin_adapter(base, out, seed=0):
    """A PEFT LoRA saved as PEFT did before safetensors (torch.save of the state dict)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(copy.deepcopy(base.model), config).save_pretrained(str(out), safe_serialization=False)
    assert (out / BIN).is_file() and not (out / SAFE).exists()
    return out


def test_tensor_only_bin_is_stored_as_safetensors_and_read_with_weights_only(tmp_path, tiny_llama, registry,
                                                                           monkeypatch):
    src = _bin_adapter(tiny_llama, tmp_path / "old-peft-lora")
    loads = []
    real_load = torch.load

    def spy(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    report = import_adapters([str(src)], tiny_llama, registry)
    assert not report.rejected, report.rejected
    assert loads == [True], "the .bin is read once, with weights_only=True"
    v = report.ok[str(src)]
    assert any(f"{BIN} holds only tensors; stored as {SAFE}" in w for w in report.warnings[str(src)])

    stored = registry.download(v, tmp_path / "dl")
    assert (stored / SAFE).is_file() and not (stored / BIN).exists()
    want = real_load(src / BIN, weights_only=True)
    got = load_file(str(stored / SAFE))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    card = AdapterCard.read(stored)
    assert card.training["converted_from"]["file"] == BIN and card.training["converted_from"]["stored_as"] == SAFE
    assert "weights_only=True" in card.training["converted_from"]["read_with"]
    assert v.data_fingerprint == card.data_fingerprint  # identity: the stored safetensors
    again = import_adapters([str(src)], tiny_llama, registry)  # the conversion is deterministic: same version
    assert again.ok[str(src)].ref == v.ref and len(registry.list()) == 1


def test_a_pickle_that_carries_code_is_refused_and_never_unpickled(tmp_path, tiny_llama, registry):
    good = _bin_adapter(tiny_llama, tmp_path / "good-lora", seed=1)
    hostile = _bin_adapter(tiny_llama, tmp_path / "hostile-lora", seed=2)
    tensors = torch.load(hostile / BIN, weights_only=True)
    marker = tmp_path / "marker-import"
    hostile_bin(hostile / BIN, tensors, marker)

    # the payload is live: a plain unpickling (never lorasoup's) of the same construction writes its marker
    proof = tmp_path / "marker-proof"
    hostile_bin(tmp_path / "proof.bin", tensors, proof)
    code = f"import torch; torch.load({str(tmp_path / 'proof.bin')!r}, weights_only=False)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proof.read_text() == "ran", proc.stderr

    report = import_adapters([str(hostile), str(good)], tiny_llama, registry)
    assert list(report.ok) == [str(good)]
    why = report.rejected[str(hostile)]
    assert why == (f"{hostile}: {BIN} is a pickle that calls builtins.exec, not only tensors; refusing to load it "
                   "(unpickling it would run that code)"), why
    assert not marker.exists(), "the hostile pickle was unpickled"
    assert [x.ref for x in registry.list()] == [report.ok[str(good)].ref]


@pytest.mark.parametrize("protocol", [2, 4])
def test_the_opcode_scan_names_globals_of_either_pickle_protocol(protocol):
    class Payload:
        def __reduce__(self):
            return (exec, ("x = 1",))

    data = pickle.dumps({"w": [1.0, 2.0], "p": Payload()}, protocol=protocol)
    assert [g.replace("__builtin__.", "builtins.") for g in pickle_globals(data)] == ["builtins.exec"]
    assert pickle_globals(pickle.dumps({"w": [1.0], "n": None, "s": "text"}, protocol=protocol)) == []


def test_broken_or_non_tensor_bins_are_one_line_naming_the_file(tmp_path, tiny_llama, registry):
    truncated = _bin_adapter(tiny_llama, tmp_path / "truncated-lora")
    raw = (truncated / BIN).read_bytes()
    (truncated / BIN).write_bytes(raw[: len(raw) // 2])
    extra = _bin_adapter(tiny_llama, tmp_path / "extra-lora", seed=1)
    tensors = torch.load(extra / BIN, weights_only=True)
    torch.save({**tensors, "step": 1200}, extra / BIN)  # an int: allowed by torch, but not a tensor
    text = _bin_adapter(tiny_llama, tmp_path / "text-lora", seed=2)
    (text / BIN).write_text(json.dumps({"not": "a pickle"}))

    report = import_adapters([str(truncated), str(extra), str(text)], tiny_llama, registry)
    r = report.rejected
    assert not report.ok and set(r) == {str(truncated), str(extra), str(text)}, r
    assert r[str(truncated)].startswith(f"{truncated}: {BIN} is not a readable torch weights file, truncated or "
                                        "corrupt ("), r
    assert r[str(extra)] == f"{extra}: {BIN}: entry 'step' is a int, not a dense tensor; only tensor-only weights " \
                            "are imported"
    assert r[str(text)].startswith(f"{text}: {BIN} is not a readable torch weights file"), r
    assert all("\n" not in why and "weights_only" not in why for why in r.values())


def test_torch_weights_only_refuses_the_payload_even_without_the_scan(tmp_path, tiny_llama, registry, monkeypatch):
    """Two independent checks: with the opcode scan switched off, torch's weights_only unpickler still refuses."""
    from lorasoup_core.pool import bin_weights

    hostile = _bin_adapter(tiny_llama, tmp_path / "hostile-lora")
    marker = tmp_path / "marker"
    hostile_bin(hostile / BIN, torch.load(hostile / BIN, weights_only=True), marker)
    monkeypatch.setattr(bin_weights, "_scan", lambda path: [])
    report = import_adapters([str(hostile)], tiny_llama, registry)
    assert report.rejected[str(hostile)] == (f"{hostile}: {BIN} is a pickle that calls builtins.exec, not only "
                                             "tensors; refusing to load it"), report.rejected
    assert not marker.exists() and not registry.list()
