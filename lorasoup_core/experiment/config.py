"""The experiment config: one YAML file drives the whole DAG (pool -> compose -> evaluate -> report).

It is a pool file (model, storage, tracking, pool) plus the targets, the candidate selection, the
methods with their own settings, and the evaluation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from lorasoup_core.adapters import slug_clash
from lorasoup_core.compose import ComposerSettings, settings_for
from lorasoup_core.config import ConfigError, ModelConfig, StrictModel, load_config
from lorasoup_core.data import COMPOSED_TASKS, DataError, TaskSpec, list_tasks, load_task, parse_spec
from lorasoup_core.data.spec import get_source
from lorasoup_core.pool.config import PoolConfig, PoolFile

if TYPE_CHECKING:
    from lorasoup_core.bench.suites import BenchmarkConfig

Baseline = Literal["zero-shot", "icl", "datamix"]


def _known(registry: Any, names: Any) -> Any:
    """Registry lookups as a validation error (pydantic reports ValueErrors, not KeyErrors)."""
    from lorasoup_core.plugins import UnknownPluginError

    for name in names:
        try:
            registry.get(name)
        except UnknownPluginError as err:
            raise ValueError(str(err)) from None
    return names


# Sources whose `name` picks one of the tasks their lister names (file sources take any name).
_NAMED_SOURCES = ("skills", "bbh")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _on_hub(spec: TaskSpec) -> bool:
    """A hub dataset id (e.g. lukaemon/bbh): not looked up while validating, which must work offline."""
    path = spec.path
    return spec.source == "hf" or (bool(path) and not Path(path).expanduser().exists() and "/" in path
                                   and not path.startswith(("/", ".", "~")))


def check_task_name(spec: TaskSpec | dict | str) -> TaskSpec:
    """A task spec whose source is known and, for skills and BBH, whose task exists (BBH: when its data is
    on this machine; a GPU worker may hold data this one lacks, see `check_task_data`)."""
    s = parse_spec(spec)
    get_source(s.source)  # unknown source: lists the known ones
    if s.source not in _NAMED_SOURCES or _on_hub(s):
        return s
    try:
        known = list_tasks(s.source, s.path)
    except DataError:
        return s
    if s.name not in known:
        raise ValueError(f"unknown {s.source} task {s.name!r}; known: {', '.join(known)}")
    return s


def check_device_and_dtype(model: ModelConfig) -> ModelConfig:
    """The form only: a config is portable, so a GPU it names is looked for where the model loads."""
    if not _DEVICE.fullmatch(model.device):
        raise ValueError(f"device {model.device!r}: expected auto, cpu, cuda, cuda:N (e.g. cuda:1) or mps")
    import torch

    from lorasoup_core.models.base import resolve_dtype

    resolve_dtype(model.dtype, torch.device("cpu"))  # unknown dtype: a ValueError listing the known ones
    return model


def check_task_data(cfg: ExperimentConfig, pool: bool = True) -> None:
    """Load every target (and, with `pool`, every pool task) as this machine would: for runs whose steps
    run here, so missing data or a bad task is found before any training. Hub datasets are left out."""
    specs = [(f"targets.{i}.task", t.task) for i, t in enumerate(cfg.targets)]
    specs += [(f"pool.tasks.{i}", t) for i, t in enumerate(cfg.pool.tasks)] if pool else []
    oracle = any("oracle" in cfg.selection_of(m).filters for m in cfg.methods)
    problems = []
    for where, spec in specs:
        if _on_hub(parse_spec(spec)):
            continue
        try:
            task = load_task(spec)
        except (ValueError, OSError) as err:  # DataError is a ValueError
            problems.append(f"  {where}: {err}")
            continue
        if oracle and where.startswith("targets") and not task.components:
            problems.append(f"  {where}: the oracle filter needs a target built from pool tasks (a composed "
                            f"skill); {task.name!r} names none")
    if pool:  # hook: a published pool (`hub_pool`) is registered, or the hub answers
        from lorasoup_core.pool.hub import config_problems

        problems += [f"  {p}" for p in config_problems(cfg)]
    if problems:
        raise ConfigError("\n".join([f"config {cfg.name!r}: task data ({len(problems)} problem(s))", *problems]))


class SelectionConfig(StrictModel):
    filters: list[str] = Field(["embedding"], description="Candidate filters, applied in order: random, loss, "
                               "embedding, oracle (a composed skill's own components).")
    k: int = Field(20, ge=1, description="Candidates kept for composition.")
    exclude_target: bool = Field(True, description="Never offer the target's own adapter when the pool has one "
                                 "(leave-one-out: the target is unseen).")

    @field_validator("filters")
    @classmethod
    def _known_filters(cls, filters: list[str]) -> list[str]:
        from lorasoup_core.selection import FILTERS

        return _known(FILTERS, filters)


class TargetConfig(StrictModel):
    task: TaskSpec | str = Field(description="The unseen target task ('skills:count_then_add', 'bbh:navigate' ...).")
    shots: int = Field(5, ge=1, description="Few-shot examples the composition is fitted on (never scored).")

    @property
    def name(self) -> str:
        return parse_spec(self.task).name

    @field_validator("task")
    @classmethod
    def _resolvable(cls, task: TaskSpec | str) -> TaskSpec | str:
        check_task_name(task)
        return task


class EvalConfig(StrictModel):
    limit: int | None = Field(50, ge=1, description="Test examples scored per target (None = all).")
    k_shot: int = Field(3, ge=1, description="Demonstrations in the ICL baseline's prompt.")
    batch_size: int = Field(64, ge=1, description="Most rows per generation batch (see max_batch_tokens).")
    baselines: list[Baseline] = Field(["zero-shot", "icl"], description="Baselines evaluated beside the composers.")
    max_new_tokens: int = Field(16, ge=1, description="Greedy generation budget per example (LoraHub's: 256).")
    icl_demos: Literal["per_example", "shared"] = Field(
        "per_example", description="ICL demonstrations drawn per test example, or one draw shared by all.")
    multiple_choice: bool = Field(False, description="Also score closed answer sets by option log-likelihood "
                                  "(reported as '<method>/mc' beside exact match).")
    max_batch_tokens: int | None = Field(8192, gt=0, description="Padded tokens (prompt + new) per generation "
                                         "batch: short prompts share big batches, long ones small; None: no limit.")
    merge_adapter: bool = Field(True, description="Merge the evaluated adapter into the base weights while "
                                "scoring (restored exactly afterwards).")

    def benchmark(self) -> BenchmarkConfig:
        """The generation settings of an evaluation of composed targets."""
        from lorasoup_core.bench.suites import GENERIC  # torch: not needed to validate a config

        return GENERIC.model_copy(update={"max_new_tokens": self.max_new_tokens, "icl_demos": self.icl_demos,
                                          "multiple_choice": self.multiple_choice,
                                          "max_batch_tokens": self.max_batch_tokens,
                                          "merge_adapter": self.merge_adapter})


class MethodVariant(StrictModel):
    """A named variant of a composer, e.g. lorahub with lorasoup's exact formula, listed in `methods` by its
    name and reported under it."""

    method: str = Field(description="The composer (lorahub, cat, ties ...).")
    settings: SerializeAsAny[ComposerSettings] = Field(
        default_factory=ComposerSettings, description="The composer's settings, validated by its settings class.")
    selection: SelectionConfig | None = Field(None, description="This variant's own candidate selection (e.g. "
                                              "another filter at the same k); default: the experiment's.")

    @model_validator(mode="before")
    @classmethod
    def _validate_settings(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("method"), str):
            from lorasoup_core.compose import COMPOSERS

            _known(COMPOSERS, [value["method"]])
            value = {**value, "settings": settings_for(value["method"], value.get("settings"))}
        return value


def _given(settings: Any) -> dict[str, Any]:
    """The fields a settings value names: a mapping as written, or a settings object's explicitly set fields."""
    if isinstance(settings, ComposerSettings):
        return settings.model_dump(exclude_unset=True)
    return dict(settings) if isinstance(settings, dict) else {}


class ExperimentConfig(PoolFile):
    """Everything one experiment run needs; params of the MLflow parent run are this, fully resolved."""

    name: str = Field(description="Experiment name: the MLflow experiment and the store prefix for reports.")
    seed: int = Field(0, description="Seed for shot sampling, random filters, searches, CAT init and pruning.")
    seeds: list[int] = Field(default_factory=list, description="Repeat every (target, method) once per seed (the "
                             "shots, the random filter's draw, searches and CAT's init vary with it) and report the "
                             "mean over seeds and the best seed, as LoraHub's protocol does (5 seeds); empty: `seed`.")
    targets: list[TargetConfig] = Field(description="Target tasks to compose for.")
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    methods: list[str] = Field(["lorahub", "cat", "uniform", "centroid"], description="Composers to run, by "
                               "composer name or by the name of one of `variants`.")
    variants: dict[str, MethodVariant] = Field(
        default_factory=dict, description="Named method variants, e.g. {lorahub-exact: {method: lorahub, "
        "settings: {formula: exact}}}; each name is listed in `methods` and reported under that name. A "
        "variant's settings start from its composer's section of `compose` and change only what it names.")
    compose: dict[str, SerializeAsAny[ComposerSettings]] = Field(
        default_factory=dict, description="Settings per method, e.g. {lorahub: {budget: 40}, cat: {steps: 30}}; "
        "each validated by that method's settings class. Methods left out run with their defaults.")
    eval: EvalConfig = Field(default_factory=EvalConfig)
    compare_to: list[str] = Field(["zero-shot"], description="Methods or baselines every other method is compared "
                                  "with on the same examples (paired test: p-value and interval of the difference).")
    hub_pool: list[str] = Field(default_factory=list, description="Published adapter pools imported from the hub "
                                "as candidates, e.g. [lorahub:flan-t5-large] (`lorasoup pool import NAME --model "
                                "SPEC`); validation needs them registered for `model.spec` or the hub answering.")

    @field_validator("hub_pool")
    @classmethod
    def _known_hub_pools(cls, names: list[str]) -> list[str]:
        from lorasoup_core.pool.hub import check_pool_names

        return check_pool_names(names)

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment: `tracking.experiment` when set, else the config's name."""
        return self.tracking.experiment or self.name

    @model_validator(mode="before")
    @classmethod
    def _variants_start_from_compose(cls, value: Any) -> Any:
        # a variant is "this experiment's composer with one change": `compose: {cat: {mix_size: 300}}` holds
        # for a cat variant too, unless the variant sets mix_size itself
        if not isinstance(value, dict) or not isinstance(value.get("compose"), dict) \
                or not isinstance(value.get("variants"), dict):
            return value
        compose, variants = value["compose"], dict(value["variants"])
        for name, variant in variants.items():
            if isinstance(variant, dict) and isinstance(variant.get("method"), str) and variant["method"] in compose:
                variants[name] = {**variant, "settings": {**_given(compose[variant["method"]]),
                                                          **_given(variant.get("settings"))}}
        return {**value, "variants": variants}

    @field_validator("targets")
    @classmethod
    def _some_target(cls, targets: list[TargetConfig]) -> list[TargetConfig]:
        if not targets:  # else the run publishes an empty report and exits 0
            raise ValueError("no targets: name at least one target task (e.g. {task: skills:count_then_add})")
        return targets

    @field_validator("model")
    @classmethod
    def _device_and_dtype(cls, model: ModelConfig) -> ModelConfig:
        return check_device_and_dtype(model)

    @field_validator("pool")
    @classmethod
    def _pool_tasks(cls, pool: PoolConfig) -> PoolConfig:
        for i, task in enumerate(pool.tasks):
            try:
                check_task_name(task)
            except ValueError as err:
                raise ValueError(f"tasks.{i}: {err}") from None
        return pool

    @field_validator("compose", mode="before")
    @classmethod
    def _settings_per_method(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        from lorasoup_core.compose import COMPOSERS

        return {m: settings_for(m, v) for m, v in value.items() if _known(COMPOSERS, [m])}

    @model_validator(mode="after")
    def _every_method_resolved(self) -> ExperimentConfig:
        from lorasoup_core.compose import COMPOSERS

        clash = sorted(set(self.variants) & set(COMPOSERS.names()))
        if clash:
            raise ValueError(f"variants: {', '.join(clash)} is a composer's own name; give the variant another")
        dupes = sorted({m for m in self.methods if self.methods.count(m) > 1})
        if dupes:
            raise ValueError(f"methods: {', '.join(dupes)} listed more than once")
        _known(COMPOSERS, [m for m in self.methods if m not in self.variants])
        composers = {self.composer_of(m) for m in self.methods}
        extra = sorted(set(self.compose) - composers)
        if extra:
            raise ValueError(f"compose has settings for method(s) not in `methods`: {', '.join(extra)}")
        unused = sorted(set(self.variants) - set(self.methods))
        if unused:
            raise ValueError(f"variants not listed in `methods`: {', '.join(unused)}")
        self.compose = {c: settings_for(c, self.compose.get(c)) for c in sorted(composers)}
        # every adapter the run registers: pool tasks, and <target>-<method> compositions (compose/export.py)
        if clash := slug_clash([*self.pool.task_names, *(f"{t.name}-{m}" for t in self.targets for m in self.methods)]):
            raise ValueError(f"adapter names: {clash}")
        evaluated = [*self.methods, *self.eval.baselines]
        if "compare_to" in self.model_fields_set:
            unknown = sorted(set(self.compare_to) - set(evaluated))
            if unknown:
                raise ValueError(f"compare_to: {', '.join(unknown)} is not evaluated; known: {', '.join(evaluated)}")
        else:  # the default, zero-shot, only when it is evaluated
            self.compare_to = [m for m in self.compare_to if m in evaluated]
        if any("oracle" in self.selection_of(m).filters for m in self.methods):
            plain = [t.name for t in self.targets if parse_spec(t.task).source == "skills"
                     and t.name not in COMPOSED_TASKS]
            if plain:
                raise ValueError(f"the oracle filter needs composed targets; {', '.join(plain)} is built from no "
                                 f"pool task (composed skills: {', '.join(sorted(COMPOSED_TASKS))})")
        return self

    @property
    def run_seeds(self) -> list[int]:
        return list(self.seeds) or [self.seed]

    def composer_of(self, name: str) -> str:
        """The composer behind a name in `methods` (itself, or a variant's)."""
        return self.variants[name].method if name in self.variants else name

    def selection_of(self, name: str) -> SelectionConfig:
        """The candidate selection of a name in `methods`: a variant's own, else the experiment's."""
        variant = self.variants.get(name)
        return variant.selection if variant is not None and variant.selection is not None else self.selection

    def settings(self, name: str) -> ComposerSettings:
        """The settings of a name in `methods`: a variant's own, else the composer's section of `compose`."""
        if name in self.variants:
            return self.variants[name].settings
        return self.compose.get(name) or settings_for(name)


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """An experiment YAML, with optional `KEY=VALUE` overrides (e.g. `seeds=[0]`, `eval.limit=20`)."""
    return load_config(path, ExperimentConfig, overrides)
