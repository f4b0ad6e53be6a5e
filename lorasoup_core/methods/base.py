"""The method registry: everything a study compares, composers and baselines alike, behind one name.

Each entry declares what it consumes (the selected candidates, their training data, the target's shots,
the whole pool's data, or nothing), what it yields (an adapter that is registered and evaluated, or a way of
prompting the base such as zero-shot or k-shot ICL) and its settings class. The target cell
(`lorasoup_core.experiment.cell`) reads those declarations to plan what to select and load, so a new method
is one module:

    class ShotTuneSettings(MethodSettings):
        steps: int = Field(30, ge=1, description="Optimizer steps on the shots.")

    @method("shot-tune", ShotTuneSettings, consumes={Consumes.SHOTS}, yields=Yields.ADAPTER)
    def shot_tune(base: LoadedModel, call: MethodCall, env: MethodEnv) -> MethodOutput:
        out = env.work_dir(call)                      # a directory only this call writes
        ...train on call.shots, save a PEFT adapter with its lorasoup card into `out`...
        return MethodOutput(adapter_dir=out)

The composers of `lorasoup_core.compose` are entries too (see `methods.composers`), found by the same name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from lorasoup_core.adapters import TrainingConfig, slug
from lorasoup_core.compose.stack import Candidate
from lorasoup_core.config import MethodSettings, StorageConfig, validate_settings
from lorasoup_core.data import Example, Task
from lorasoup_core.fingerprint import cache_key
from lorasoup_core.models import LoadedModel
from lorasoup_core.plugins import UnknownPluginError
from lorasoup_core.pool.config import PoolConfig
from lorasoup_core.registry import AdapterVersion
from lorasoup_core.settings import get_settings
from lorasoup_core.tracking import RunContext


class Consumes(StrEnum):
    CANDIDATES = "candidates"  # the pool adapters the candidate selection kept
    CANDIDATE_DATA = "candidate-data"  # those candidates' own training data
    SHOTS = "shots"  # the target and its few-shot examples
    POOL_DATA = "pool-data"  # the whole pool's training data
    POOL_TRAINING = "pool-training"  # the pool's training settings (rank, alpha, modules), not its data


class Yields(StrEnum):
    ADAPTER = "adapter"  # an adapter: registered with its lineage, then evaluated through
    PROMPT = "prompt"  # a way of prompting the base (zero-shot, k-shot ICL): evaluated, nothing registered


class MethodError(ValueError):
    """A method that cannot run as configured; the message names the method."""


@dataclass
class MethodCall:
    """One method's inputs for one cell. Only what the method consumes is filled in, so a cached result's
    key (every field) holds exactly what the result depends on."""

    name: str  # its name in the study (a variant's, or the method's)
    method: str  # the registered method
    settings: MethodSettings
    seed: int  # the cell's seed: shots, searches, initialisations
    experiment_seed: int = 0  # the run's `seed`: what one run shares across its seeds (DATA-MIX's mixture)
    target: Task | None = None  # SHOTS
    shots: list[Example] = field(default_factory=list)  # SHOTS
    candidates: list[Candidate] = field(default_factory=list)  # CANDIDATES
    candidate_data: dict[str, Task] = field(default_factory=dict)  # CANDIDATE_DATA: candidate -> its data
    pool: PoolConfig | None = None  # POOL_DATA
    pool_training: TrainingConfig | None = None  # POOL_TRAINING
    export_rank: int | None = None  # adapters: cap the exported LoRA rank by SVD (serving stacks)
    base_ref: str | None = None  # adapters: what the exported adapter names as its base ('path' / 'hub_id')


@dataclass
class MethodEnv:
    """Where a method logs and registers (not part of any cache key)."""

    run: RunContext
    storage: StorageConfig

    def work_dir(self, call: MethodCall, key: str = "") -> Path:
        """A fresh directory under LORASOUP_HOME for what this call writes (named by the call's inputs)."""
        digest = cache_key(call, key)[:12]
        what = slug(call.target.name if call.target else "pool")[:40]
        path = get_settings().home / "work" / "methods" / f"{what}-{slug(call.name)[:30]}-{digest}"
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class MethodOutput:
    """What a method returns: an adapter directory to publish and register (with its lorasoup card), an
    adapter it registered itself, or a prompting mode of the evaluation harness."""

    mode: str = "adapter"  # the harness mode the result is evaluated in: 'adapter', 'zero-shot', 'icl'
    adapter_dir: Path | None = None
    run_id: str | None = None  # the MLflow run that made the adapter
    version: AdapterVersion | None = None  # already registered (DATA-MIX: the pool's registry is its cache)
    weights: dict[str, float] = field(default_factory=dict)  # candidate -> its weight, for composers
    trace: list[float] = field(default_factory=list)  # objective per evaluation / step
    seconds: float | None = None  # wall time of the fit; None: nothing was fitted for this cell
    few_shot_loss: float | None = None
    trainable_params: int | None = None  # what the fit trained (weights searched, coefficients, parameters)
    diagnostics: dict[str, Any] = field(default_factory=dict)


Run = Callable[[LoadedModel, MethodCall, MethodEnv], MethodOutput]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    run: Run
    settings: type[MethodSettings]
    consumes: frozenset[Consumes]
    yields: Yields
    help: str = ""
    filters: tuple[str, ...] = ()  # its own candidate filters (a pipeline's); () = the experiment's selection


class MethodRegistry:
    """Methods by name: the ones registered here, then those of each source (the composers), looked up
    when asked so a composer registered later is a method too. An unknown name fails and lists the known."""

    def __init__(self) -> None:
        self._items: dict[str, MethodSpec] = {}
        self._sources: list[tuple[Callable[[str], MethodSpec | None], Callable[[], Iterable[str]]]] = []

    def register(self, spec: MethodSpec) -> MethodSpec:
        if spec.name in self.names():
            raise ValueError(f"method {spec.name!r} is registered twice")
        self._items[spec.name] = spec
        return spec

    def add_source(self, lookup: Callable[[str], MethodSpec | None], names: Callable[[], Iterable[str]]) -> None:
        self._sources.append((lookup, names))

    def get(self, name: str) -> MethodSpec:
        if name in self._items:
            return self._items[name]
        for lookup, _ in self._sources:
            spec = lookup(name)
            if spec is not None:
                return spec
        raise UnknownPluginError(f"unknown method {name!r}; known: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return sorted({*self._items, *(n for _, names in self._sources for n in names())})

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


METHODS = MethodRegistry()


def method(name: str, settings: type[MethodSettings] = MethodSettings, *, consumes: Iterable[Consumes] = (),
           yields: Yields, help: str | None = None, filters: Iterable[str] = ()) -> Callable[[Run], Run]:
    """Register `fn(base, call, env) -> MethodOutput` as the method `name` with the settings class it reads;
    its help is the first line of its docstring unless given. `filters`: the candidate filters the method
    selects with in place of the experiment's (k stays the experiment's; a variant's own selection wins)."""

    def decorator(fn: Run) -> Run:
        text = help if help is not None else " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())
        METHODS.register(MethodSpec(name, fn, settings, frozenset(consumes), yields, text, tuple(filters)))
        return fn

    return decorator


def settings_for(name: str, values: MethodSettings | Mapping[str, Any] | None = None) -> MethodSettings:
    """The method's settings, validated by its own class: an unknown key or a bad value is one error that
    names the method and lists what it accepts."""
    try:
        return validate_settings(name, METHODS.get(name).settings, values)
    except ValueError as err:
        raise MethodError(str(err)) from None


def methods_help() -> str:
    """Every method: what it consumes and yields, its help, and its settings with their defaults."""
    lines = []
    for name in METHODS.names():
        spec = METHODS.get(name)
        consumes = ", ".join(sorted(spec.consumes)) or "nothing"
        if spec.filters:
            consumes += f" selected by {'+'.join(spec.filters)}"
        fields = spec.settings.model_fields
        settings = ", ".join(f"{k}={f.default!r}" for k, f in fields.items()) or "(none)"
        lines.append(f"{name}  [consumes: {consumes}; yields: {spec.yields}]  {spec.help}\n    settings: {settings}")
    return "\n".join(lines)
