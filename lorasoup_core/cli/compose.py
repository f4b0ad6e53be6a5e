"""`lorasoup compose`: compose the registered pool for a target task and register the result."""

from __future__ import annotations

import typer


def compose_cmd(
    target: str = typer.Option(..., help="Target task, e.g. skills:count_then_add or bbh:navigate."),
    method: str = typer.Option("lorahub", help="lorahub, cat, uniform, linear, ties, dare_linear, dare_ties, svd, "
                               "centroid."),
    filter_: str = typer.Option("embedding", "--filter", help="random, loss or embedding (comma-chained)."),
    k: int = typer.Option(20, "-k", help="Candidates kept."),
    shots: int = typer.Option(5, help="Few-shot examples to fit on."),
    model: str = typer.Option("smollm2-135m", help="Base model spec (the pool's)."),
    budget: int = typer.Option(40, help="lorahub: objective evaluations."),
    optimizer: str = typer.Option("NGOpt", help="lorahub: nevergrad optimizer (NGOpt, CMA, TwoPointsDE ...)."),
    formula: str = typer.Option("exact", help="lorahub: exact (sum w s B A) or lorahub ((sum w B)(sum w A))."),
    population: int = typer.Option(1, help="lorahub: weight vectors evaluated per batched forward."),
    cat_steps: int = typer.Option(30, help="cat: Adam steps on the coefficients."),
    seed: int = typer.Option(0, help="Seed for shots, the random filter and the search."),
) -> None:
    """Filter the pool, compose, export a plain PEFT adapter, publish and register it with its lineage."""
    from lorasoup_core.compose import COMPOSERS, ComposeConfig
    from lorasoup_core.config import ConfigError, ModelConfig
    from lorasoup_core.data import load_task
    from lorasoup_core.experiment import compose_steps, pool_steps
    from lorasoup_core.experiment.config import SelectionSection
    from lorasoup_core.experiment.steps import pick_shots, shared_base
    from lorasoup_core.plugins import UnknownPluginError
    from lorasoup_core.selection import FILTERS

    for registry, names, hint in ((COMPOSERS, [method], "--method"), (FILTERS, filter_.split(","), "--filter")):
        try:
            for name in names:
                registry.get(name)  # an unknown name fails before any model is loaded
        except UnknownPluginError as err:
            raise typer.BadParameter(str(err), param_hint=hint) from None
    try:
        config = ComposeConfig(budget=budget, seed=seed, optimizer=optimizer, formula=formula,
                               population=population, cat_steps=cat_steps)
    except (ConfigError, ValueError) as err:
        raise typer.BadParameter(str(err)) from None
    mcfg = ModelConfig(spec=model)
    reg = pool_steps.registry(None, None)
    task = load_task(target)
    fit = pick_shots(task, shots, seed)
    base = shared_base(mcfg)
    names = sorted({v.task for v in reg.list(base_model=model) if v.origin != "composed"
                    and v.base_fingerprint == base.fingerprint})
    if not names:
        raise typer.BadParameter(f"no registered adapters on {model}; run `lorasoup pool train` first")
    items = compose_steps.download(reg, compose_steps.pool_versions(reg, mcfg, names))
    sel = compose_steps.select(mcfg, items, task, fit, SelectionSection(filters=filter_.split(","), k=k), seed)
    for line in sel["log"]:
        typer.echo(f"selection: {line}")
    out = compose_steps.compose_target(mcfg, sel["candidates"], task, fit, method, config,
                                       experiment=f"compose-{task.name}", parent_run_id=None, tracking_uri=None)
    version = pool_steps.register(reg, out["dir"], out["run_id"])
    typer.echo("weights: " + ", ".join(f"{n}={w:.3f}" for n, w in out["weights"].items()))
    typer.echo(f"registered {version['name']}/{version['version']} at {version['store_uri']}")
