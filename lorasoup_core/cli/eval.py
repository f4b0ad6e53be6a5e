"""`lorasoup eval`: score a base model zero-shot, with in-context demonstrations, or through an adapter
on a benchmark; per-task scores with 95% bootstrap intervals, the macro average and throughput."""

from __future__ import annotations

import json
from enum import StrEnum

import typer

from lorasoup_core.cli._options import DEVICE, DTYPE, model_config


class Mode(StrEnum):
    zero_shot = "zero-shot"
    icl = "icl"
    adapter = "adapter"


class IclDemos(StrEnum):
    per_example = "per_example"
    shared = "shared"


def eval_cmd(
    benchmark: str = typer.Option(..., help="bbh, skills, gsm8k or gsm-hard."),
    tasks: str = typer.Option("all", help="'all' (BBH: the 27 tasks; skills: the composed targets) or NAME,NAME."),
    model: str = typer.Option("smollm2-135m", help="Base model spec (preset, local dir, .gguf or hub id)."),
    adapter: str = typer.Option(None, help="PEFT directory, artifact URI, or registry NAME@ALIAS / NAME/VERSION; "
                                           "implies --mode adapter."),
    mode: Mode = typer.Option(None, help="Default: adapter with --adapter, else zero-shot."),
    limit: int = typer.Option(None, min=1, help="Score at most this many examples per task."),
    k_shot: int = typer.Option(3, min=0, help="Demonstrations per prompt in icl mode."),
    cot: bool = typer.Option(False, help="BBH icl with the official 3-shot chain-of-thought prompts."),
    data: str = typer.Option(None, help="Data directory or hub id of the benchmark (default: LORASOUP_DATA_DIR)."),
    seed: int = typer.Option(0, help="Seed for splits, demonstrations and bootstrap."),
    batch_size: int = typer.Option(64, min=1, help="Most rows per generation batch."),
    max_batch_tokens: int = typer.Option(8192, min=1, help="Padded tokens (prompt + new) per batch."),
    icl_demos: IclDemos = typer.Option(None, help="icl: demonstrations per example or one shared draw "
                                                  "(default: the benchmark's; gsm-hard: shared)."),
    multiple_choice: bool = typer.Option(False, "--multiple-choice", help="Also score closed answer sets by "
                                         "option log-likelihood (rows '<method>/mc')."),
    prefix_cache: bool = typer.Option(True, help="Encode the prompts' shared prefix once."),
    merge_adapter: bool = typer.Option(True, help="Merge the adapter into the base weights while scoring."),
    device: str = DEVICE,
    dtype: str = DTYPE,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (rows, macro, throughput)."),
    predictions: str = typer.Option(None, help="Write per-example predictions to this JSON file."),
) -> None:
    """Per-task scores with 95% bootstrap intervals, the macro average, examples/s, generated tokens/s and
    prompt tokens per example."""
    from lorasoup_core.bench import BENCHMARKS, evaluate_benchmark
    from lorasoup_core.models import load_model
    from lorasoup_core.reporting import markdown_table

    mode = mode.value if mode else ("adapter" if adapter else "zero-shot")
    chosen = model_config(model, device, dtype)
    model, device, dtype = chosen.spec, chosen.device, chosen.dtype
    try:
        BENCHMARKS.get(benchmark)
    except KeyError as err:
        raise typer.BadParameter(str(err), param_hint="--benchmark") from None
    if adapter and mode != "adapter":
        raise typer.BadParameter(f"--adapter is used in mode 'adapter', not {mode!r}", param_hint="--mode")
    settings = {"multiple_choice": multiple_choice, "prefix_cache": prefix_cache, "merge_adapter": merge_adapter,
                "max_batch_tokens": max_batch_tokens, **({"icl_demos": icl_demos.value} if icl_demos else {})}
    try:
        base = load_model(model, device=device, dtype=dtype)
        report = evaluate_benchmark(base, benchmark, tasks, mode, adapter, limit, k_shot, seed=seed, batch_size=batch_size,
                                    cot=cot, path=data, settings=settings)
    except (LookupError, ValueError) as err:  # unknown task/mode, bad data, bad adapter, registry miss
        raise typer.BadParameter(str(err)) from None
    if predictions:
        with open(predictions, "w") as f:
            json.dump(report.predictions, f, indent=1)
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
        return
    typer.echo(markdown_table(report.rows))
    mean, low, high = report.macro
    typer.echo(f"\nmacro average {mean:.3f} [{low:.3f}, {high:.3f}]")
    tp = report.throughput
    typer.echo(f"{tp['examples_per_s']:.2f} examples/s, {tp['gen_tokens_per_s']:.1f} generated tokens/s, "
               f"{tp['prompt_tokens_per_example']:.1f} prompt tokens/example")
