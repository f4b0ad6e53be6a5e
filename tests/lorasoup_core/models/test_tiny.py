import pytest
import torch

from lorasoup_core.models import load_model, resolve_device, resolve_dtype


@pytest.mark.parametrize("spec,kind", [("tiny-llama", "causal"), ("tiny-t5", "seq2seq")])
def test_tiny_presets_are_small_seeded_and_run(spec, kind):
    a = load_model(spec, device="cpu")
    b = load_model(spec, device="cpu")
    assert a.kind == kind
    assert 50_000 < a.n_params < 1_000_000
    assert a.fingerprint == b.fingerprint  # fixed seed: the same weights every time
    # The vocabulary covers every id the byte tokenizer can produce (len(tok), not tok.vocab_size).
    assert a.model.config.vocab_size == len(a.tokenizer) > a.tokenizer.vocab_size
    ids = a.tokenizer(["hello", "a longer input"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        if kind == "causal":
            out = a.model(**ids)
        else:
            out = a.model(**ids, decoder_input_ids=torch.zeros(2, 1, dtype=torch.long))
    assert out.logits.shape[-1] == len(a.tokenizer)
    assert torch.isfinite(out.logits).all()
    assert not any(p.requires_grad for p in a.model.parameters())  # frozen base


def test_presets_differ():
    assert load_model("tiny-llama").fingerprint != load_model("tiny-t5").fingerprint


def test_device_and_dtype_defaults_and_overrides():
    dev = resolve_device(None)
    assert dev.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    m = load_model("tiny-llama", device="cpu", dtype="bfloat16")
    assert m.dtype == torch.bfloat16 and next(m.model.parameters()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        resolve_dtype("float8", torch.device("cpu"))
