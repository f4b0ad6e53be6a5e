"""Options shared by every command that loads the base model: one name and one meaning across commands."""

from __future__ import annotations

import typer

from lorasoup_core.config import ModelConfig

DEVICE = typer.Option(None, "--device", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N or mps "
                      "(default: auto, or the config's).")
DTYPE = typer.Option(None, "--dtype", help="auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16 or float16 "
                     "(default: auto, or the config's).")


def model_config(spec: str | None, device: str | None, dtype: str | None,
                 base: ModelConfig | None = None) -> ModelConfig:
    """`base` (a config's model, else the defaults) with the flags given on the command line over it; a
    malformed device or an unknown dtype is a usage error (exit 2) before anything loads."""
    from lorasoup_core.experiment.checks import check_device_and_dtype

    given = {k: v for k, v in {"spec": spec, "device": device, "dtype": dtype}.items() if v}
    model = (base or ModelConfig()).model_copy(update=given)
    try:
        return check_device_and_dtype(model)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--device/--dtype") from None
