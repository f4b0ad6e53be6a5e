import pytest
import torch

from lorasoup_core.models import ModelSpecError, load_model
from lorasoup_core.models.files import embedded_smollm2_gguf


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-t5"])
def test_local_hf_directory_saved_from_a_preset(preset, tmp_path):
    src = load_model(preset, device="cpu")
    src.model.save_pretrained(tmp_path)
    src.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path), device="cpu")
    assert loaded.kind == src.kind
    assert loaded.spec == str(tmp_path)
    ids = src.tokenizer(["abc def"], return_tensors="pt")
    extra = {} if src.kind == "causal" else {"decoder_input_ids": torch.zeros(1, 1, dtype=torch.long)}
    with torch.inference_mode():
        a = src.model(**ids, **extra).logits
        b = loaded.model(**ids, **extra).logits
    # Same weights bit for bit; logits may differ in the last float bits (kernel choice on reload).
    reloaded = loaded.model.state_dict()
    for name, p in src.model.state_dict().items():
        assert torch.equal(p, reloaded[name]), name
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert load_model(str(tmp_path)).fingerprint == loaded.fingerprint  # cached digest, same answer


def test_unknown_spec_lists_the_specs_that_exist():
    with pytest.raises(ModelSpecError) as err:
        load_model("no-such-model")
    msg = str(err.value)
    assert "no-such-model" in msg and "tiny-llama" in msg and "smollm2-135m" in msg and "tiny-t5" in msg


def test_missing_paths_and_offline_hub_give_clear_errors(tmp_path):
    with pytest.raises(ModelSpecError, match="GGUF file not found"):
        load_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelSpecError, match="without config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ModelSpecError, match="unknown model spec"):
        load_model(str(tmp_path / "nope"))
    # HF_HUB_OFFLINE=1 in tests: a hub id that is not cached cannot load.
    with pytest.raises(ModelSpecError, match="cannot load model 'someone/not-cached'"):
        load_model("someone/not-cached")


@pytest.mark.slow
def test_embedded_smollm2_knows_the_capital_of_france(smollm2):
    assert smollm2.kind == "causal"
    assert 100e6 < smollm2.n_params < 200e6
    tok = smollm2.tokenizer
    batch = tok("The capital of France is", return_tensors="pt")
    with torch.inference_mode():
        out = smollm2.model.generate(**batch, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert "Paris" in tok.decode(out[0, batch["input_ids"].shape[1]:])


@pytest.mark.slow
def test_gguf_path_spec_reuses_the_converted_cache(smollm2):
    path = embedded_smollm2_gguf()
    by_path = load_model(str(path), device="cpu")
    assert by_path.fingerprint == smollm2.fingerprint  # both are the GGUF's sha256
    assert by_path.model.config.hidden_size == smollm2.model.config.hidden_size
