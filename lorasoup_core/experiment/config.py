"""The experiment config: one YAML file drives the whole DAG (pool -> compose -> evaluate -> report).

It is a pool file (model, storage, tracking, pool) plus the targets, the candidate selection, the
methods with their own settings, and the evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from lorasoup_core.adapters import slug_clash
from lorasoup_core.config import MethodSettings, ModelConfig, StrictModel, load_config, read_yaml
from lorasoup_core.data import COMPOSED_TASKS, TaskSpec, parse_spec
from lorasoup_core.experiment.checks import check_device_and_dtype, check_task_name
from lorasoup_core.methods import METHODS, Consumes, MethodSpec, Yields, settings_for
from lorasoup_core.pool.config import PoolConfig, PoolFile

if TYPE_CHECKING:
    from lorasoup_core.bench.suites import BenchmarkConfig

# What a config that lists no baseline in `methods` and no `eval.baselines` was evaluated beside before
# baselines became methods: such a config still is.
LEGACY_BASELINES = ("zero-shot", "icl")


def _known(registry: Any, names: Any) -> Any:
    """Registry lookups as a validation error (pydantic reports ValueErrors, not KeyErrors)."""
    from lorasoup_core.plugins import UnknownPluginError

    for name in names:
        try:
            registry.get(name)
        except UnknownPluginError as err:
            raise ValueError(str(err)) from None
    return names


class SelectionConfig(StrictModel):
    filters: list[str] = Field(["embedding"], description="Candidate filters, applied in order: random, loss, "
                               "embedding, arrow (no stored examples needed), embedding-or-arrow (arrow where some "
                               "candidate has no stored examples), oracle (a composed skill's own components).")
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
    """How targets are evaluated. A target is scored with its benchmark's registered settings (a skills task
    with the skills suite's, a gsm-hard task with PAL's stop strings and sandbox, a BBH task with BBH's answer
    extraction; a task of no benchmark with the generic ones); a field set here overrides that field."""

    limit: int | None = Field(50, ge=1, description="Test examples scored per target (None = all).")
    k_shot: int = Field(3, ge=1, description="Demonstrations in the ICL baseline's prompt.")
    batch_size: int = Field(64, ge=1, description="Most rows per generation batch (see max_batch_tokens).")
    max_new_tokens: int | None = Field(None, ge=1, description="Greedy generation budget per example; default: "
                                       "the target's benchmark's (16 for skills, 256 for gsm-hard; LoraHub's: 256).")
    icl_demos: Literal["per_example", "shared"] | None = Field(
        None, description="ICL demonstrations drawn per test example, or one draw shared by all; default: the "
        "target's benchmark's.")
    multiple_choice: bool | None = Field(None, description="Also score closed answer sets by option log-likelihood "
                                         "(reported as '<method>/mc' beside exact match); default: the benchmark's.")
    max_batch_tokens: int | None = Field(8192, gt=0, description="Padded tokens (prompt + new) per generation "
                                         "batch: short prompts share big batches, long ones small; None: no limit.")
    merge_adapter: bool = Field(True, description="Merge the evaluated adapter into the base weights while "
                                "scoring (restored exactly afterwards).")
    scoring: dict[str, Any] = Field(default_factory=dict, description="Any other field of the benchmark's scoring "
                                    "spec to override, e.g. {stop: ['\\n\\n'], extract: last_number, metric: "
                                    "exact_match} (`lorasoup_core.bench.suites.BenchmarkConfig`).")

    @field_validator("scoring")
    @classmethod
    def _known_scoring_fields(cls, scoring: dict[str, Any]) -> dict[str, Any]:
        from lorasoup_core.bench.suites import GENERIC  # torch: not needed to validate a config
        from lorasoup_core.bench.suites.base import with_settings

        with_settings(GENERIC, scoring)  # an unknown field or a bad value fails at load time
        return scoring

    def overrides(self) -> dict[str, Any]:
        """The scoring-spec fields this config sets."""
        named = {"max_new_tokens": self.max_new_tokens, "icl_demos": self.icl_demos,
                 "multiple_choice": self.multiple_choice}
        return {**{k: v for k, v in named.items() if v is not None}, "max_batch_tokens": self.max_batch_tokens,
                "merge_adapter": self.merge_adapter, **self.scoring}

    def scoring_for(self, source: str) -> BenchmarkConfig:
        """The scoring spec of a target read from the data source `source` (its TaskSpec's): the source's
        benchmark's, with this config's overrides."""
        from lorasoup_core.bench.suites import scoring_spec
        from lorasoup_core.bench.suites.base import with_settings

        return with_settings(scoring_spec(source), self.overrides())


class MethodVariant(StrictModel):
    """A named variant of a method, e.g. lorahub with lorasoup's exact formula, listed in `methods` by its
    name and reported under it."""

    method: str = Field(description="The method (lorahub, cat, ties, icl ...; `lorasoup compose --list-methods`).")
    settings: SerializeAsAny[MethodSettings] = Field(
        default_factory=MethodSettings, description="The method's settings, validated by its settings class.")
    selection: SelectionConfig | None = Field(None, description="This variant's own candidate selection (e.g. "
                                              "another filter at the same k); default: the experiment's.")

    @model_validator(mode="before")
    @classmethod
    def _validate_settings(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("method"), str):
            _known(METHODS, [value["method"]])
            value = {**value, "settings": settings_for(value["method"], value.get("settings"))}
        return value


def _given(settings: Any) -> dict[str, Any]:
    """The fields a settings value names: a mapping as written, or a settings object's explicitly set fields."""
    if isinstance(settings, MethodSettings):
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
    methods: list[str] = Field(["lorahub", "cat", "uniform", "centroid", "zero-shot", "icl"], description="What "
                               "the study compares, composers and baselines alike (`lorasoup compose "
                               "--list-methods`), by method name or by the name of one of `variants`; "
                               "evaluated and reported in this order.")
    variants: dict[str, MethodVariant] = Field(
        default_factory=dict, description="Named method variants, e.g. {lorahub-exact: {method: lorahub, "
        "settings: {formula: exact}}}; each name is listed in `methods` and reported under that name. A "
        "variant's settings start from its composer's section of `compose` and change only what it names.")
    compose: dict[str, SerializeAsAny[MethodSettings]] = Field(
        default_factory=dict, description="Settings per method, e.g. {lorahub: {budget: 40}, cat: {steps: 30}}; "
        "each validated by that method's settings class. Methods left out run with their defaults.")
    eval: EvalConfig = Field(default_factory=EvalConfig)
    compare_to: list[str] = Field(["zero-shot"], description="Methods or baselines every other method is compared "
                                  "with on the same examples (paired test: p-value and interval of the difference).")
    plugins: list[str] = Field(default_factory=list, description="Modules (dotted names or .py paths) imported "
                               "before the config is read: the methods, composers or filters they register can "
                               "be named in it. Every process that runs a step imports them too.")
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
    def _baselines_are_methods(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        if isinstance(value.get("plugins"), list):  # first: the methods they register are named below
            from lorasoup_core.plugins import load_plugins

            load_plugins([str(p) for p in value["plugins"]])
        # older configs list baselines in `eval.baselines` (default zero-shot, icl): they join `methods`
        evaluation = value.get("eval")
        methods = value.get("methods")
        given = isinstance(evaluation, dict) and "baselines" in evaluation
        if not given and not isinstance(methods, list):
            return value  # the default `methods` has the baselines
        baselines = evaluation.get("baselines") if given else None
        if baselines is None:
            variants = value.get("variants") if isinstance(value.get("variants"), dict) else {}
            of = [v.get("method") if isinstance(v, dict) else None for v in variants.values()]
            named = [m for m in (methods or []) if isinstance(m, str)] + [m for m in of if isinstance(m, str)]
            baselines = [] if any(m in METHODS and not _is_composer(m) for m in named) else list(LEGACY_BASELINES)
        if not isinstance(baselines, list):
            return value  # `eval` reports the type error
        methods = list(methods if isinstance(methods, list) else ExperimentConfig.model_fields["methods"].default)
        methods += [b for b in baselines if b not in methods]
        rest = {k: v for k, v in evaluation.items() if k != "baselines"} if isinstance(evaluation, dict) else evaluation
        return {**value, "methods": methods, **({"eval": rest} if evaluation is not None else {})}

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
        return {m: settings_for(m, v) for m, v in value.items() if _known(METHODS, [m])}

    @model_validator(mode="after")
    def _every_method_resolved(self) -> ExperimentConfig:
        clash = sorted(set(self.variants) & set(METHODS.names()))
        if clash:
            raise ValueError(f"variants: {', '.join(clash)} is a method's own name; give the variant another")
        dupes = sorted({m for m in self.methods if self.methods.count(m) > 1})
        if dupes:
            raise ValueError(f"methods: {', '.join(dupes)} listed more than once")
        if not self.methods:
            raise ValueError("methods: none listed; name at least one (`lorasoup compose --list-methods`)")
        _known(METHODS, [m for m in self.methods if m not in self.variants])
        used = {self.method_of(m) for m in self.methods}
        extra = sorted(set(self.compose) - used)
        if extra:
            raise ValueError(f"compose has settings for method(s) not in `methods`: {', '.join(extra)}")
        unused = sorted(set(self.variants) - set(self.methods))
        if unused:
            raise ValueError(f"variants not listed in `methods`: {', '.join(unused)}")
        self.compose = {m: settings_for(m, self.compose.get(m)) for m in sorted(used)}
        # every adapter the run registers: pool tasks, and <target>-<method> compositions (compose/export.py)
        per_target = [m for m in self.methods if self.spec_of(m).yields == Yields.ADAPTER
                      and Consumes.SHOTS in self.spec_of(m).consumes]
        if clash := slug_clash([*self.pool.task_names, *(f"{t.name}-{m}" for t in self.targets for m in per_target)]):
            raise ValueError(f"adapter names: {clash}")
        if "compare_to" in self.model_fields_set:
            unknown = sorted(set(self.compare_to) - set(self.methods))
            if unknown:
                raise ValueError(f"compare_to: {', '.join(unknown)} is not evaluated; known: {', '.join(self.methods)}")
        else:  # the default, zero-shot, only when it is evaluated
            self.compare_to = [m for m in self.compare_to if m in self.methods]
        if any("oracle" in self.selection_of(m).filters for m in self.selecting()):
            plain = [t.name for t in self.targets if parse_spec(t.task).source == "skills"
                     and t.name not in COMPOSED_TASKS]
            if plain:
                raise ValueError(f"the oracle filter needs composed targets; {', '.join(plain)} is built from no "
                                 f"pool task (composed skills: {', '.join(sorted(COMPOSED_TASKS))})")
        return self

    @property
    def run_seeds(self) -> list[int]:
        return list(self.seeds) or [self.seed]

    def method_of(self, name: str) -> str:
        """The registered method behind a name in `methods` (itself, or a variant's)."""
        return self.variants[name].method if name in self.variants else name

    def spec_of(self, name: str) -> MethodSpec:
        """The registry entry behind a name in `methods`: what it consumes and yields."""
        return METHODS.get(self.method_of(name))

    def selecting(self) -> list[str]:
        """The names in `methods` that compose selected candidates (so run a candidate selection)."""
        return [m for m in self.methods if Consumes.CANDIDATES in self.spec_of(m).consumes]

    def selection_of(self, name: str) -> SelectionConfig:
        """The candidate selection of a name in `methods`: a variant's own, else the experiment's with the
        method's own filters when it has some (`recommended`), else the experiment's."""
        variant = self.variants.get(name)
        if variant is not None and variant.selection is not None:
            return variant.selection
        own = self.spec_of(name).filters
        return self.selection.model_copy(update={"filters": list(own)}) if own else self.selection

    def settings(self, name: str) -> MethodSettings:
        """The settings of a name in `methods`: a variant's own, else the method's section of `compose`."""
        if name in self.variants:
            return self.variants[name].settings
        return self.compose.get(name) or settings_for(name)

    def candidate_tasks(self) -> list[str]:
        """The experiment's candidates by task: its trained pool's tasks, then the adapters registered from each
        published pool of `hub_pool`."""
        from lorasoup_core.pool.hub import pool_task_names

        return pool_task_names(self.pool.task_names, self.hub_pool, self.model.spec, self.storage,
                               self.tracking.tracking_uri)


def _is_composer(name: str) -> bool:
    from lorasoup_core.compose import COMPOSERS

    return name in COMPOSERS


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """An experiment YAML, with optional `KEY=VALUE` overrides (e.g. `seeds=[0]`, `eval.limit=20`)."""
    return load_config(path, ExperimentConfig, overrides)


def load_pool_file(path: str | Path) -> PoolFile:
    """A pool YAML, or an experiment YAML (validated whole) whose pool is trained under its experiment."""
    if "targets" not in read_yaml(path):
        return load_config(path, PoolFile)
    return load_config(path, ExperimentConfig).pool_file()
