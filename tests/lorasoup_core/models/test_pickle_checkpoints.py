"""A model whose weights are a pickle checkpoint is refused in one line naming the file, and the pickle is
never opened (here it would create a marker file if it were unpickled); safetensors beside a stray pickle load."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from lorasoup_core.cli import app
from lorasoup_core.models import ModelSpecError, load_model


class _Opens:
    """Unpickling this calls open(marker, "w"): proof that a checkpoint was (or was not) unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def model_dir(tiny_llama, tmp_path):
    d = tmp_path / "model"
    tiny_llama.model.save_pretrained(d)
    tiny_llama.tokenizer.save_pretrained(d)
    return d


def _pickle_only(d, marker):
    (d / "model.safetensors").unlink()
    torch.save({"state": {}, "payload": _Opens(marker)}, d / "pytorch_model.bin")
    return d / "pytorch_model.bin"


def test_a_pickle_only_directory_is_refused_unopened(model_dir, tmp_path):
    weights = _pickle_only(model_dir, tmp_path / "unpickled")
    with pytest.raises(ModelSpecError) as err:
        load_model(str(model_dir), device="cpu")
    assert str(err.value).startswith(f"{weights} is a pickle checkpoint, which lorasoup will not load")
    assert "convert it to safetensors" in str(err.value)
    assert not (tmp_path / "unpickled").exists()


def test_models_check_says_so_in_one_line(model_dir, tmp_path):
    weights = _pickle_only(model_dir, tmp_path / "unpickled")
    result = CliRunner().invoke(app, ["models", "check", str(model_dir), "--device", "cpu"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {weights} is a pickle checkpoint"), result.output
    assert "weights_only" not in result.output and not (tmp_path / "unpickled").exists()


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".bin"])
def test_a_pickle_file_spec_is_refused_unopened(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    torch.save({"payload": _Opens(tmp_path / "unpickled")}, path)
    with pytest.raises(ModelSpecError, match=r"is a pickle checkpoint, which lorasoup will not load"):
        load_model(str(path), device="cpu")
    assert not (tmp_path / "unpickled").exists()


def test_safetensors_beside_a_stray_pickle_load_without_it(model_dir, tmp_path, tiny_llama):
    torch.save({"payload": _Opens(tmp_path / "unpickled")}, model_dir / "pytorch_model.bin")
    loaded = load_model(str(model_dir), device="cpu")
    assert loaded.n_params == tiny_llama.n_params and not (tmp_path / "unpickled").exists()
