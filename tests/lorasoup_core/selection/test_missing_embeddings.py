"""One adapter without a stored embedding (e.g. imported without examples.jsonl) used to make the default
`embedding` filter fail for the whole pool; now it is skipped, with a warning naming it."""

import logging

import numpy as np
import pytest

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.compose import Candidate, CompositionError
from lorasoup_core.data import load_task
from lorasoup_core.selection import FilterSpec, select_candidates


def _card(base, name, embedding):
    return AdapterCard(name=name, task=name, base_model=base.spec, base_fingerprint=base.fingerprint,
                       data_fingerprint="d" * 64, config_fingerprint="c" * 64, rank=4, alpha=8.0,
                       target_modules=["q_proj", "v_proj"], embedding=embedding, origin="imported")


@pytest.fixture
def pool(tiny_llama, tmp_path):
    rng = np.random.default_rng(0)
    cands = []
    for name in ("alpha", "beta", "gamma"):
        v = rng.normal(size=96)
        cands.append(Candidate(name, tmp_path, _card(tiny_llama, name, (v / np.linalg.norm(v)).tolist())))
    cands.append(Candidate("no-examples", tmp_path, _card(tiny_llama, "no-examples", [])))
    cands.append(Candidate("wrong-size", tmp_path, _card(tiny_llama, "wrong-size", [1.0] * 7)))
    cands.append(Candidate("nan", tmp_path, _card(tiny_llama, "nan", [float("nan")] * 96)))
    cands.append(Candidate("cardless", tmp_path, None))
    return cands


def test_embedding_filter_skips_adapters_without_a_usable_embedding(tiny_llama, pool, caplog):
    task = load_task({"source": "skills", "name": "add", "n_train": 10, "n_validation": 0, "n_test": 2})
    # the cardless candidate also has no adapter_config.json: `compatible` would drop it, so keep the chain explicit
    with caplog.at_level(logging.WARNING, logger="lorasoup.selection"):
        sel = select_candidates(tiny_llama, pool, task, task.train[:4], [FilterSpec(name="embedding", k=10)])
    assert sorted(c.name for c in sel.candidates) == ["alpha", "beta", "gamma"], sel.log
    log = "\n".join(sel.log)
    assert "embedding: skipped adapter 'no-examples': no stored embedding" in log
    assert "embedding: skipped adapter 'wrong-size': its stored embedding has size 7, the base model's hidden " \
           "size is 96" in log
    assert "embedding: skipped adapter 'nan': its stored embedding is not finite" in log
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("add: embedding: skipped adapter 'no-examples'" in m for m in warned), warned
    assert all(np.isfinite(s) for s in sel.scores.values())


def test_only_adapters_without_embeddings_still_fail_clearly(tiny_llama, pool):
    task = load_task({"source": "skills", "name": "add", "n_train": 10, "n_validation": 0, "n_test": 2})
    with pytest.raises(CompositionError, match="no candidate adapters left for 'add'.*skipped adapter 'no-examples'"):
        select_candidates(tiny_llama, pool[3:4], task, task.train[:4], ["embedding"])
