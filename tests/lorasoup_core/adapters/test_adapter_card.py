"""AdapterCard: file round trip, store key, clear errors."""

from __future__ import annotations

import json

import pytest

from lorasoup_core.adapters import CARD_FILE, AdapterCard, TrainingConfig, slug


def make_card(**over) -> AdapterCard:
    fields = dict(name="add", task="add", base_model="HuggingFaceTB/SmolLM2-135M", base_fingerprint="b" * 64,
                  data_fingerprint="d" * 64, config_fingerprint=TrainingConfig().fingerprint,
                  training=TrainingConfig().model_dump(mode="json"), metrics={"val_loss": 0.5, "steps": 10},
                  rank=8, alpha=16, target_modules=["q_proj", "v_proj"], embedding=[0.6, 0.8])
    return AdapterCard(**{**fields, **over})


def test_round_trip(tmp_path):
    card = make_card(loss_curve=[2.0, 1.0], lineage={"method": "cat", "candidates": ["a", "b"]}, origin="composed")
    path = card.write(tmp_path)
    assert path == tmp_path / CARD_FILE and not list(tmp_path.glob("*.tmp"))
    assert AdapterCard.read(tmp_path) == card
    assert json.loads(path.read_text())["metrics"] == {"val_loss": 0.5, "steps": 10.0}


def test_store_key_and_slug():
    card = make_card()
    assert card.store_key == f"adapters/HuggingFaceTB-SmolLM2-135M/add/{'d' * 12}-{card.config_fingerprint[:12]}"
    assert slug("/tmp/models/x y.gguf") == "tmp-models-x-y.gguf"
    assert slug("///") == "x-732c4e9711"  # no safe character: a fallback of its own, not a shared "x"


def test_config_fingerprint_tracks_every_field():
    assert TrainingConfig().fingerprint == TrainingConfig().fingerprint
    assert TrainingConfig(seed=1).fingerprint != TrainingConfig().fingerprint
    with pytest.raises(ValueError, match="rnak"):
        TrainingConfig(rnak=4)


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=CARD_FILE):
        AdapterCard.read(tmp_path)
    (tmp_path / CARD_FILE).write_text('{"name": "x"}')
    with pytest.raises(ValueError, match=rf"{CARD_FILE}: invalid lorasoup card.*task"):
        AdapterCard.read(tmp_path)
