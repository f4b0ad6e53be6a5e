"""k candidates composed: k = 0 (or less) is refused in one line, not read as "no cap" (which composed the
whole pool). Config and filter k are pydantic fields with ge=1; `select_candidates(k=...)` is the rest."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from lorasoup_core.compose import Candidate, CompositionError
from lorasoup_core.data import Example, Task
from lorasoup_core.experiment.config import SelectionConfig
from lorasoup_core.selection import FilterSpec, select_candidates

TARGET = Task("target", [Example("a", "b")], [], [])


@pytest.fixture
def pool(tmp_path):
    """Five candidate directories the constraints and the random filter accept (they read the config only)."""
    cands = []
    for i in range(5):
        (tmp_path / f"c{i}").mkdir()
        (tmp_path / f"c{i}" / "adapter_config.json").write_text(json.dumps({"target_modules": ["q_proj", "v_proj"]}))
        cands.append(Candidate(f"c{i}", tmp_path / f"c{i}"))
    return cands


@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_is_refused(tiny_llama, pool, k):
    with pytest.raises(CompositionError) as err:
        select_candidates(tiny_llama, pool, TARGET, TARGET.train, [FilterSpec(name="random")], k=k)
    assert str(err.value) == f"k = {k} candidates for 'target': compose at least 1 (k >= 1)"


def test_k_caps_the_candidates(tiny_llama, pool):
    assert len(select_candidates(tiny_llama, pool, TARGET, TARGET.train, ["random"], k=2).candidates) == 2
    assert len(select_candidates(tiny_llama, pool, TARGET, TARGET.train, ["random"], k=None).candidates) == 5


@pytest.mark.parametrize("model", [SelectionConfig, FilterSpec])
def test_config_k_below_one_is_refused(model):
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        model.model_validate({"name": "random", "k": 0} if model is FilterSpec else {"k": 0})


def test_compose_cli_refuses_k_below_one():
    """`lorasoup compose -k 0` used to read 0 as "the default" (`k or 20`) and compose 20 candidates."""
    from typer.testing import CliRunner

    from lorasoup_core.cli import app

    out = CliRunner().invoke(app, ["compose", "--target", "skills:add", "-k", "0"])
    assert out.exit_code == 2 and "-k" in out.output and "1" in out.output, out.output
