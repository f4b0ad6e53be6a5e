import json
import shutil

import pytest
import torch

from lorasoup_core.adapters import CARD_FILE, TrainingConfig, read_lora_factors, train_lora
from lorasoup_core.data import Example, Task
from lorasoup_core.fingerprint import sha256_file
from lorasoup_core.pool import import_adapters


@pytest.fixture
def plain_peft(tmp_path, tiny_pool):
    """A plain PEFT directory (no lorasoup card) whose config names another base model."""
    d = tmp_path / "good-adapter"
    shutil.copytree(tiny_pool["add"], d)
    (d / CARD_FILE).unlink()
    cfg = json.loads((d / "adapter_config.json").read_text())
    (d / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "someone/llama-96"}))
    return d


@pytest.fixture
def narrow_llama_adapter(tmp_path):
    """A LoRA for a Llama of hidden size 64 (tiny-llama has 96): same module names, wrong shapes."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2))
    d = tmp_path / "narrow-adapter"
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(str(d))
    return d


@pytest.fixture
def t5_adapter(tmp_path, tiny_t5):
    """A real lorasoup adapter, but for tiny-t5."""
    d = tmp_path / "t5-adapter"
    examples = [Example(w, w[0]) for w in ("apple", "river", "stone", "cloud")]
    train_lora(tiny_t5, Task("t5_task", examples, examples, []), TrainingConfig(steps=2, max_validation=0), d,
               progress=False, embed_examples=0)
    return d


def test_mismatched_adapters_are_rejected_and_the_rest_register(tmp_path, tiny_llama, registry, plain_peft,
                                                                narrow_llama_adapter, t5_adapter):
    ia3 = tmp_path / "ia3-adapter"
    shutil.copytree(plain_peft, ia3)
    (ia3 / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3", "target_modules": ["q_proj"]}))
    sources = [str(narrow_llama_adapter), str(plain_peft), str(t5_adapter), str(ia3), "someone/not-cached-lora",
               str(tmp_path / "missing"), "lorahub:flan-t5-large"]
    report = import_adapters(sources, tiny_llama, registry)

    assert list(report.ok) == [str(plain_peft)]
    r = report.rejected
    assert set(r) == set(sources) - {str(plain_peft)}
    assert r[str(narrow_llama_adapter)].startswith(str(narrow_llama_adapter))
    assert "does not fit base model tiny-llama" in r[str(narrow_llama_adapter)]
    assert "model.layers.0.self_attn.q_proj: LoRA maps 64 -> 64 features" in r[str(narrow_llama_adapter)]
    assert "has 96 -> 96" in r[str(narrow_llama_adapter)]
    assert "none of its 12 adapted modules exists there (first: decoder.block.0.layer.0.SelfAttention.q)" \
        in r[str(t5_adapter)]
    assert "peft_type is 'IA3'" in r[str(ia3)]
    assert "HF_HUB_OFFLINE" in r["someone/not-cached-lora"] and "HF_HUB_OFFLINE" in r["lorahub:flan-t5-large"]
    assert "no such directory" in r[str(tmp_path / "missing")]
    assert "trained on 'someone/llama-96'" in report.warnings[str(plain_peft)][0]

    v = report.ok[str(plain_peft)]
    assert (v.origin, v.task, v.base_model, v.rank, v.targets) == ("imported", "good-adapter", "tiny-llama", 8,
                                                                   ["q_proj", "v_proj"])
    assert v.data_fingerprint == sha256_file(plain_peft / "adapter_model.safetensors")
    assert [x.ref for x in registry.list()] == [v.ref]
    local = registry.download(registry.get(f"{v.name}@latest"), tmp_path / "dl")
    got, scale = read_lora_factors(local)
    want, want_scale = read_lora_factors(plain_peft)
    assert scale == want_scale and all(torch.equal(got[k][i], want[k][i]) for k in want for i in (0, 1))

    again = import_adapters([str(plain_peft)], tiny_llama, registry)  # idempotent: the same version
    assert again.ok[str(plain_peft)].ref == v.ref and len(registry.list()) == 1


def test_import_cli_reports_rejections(tmp_path, plain_peft, t5_adapter):
    from typer.testing import CliRunner

    from lorasoup_core.cli import app

    args = ["pool", "import", str(plain_peft), str(t5_adapter), "--model", "tiny-llama",
            "--store", (tmp_path / "store").as_uri(), "--tracking-uri", f"sqlite:///{tmp_path / 'cli.db'}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert f"registered {plain_peft} -> lorasoup.tiny-llama.good-adapter/1" in result.output
    assert f"rejected: {t5_adapter}: does not fit base model tiny-llama" in result.output
    assert "imported 1, rejected 1" in result.output
    listed = CliRunner().invoke(app, ["pool", "list", "--tracking-uri", f"sqlite:///{tmp_path / 'cli.db'}", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [(r["name"], r["version"], r["origin"], r["aliases"], r["base"]) for r in json.loads(listed.output)] == [
        ("lorasoup.tiny-llama.good-adapter", "1", "imported", "latest", "tiny-llama")]


def _peft_adapter(base, out, **extra):
    """A real PEFT LoRA on a copy of tiny-llama (random B, so it is not a no-op), saved to `out`."""
    import copy

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(r=4, target_modules=extra.pop("target_modules", ["q_proj", "v_proj"]), init_lora_weights=False,
                        **extra)
    get_peft_model(copy.deepcopy(base.model), config).save_pretrained(str(out))
    return out


def test_dora_adapter_is_rejected_and_the_plain_one_registers(tmp_path, tiny_llama, registry):
    dora = str(_peft_adapter(tiny_llama, tmp_path / "dora-lora", use_dora=True))
    plain = str(_peft_adapter(tiny_llama, tmp_path / "plain-lora"))
    report = import_adapters([dora, plain], tiny_llama, registry)

    assert list(report.rejected) == [dora] and list(report.ok) == [plain]
    why = report.rejected[dora]
    assert why.startswith(f"{dora}: DoRA (use_dora: a learned magnitude vector") and "is not supported" in why
    assert "unreadable" not in why
    v = report.ok[plain]
    assert (v.origin, v.task, v.rank, v.targets) == ("imported", "plain-lora", 4, ["q_proj", "v_proj"])
    assert [x.ref for x in registry.list()] == [v.ref]


@pytest.mark.parametrize(("extra", "feature"), [
    ({"modules_to_save": ["lm_head"]}, "modules_to_save (modules_to_save ['lm_head']"),
    ({"target_modules": ["q_proj", "embed_tokens"]}, "embedding LoRA (LoRA on embedding layer model.embed_tokens"),
])
def test_check_adapter_names_the_unsupported_feature(tmp_path, tiny_llama, extra, feature):
    from lorasoup_core.pool.importer import AdapterMismatch, check_adapter

    d = _peft_adapter(tiny_llama, tmp_path / "odd", **extra)
    with pytest.raises(AdapterMismatch) as info:
        check_adapter(d, tiny_llama, "hub-owner/odd-lora")
    assert str(info.value).startswith(f"hub-owner/odd-lora: {feature}")
    assert str(info.value).endswith("lorasoup composes plain LoRA only (the update scaling * B @ A on Linear layers)")
