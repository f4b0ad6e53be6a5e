"""`lorasoup models`: list and check base models."""

from __future__ import annotations

import time

import typer

from lorasoup_core.cli._options import DEVICE, DTYPE, model_config
from lorasoup_core.cli._output import JSON, emit_rows

app = typer.Typer(help="Base models: list the presets, load one and check it generates.", no_args_is_help=True)


@app.command("list")
def list_models(as_json: bool = JSON) -> None:
    """List the model presets and the other spec forms."""
    from lorasoup_core.models import PRESETS, known_specs

    rows = [(name, ((PRESETS.get(name).__doc__ or "").strip().splitlines() or [""])[0]) for name in PRESETS.names()]
    emit_rows(("preset", "what it is"), rows, as_json)
    if not as_json:
        typer.echo(f"\n{known_specs()}")


@app.command("check")
def check(
    spec: str = typer.Argument(..., help="Model spec: preset, .gguf path, HF directory or hub id."),
    prompt: str = typer.Option("The capital of France is", help="Text to continue greedily."),
    max_new_tokens: int = typer.Option(8, help="Tokens to generate."),
    device: str = DEVICE,
    dtype: str = DTYPE,
) -> None:
    """Load a model offline and print a greedy continuation."""
    import torch

    from lorasoup_core.models import ModelSpecError, load_model

    chosen = model_config(spec, device, dtype)
    spec, device, dtype = chosen.spec, chosen.device, chosen.dtype
    start = time.perf_counter()
    try:
        loaded = load_model(spec, device=device, dtype=dtype)
    except ModelSpecError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    load_s = time.perf_counter() - start
    tok = loaded.tokenizer
    batch = tok(prompt, return_tensors="pt").to(loaded.device)
    with torch.inference_mode():
        out = loaded.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tok.pad_token_id)
    if loaded.kind == "causal":
        out = out[:, batch["input_ids"].shape[1]:]
    text = tok.decode(out[0], skip_special_tokens=True)
    typer.echo(f"model: {spec} ({loaded.kind}, {loaded.n_params / 1e6:.1f}M params, {loaded.device}, "
               f"{str(loaded.dtype).removeprefix('torch.')}, loaded in {load_s:.1f}s)")
    typer.echo(f"fingerprint: {loaded.fingerprint[:16]}")
    typer.echo(f"{prompt}{text}" if loaded.kind == "causal" else f"{prompt} -> {text}")
