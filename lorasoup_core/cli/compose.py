"""`lorasoup compose`: compose the registered pool for a target task and register the result."""

from __future__ import annotations

from enum import StrEnum

import typer
import yaml

from lorasoup_core.cli._options import DEVICE, DTYPE, model_config


class BaseRef(StrEnum):
    path = "path"
    hub_id = "hub_id"


def _parse_sets(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--set")
        out[key.strip()] = yaml.safe_load(value)  # numbers, booleans and lists as YAML reads them
    return out


def compose_cmd(
    target: str = typer.Option(None, help="Target task, e.g. skills:count_then_add or bbh:navigate (with an "
                               "experiment --config: one of its targets, by spec or name)."),
    method: str = typer.Option("recommended", help="A method that yields an adapter: recommended (lorasoup's pick: "
                               "LoraHub's search over the embedding filter's candidates, the arrow filter's where "
                               "adapters lack stored examples), lorahub (the paper's), cat, cat_fewshot, uniform, "
                               "ties, dare_ties, centroid, lora-fewshot, ia3-fewshot, full-fewshot, arrow "
                               "(per-token routing, evaluated unmerged), ... (--list-methods; "
                               "with an experiment --config: any name in its `methods`, variants included)."),
    sets: list[str] = typer.Option([], "--set", help="Method setting KEY=VALUE (repeatable); see --list-methods."),
    list_methods: bool = typer.Option(False, "--list-methods", "--list-settings",
                                      help="Print every method (composers and baselines): what it consumes and "
                                      "yields, and its settings; then exit."),
    filter_: str = typer.Option(None, "--filter", help="random, loss, embedding, arrow, embedding-or-arrow or "
                                "oracle, comma-chained (default: the method's own, embedding-or-arrow for "
                                "recommended; else embedding, or the experiment's)."),
    k: int = typer.Option(None, "-k", min=1, help="Candidates kept (default 20, or the experiment's)."),
    shots: int = typer.Option(None, help="Few-shot examples to fit on (default 5, or the experiment's)."),
    model: str = typer.Option(None, help="Base model spec, the pool's (default smollm2-135m, or the experiment's)."),
    device: str = DEVICE,
    dtype: str = DTYPE,
    seed: int = typer.Option(None, help="Seed for shots, the random filter, the search and CAT's init "
                             "(default 0, or the experiment's)."),
    config: str = typer.Option(None, "--config", help="An experiment YAML: compose exactly as its run does for "
                               "one target (model, pool, shots, selection, method settings, store, registry). "
                               "A pool YAML: its tasks' data for methods that train on it (cat)."),
    export_rank: int = typer.Option(None, min=1, help="Export at most this LoRA rank (SVD of each module's "
                                    "update; the truncation error goes to the card), e.g. 16 for vLLM's default."),
    base_ref: BaseRef = typer.Option(None, help="What the exported adapter names as its base: the converted "
                                     "local directory (default) or the hub id."),
) -> None:
    """Filter the pool, compose, export a plain PEFT adapter, publish and register it with its lineage.

    Examples: --method lorahub --set budget=40 --set optimizer=CMA --set population=4;
    --method cat_fewshot --set steps=60; --method ties --set density=0.7;
    --config configs/study_skills.yaml --target skills:count_then_add --method lorahub-cma --seed 1."""
    from lorasoup_core.cli.pool import preflight_config

    if not list_methods:
        if not target:
            raise typer.BadParameter("a target task is needed (e.g. skills:count_then_add)", param_hint="--target")
        preflight_config(config, experiment_only=True)  # before the heavy imports: its store and tracking server
    from lorasoup_core.methods import METHODS, MethodError, Yields, methods_help, settings_for
    from lorasoup_core.plugins import UnknownPluginError
    from lorasoup_core.selection import FILTERS

    if list_methods:
        typer.echo(methods_help())
        return
    plan = _plan(config, target, method, filter_, k, shots, model, seed, device, dtype)
    for registry, names, hint in ((METHODS, [plan.method], "--method"), (FILTERS, plan.filters, "--filter")):
        try:
            for name in names:
                registry.get(name)  # an unknown name fails before any model is loaded
        except UnknownPluginError as err:
            raise typer.BadParameter(str(err), param_hint=hint) from None
    if METHODS.get(plan.method).yields != Yields.ADAPTER:
        raise typer.BadParameter(f"{method!r} yields no adapter (a way of prompting the base); score it with "
                                 "`lorasoup eval --mode` or in an experiment", param_hint="--method")
    try:
        settings = settings_for(plan.method, {**plan.settings, **_parse_sets(sets)})
    except MethodError as err:
        raise typer.BadParameter(str(err), param_hint="--set") from None
    _compose(plan, settings, method, export_rank, base_ref.value if base_ref else None)


class _Plan:
    """What to compose, from the flags or from an experiment config (flags given explicitly win)."""

    def __init__(self, **kw: object) -> None:
        self.__dict__.update(kw)


def _plan(config: str | None, target: str, method: str, filter_: str | None, k: int | None, shots: int | None,
          model: str | None, seed: int | None, device: str | None = None, dtype: str | None = None) -> _Plan:
    from lorasoup_core.config import ConfigError
    from lorasoup_core.experiment import load_experiment

    exp = None
    if config:
        try:
            with open(config) as f:
                is_experiment = "targets" in (yaml.safe_load(f) or {})
        except (OSError, yaml.YAMLError) as err:
            raise typer.BadParameter(f"cannot read {config}: {err}", param_hint="--config") from None
        if is_experiment:
            try:
                exp = load_experiment(config)
            except ConfigError as err:
                raise typer.BadParameter(str(err), param_hint="--config") from None
    if exp is None:
        from lorasoup_core.methods import METHODS

        own = ",".join(METHODS.get(method).filters) if method in METHODS else ""
        return _Plan(experiment=None, config=config, target=target, index=None, method=method, settings={},
                     filters=(filter_ or own or "embedding").split(","), k=20 if k is None else k, shots=shots or 5,
                     model=model_config(model, device, dtype), seed=seed or 0, exclude_target=False)
    index = [i for i, t in enumerate(exp.targets) if target in (t.task if isinstance(t.task, str) else None, t.name)]
    if not index:
        raise typer.BadParameter(f"{target!r} is not a target of {config}; its targets: "
                                 f"{', '.join(t.name for t in exp.targets)}", param_hint="--target")
    if method not in exp.methods:
        raise typer.BadParameter(f"{method!r} is not in the methods of {config}: {', '.join(exp.methods)}",
                                 param_hint="--method")
    chosen, selection = exp.targets[index[0]], exp.selection_of(method)
    return _Plan(experiment=exp, config=config, target=chosen.task, index=index[0], method=exp.method_of(method),
                 settings=exp.settings(method).model_dump(), filters=filter_.split(",") if filter_ else selection.filters,
                 k=selection.k if k is None else k, shots=shots or chosen.shots,
                 model=model_config(model, device, dtype, exp.model), seed=exp.seed if seed is None else seed,
                 exclude_target=selection.exclude_target)


def _compose(plan: _Plan, settings: object, label: str, export_rank: int | None, base_ref: str | None) -> None:
    from lorasoup_core.compose import CompositionError
    from lorasoup_core.config import StorageConfig
    from lorasoup_core.data import parse_spec
    from lorasoup_core.experiment import SelectionConfig
    from lorasoup_core.experiment.cell import CellSpec, PlannedMethod, cell_of, run_cell
    from lorasoup_core.models.cache import resolve_base
    from lorasoup_core.settings import get_settings
    from lorasoup_core.tracking import RunContext

    exp = plan.experiment
    selection = SelectionConfig(filters=plan.filters, k=plan.k, exclude_target=plan.exclude_target)
    name = label if exp else plan.method
    if exp:  # the run's own cell for this one method, with the flags' changes
        cell = cell_of(exp, plan.index, plan.seed, [label])
        cell.methods = [PlannedMethod(name, plan.method, settings, selection)]
        # only this method's selection is made (the experiment's own is reported by runs, not here)
        cell.shots, cell.selection, cell.evaluation, storage = plan.shots, selection, None, exp.storage
    else:
        pool = None
        if plan.config:
            from lorasoup_core.experiment import load_pool_file

            pool = load_pool_file(plan.config).pool
        cell = CellSpec(plan.target, plan.shots, plan.seed, [PlannedMethod(name, plan.method, settings, selection)],
                        selection, experiment_seed=plan.seed, pool=pool)
        storage = StorageConfig()
    cell.export_rank, cell.base_ref = export_rank, base_ref
    run = RunContext(exp.experiment_name if exp else f"compose-{parse_spec(plan.target).name}",
                     exp.tracking.tracking_uri if exp else None, store_uri=storage.uri or get_settings().store_uri)
    try:
        result = run_cell(cell, resolve_base(plan.model), storage, run, say=typer.echo)
    except CompositionError as err:
        raise typer.BadParameter(str(err), param_hint="--method") from None
    done = result.methods[name]
    typer.echo("weights: " + ", ".join(f"{n}={w:.3f}" for n, w in done.output.weights.items()))
    typer.echo(f"registered {done.version.ref} at {done.version.store_uri}")
