"""`lorasoup compose`: compose the registered pool for a target task and register the result."""

from __future__ import annotations

import typer


def _parse_sets(items: list[str]) -> dict[str, object]:
    import yaml

    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--set")
        out[key.strip()] = yaml.safe_load(value)  # numbers, booleans and lists as YAML reads them
    return out


def compose_cmd(
    target: str = typer.Option(..., help="Target task, e.g. skills:count_then_add or bbh:navigate."),
    method: str = typer.Option("lorahub", help="Composer: lorahub, cat, cat_fewshot, uniform, linear, ties, "
                               "dare_linear, dare_ties, svd, ties_svd, dare_linear_svd, dare_ties_svd, centroid."),
    sets: list[str] = typer.Option([], "--set", help="Method setting KEY=VALUE (repeatable); see --list-settings."),
    list_settings: bool = typer.Option(False, "--list-settings", help="Print every method's settings and exit."),
    filter_: str = typer.Option("embedding", "--filter", help="random, loss or embedding (comma-chained)."),
    k: int = typer.Option(20, "-k", help="Candidates kept."),
    shots: int = typer.Option(5, help="Few-shot examples to fit on."),
    model: str = typer.Option("smollm2-135m", help="Base model spec (the pool's)."),
    seed: int = typer.Option(0, help="Seed for shots, the random filter, the search and CAT's init."),
    config: str = typer.Option(None, "--config", help="Pool or experiment YAML whose pool tasks are the candidates' "
                               "training data (needed by cat, which trains on their mix)."),
) -> None:
    """Filter the pool, compose, export a plain PEFT adapter, publish and register it with its lineage.

    Examples: --method lorahub --set budget=40 --set optimizer=CMA --set population=4;
    --method cat_fewshot --set steps=60; --method cat --config configs/demo.yaml; --method ties --set density=0.7."""
    from lorasoup_core.compose import COMPOSERS, CompositionError, settings_for, settings_help
    from lorasoup_core.compose.target import compose_for_target
    from lorasoup_core.config import ModelConfig
    from lorasoup_core.data import load_task
    from lorasoup_core.models.cache import shared_model
    from lorasoup_core.plugins import UnknownPluginError
    from lorasoup_core.pool import pool_candidates, register_adapter
    from lorasoup_core.registry import open_registry
    from lorasoup_core.selection import FILTERS, FilterSpec, select_candidates
    from lorasoup_core.tracking import RunContext

    if list_settings:
        typer.echo(settings_help())
        return
    for registry, names, hint in ((COMPOSERS, [method], "--method"), (FILTERS, filter_.split(","), "--filter")):
        try:
            for name in names:
                registry.get(name)  # an unknown name fails before any model is loaded
        except UnknownPluginError as err:
            raise typer.BadParameter(str(err), param_hint=hint) from None
    try:
        settings = settings_for(method, _parse_sets(sets))
    except CompositionError as err:
        raise typer.BadParameter(str(err), param_hint="--set") from None
    reg = open_registry()
    task = load_task(target)
    fit = task.draw_shots(shots, seed)
    base = shared_model(ModelConfig(spec=model))
    candidates = pool_candidates(reg, model, base.fingerprint)
    if not candidates:
        raise typer.BadParameter(f"no registered adapters on {model}; run `lorasoup pool train` first")
    chain = [FilterSpec(name=f, k=k, seed=seed) for f in filter_.split(",")]
    sel = select_candidates(base, candidates, task, fit, chain, k)
    for line in sel.log:
        typer.echo(f"selection: {line}")
    train_data = {}
    if config:
        from lorasoup_core.pool import load_pool_file, training_data

        train_data = training_data(load_pool_file(config).pool, [c.name for c in sel.candidates])
    try:
        composed = compose_for_target(base, sel.candidates, task, fit, method, settings,
                                      RunContext(f"compose-{task.name}"), seed=seed, train_data=train_data)
    except CompositionError as err:
        raise typer.BadParameter(str(err), param_hint="--method") from None
    version = register_adapter(reg, composed.adapter_dir, composed.run_id)
    typer.echo("weights: " + ", ".join(f"{n}={w:.3f}" for n, w in composed.weights.items()))
    typer.echo(f"registered {version.ref} at {version.store_uri}")
