"""Experiment configs: `KEY=VALUE` overrides (what `lorasoup run --set` applies), per-variant selection,
compare_to validation."""

import pytest

from lorasoup_core.config import ConfigError
from lorasoup_core.experiment import load_experiment

STUDY = "configs/study_skills.yaml"


def test_overrides_are_dotted_yaml_values_validated_like_the_file():
    cfg = load_experiment(STUDY, ["seeds=[0]", "eval.limit=20", "compose.lorahub.budget=12",
                                  "selection={filters: [loss], k: 3}"])
    assert cfg.run_seeds == [0] and cfg.eval.limit == 20 and cfg.settings("lorahub").budget == 12
    assert cfg.selection.filters == ["loss"] and cfg.selection.k == 3
    assert load_experiment(STUDY).run_seeds == [0, 1, 2]  # the file itself is untouched
    with pytest.raises(ConfigError, match="override 'seeds' is not KEY=VALUE"):
        load_experiment(STUDY, ["seeds"])
    with pytest.raises(ConfigError, match=r"eval\.limitt: Extra inputs are not permitted"):
        load_experiment(STUDY, ["eval.limitt=3"])
    with pytest.raises(ConfigError, match="'name' is not a section"):
        load_experiment(STUDY, ["name.x=1"])


def test_study_config_compares_at_equal_k():
    cfg = load_experiment(STUDY)
    # the paper preset draws at random; lorasoup's pipeline ranks by embedding; both keep the same k
    assert cfg.selection_of("lorahub").filters == ["random"] and cfg.selection_of("recommended").filters == ["embedding-or-arrow"]
    assert cfg.selection_of("recommended").k == cfg.selection_of("lorahub-modules").k == cfg.selection.k == 5
    # per-module weights change one setting of the preset and nothing else
    modules, preset = cfg.settings("lorahub-modules"), cfg.settings("lorahub")
    assert modules.module_groups == 2 and modules.model_copy(update={"module_groups": 1}) == preset
    assert {"lora-fewshot", "ia3-fewshot", "full-fewshot", "zero-shot", "icl"} <= set(cfg.methods)
    assert cfg.compare_to[:3] == ["recommended", "lorahub", "zero-shot"]
    # the filters from the weights, the embedding and the oracle at the same k; routing over the whole pool
    assert [cfg.selection_of(m).k for m in ("lorahub-arrow", "lorahub-oracle")] == [5, 5]
    assert cfg.selection_of("lorahub-arrow").filters == ["arrow"] and cfg.method_of("arrow-pool") == "arrow"
    assert cfg.selection_of("arrow-pool").k == cfg.selection_of("arrow-gks-pool").k == len(cfg.pool.tasks)


def test_a_variant_starts_from_its_composers_compose_section():
    with_variants = ["methods=[lorahub, lorahub-exact, lorahub-cma, cat, cat-oracle, zero-shot]",
                     "variants={cat-oracle: {method: cat, selection: {filters: [oracle], k: 5}}, "
                     "lorahub-exact: {method: lorahub, settings: {formula: exact}}, "
                     "lorahub-cma: {method: lorahub, settings: {optimizer: CMA}}}",
                     "compose={cat: {mix_size: 300}}", "compare_to=[lorahub, zero-shot, cat]"]
    cfg = load_experiment(STUDY, with_variants)
    # a variant with its own selection, and the CAT settings of the experiment (not the defaults)
    assert cfg.selection_of("cat-oracle").filters == ["oracle"] and cfg.method_of("cat-oracle") == "cat"
    assert cfg.settings("cat-oracle") == cfg.settings("cat") and cfg.settings("cat").mix_size == 300
    cfg = load_experiment(STUDY, [*with_variants, "variants.cat-oracle={method: cat, settings: {epochs: 3}}",
                                  "compose={cat: {mix_size: 300}, lorahub: {budget: 12}}"])
    assert (cfg.settings("cat-oracle").mix_size, cfg.settings("cat-oracle").epochs) == (300, 3)
    assert cfg.settings("cat").epochs == 1  # the section itself is untouched
    # a lorahub variant keeps the section's budget and its own change; a variant's own value wins
    assert (cfg.settings("lorahub-exact").budget, cfg.settings("lorahub-exact").formula) == (12, "exact")
    cfg = load_experiment(STUDY, [*with_variants, "compose={cat: {mix_size: 300}, lorahub: {budget: 12}}",
                                  "variants.lorahub-cma={method: lorahub, settings: {optimizer: CMA, budget: 7}}"])
    assert (cfg.settings("lorahub-cma").budget, cfg.settings("lorahub").budget) == (7, 12)
    assert cfg.compare_to == ["lorahub", "zero-shot", "cat"]
    with pytest.raises(ConfigError, match="compare_to: nope is not evaluated"):
        load_experiment(STUDY, ["compare_to=[nope]"])
    # the default (zero-shot) applies only where zero-shot is evaluated
    from lorasoup_core.experiment import ExperimentConfig

    minimal = {"name": "m", "pool": {"tasks": ["skills:add"]}, "targets": [{"task": "skills:count_then_add"}]}
    assert ExperimentConfig.model_validate({**minimal, "methods": ["lorahub", "icl"]}).compare_to == []
    assert ExperimentConfig.model_validate({**minimal, "methods": ["lorahub", "zero-shot"]}).compare_to == ["zero-shot"]


def test_eval_settings_reach_the_scoring_spec():
    from pydantic import ValidationError

    from lorasoup_core.experiment.config import EvalConfig

    config = EvalConfig(multiple_choice=True, icl_demos="shared", max_batch_tokens=512, merge_adapter=False,
                        max_new_tokens=7).scoring_for("skills")
    assert (config.multiple_choice, config.icl_demos, config.max_batch_tokens, config.merge_adapter,
            config.max_new_tokens) == (True, "shared", 512, False, 7)
    with pytest.raises(ValidationError, match="icl_demos"):
        EvalConfig(icl_demos="sometimes")
