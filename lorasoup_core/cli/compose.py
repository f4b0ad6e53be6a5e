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
    target: str = typer.Option(..., help="Target task, e.g. skills:count_then_add or bbh:navigate (with an "
                               "experiment --config: one of its targets, by spec or name)."),
    method: str = typer.Option("lorahub", help="Composer: lorahub, cat, cat_fewshot, uniform, linear, ties, "
                               "dare_linear, dare_ties, svd, ties_svd, dare_linear_svd, dare_ties_svd, centroid "
                               "(with an experiment --config: any name in its `methods`, variants included)."),
    sets: list[str] = typer.Option([], "--set", help="Method setting KEY=VALUE (repeatable); see --list-settings."),
    list_settings: bool = typer.Option(False, "--list-settings", help="Print every method's settings and exit."),
    filter_: str = typer.Option(None, "--filter", help="random, loss, embedding or oracle, comma-chained "
                                "(default: embedding, or the experiment's)."),
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

    if not list_settings:
        preflight_config(config, experiment_only=True)  # before the heavy imports: its store and tracking server
    from lorasoup_core.compose import COMPOSERS, CompositionError, settings_for, settings_help
    from lorasoup_core.plugins import UnknownPluginError
    from lorasoup_core.selection import FILTERS

    if list_settings:
        typer.echo(settings_help())
        return
    plan = _plan(config, target, method, filter_, k, shots, model, seed, device, dtype)
    for registry, names, hint in ((COMPOSERS, [plan.composer], "--method"), (FILTERS, plan.filters, "--filter")):
        try:
            for name in names:
                registry.get(name)  # an unknown name fails before any model is loaded
        except UnknownPluginError as err:
            raise typer.BadParameter(str(err), param_hint=hint) from None
    try:
        settings = settings_for(plan.composer, {**plan.settings, **_parse_sets(sets)})
    except CompositionError as err:
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
        return _Plan(experiment=None, config=config, target=target, composer=method, settings={},
                     filters=(filter_ or "embedding").split(","), k=20 if k is None else k, shots=shots or 5,
                     model=model_config(model, device, dtype), seed=seed or 0, exclude_target=False)
    chosen = [t for t in exp.targets if target in (t.task if isinstance(t.task, str) else None, t.name)]
    if not chosen:
        raise typer.BadParameter(f"{target!r} is not a target of {config}; its targets: "
                                 f"{', '.join(t.name for t in exp.targets)}", param_hint="--target")
    if method not in exp.methods:
        raise typer.BadParameter(f"{method!r} is not in the methods of {config}: {', '.join(exp.methods)}",
                                 param_hint="--method")
    selection = exp.selection_of(method)
    return _Plan(experiment=exp, config=config, target=chosen[0].task, composer=exp.composer_of(method),
                 settings=exp.settings(method).model_dump(), filters=filter_.split(",") if filter_ else selection.filters,
                 k=selection.k if k is None else k, shots=shots or chosen[0].shots,
                 model=model_config(model, device, dtype, exp.model), seed=exp.seed if seed is None else seed,
                 exclude_target=selection.exclude_target)


def _compose(plan: _Plan, settings: object, label: str, export_rank: int | None, base_ref: str | None) -> None:
    from lorasoup_core.compose import CompositionError
    from lorasoup_core.compose.target import compose_for_target
    from lorasoup_core.data import load_task
    from lorasoup_core.models.cache import shared_model
    from lorasoup_core.pool import pool_candidates, register_adapter
    from lorasoup_core.pool.hub import pool_task_names
    from lorasoup_core.registry import open_registry
    from lorasoup_core.selection import FilterSpec, select_candidates
    from lorasoup_core.tracking import RunContext

    exp = plan.experiment
    reg = open_registry(exp.storage, exp.tracking.tracking_uri) if exp else open_registry()
    task = load_task(plan.target)
    fit = task.draw_shots(plan.shots, plan.seed)
    base = shared_model(plan.model)
    candidates = pool_candidates(reg, plan.model.spec, base.fingerprint, pool_task_names(exp) if exp else None)
    if not candidates:
        raise typer.BadParameter(f"no registered adapters on {plan.model.spec}; run `lorasoup pool train` first")
    chain = [FilterSpec(name=f, k=plan.k, seed=plan.seed) for f in plan.filters]
    exclude = {task.name} if plan.exclude_target else set()
    sel = select_candidates(base, candidates, task, fit, chain, plan.k, exclude)
    for line in sel.log:
        typer.echo(f"selection: {line}")
    train_data = {}
    if plan.config:
        from lorasoup_core.pool import load_pool_file, training_data

        pool = exp.pool if exp else load_pool_file(plan.config).pool
        train_data = training_data(pool, [c.name for c in sel.candidates])
    run = RunContext(exp.experiment_name if exp else f"compose-{task.name}", exp.tracking.tracking_uri if exp else None,
                     store_uri=reg.store.uri)
    try:
        composed = compose_for_target(base, sel.candidates, task, fit, plan.composer, settings, run, seed=plan.seed,
                                      train_data=train_data, export_rank=export_rank, base_ref=base_ref,
                                      **({"label": label} if exp else {}))
    except CompositionError as err:
        raise typer.BadParameter(str(err), param_hint="--method") from None
    version = register_adapter(reg, composed.adapter_dir, composed.run_id)
    typer.echo("weights: " + ", ".join(f"{n}={w:.3f}" for n, w in composed.weights.items()))
    typer.echo(f"registered {version.ref} at {version.store_uri}")
