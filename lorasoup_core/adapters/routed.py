"""A routed adapter: several LoRAs and the Arrow router that mixes them per token (PEFT's `create_arrow_model`).

Arrow (Ostapenko et al. 2024) routes each token, in each adapted layer, to the top-k LoRAs whose prototype
(the top right singular vector of B·A) its input aligns with; GenKnowSub (ACL 2025) first
subtracts the mean of one or more general-knowledge LoRAs from every expert. The mix depends on each token's
own input, so it cannot be folded into the base weights: a routed adapter is kept as a directory of plain
PEFT directories (the experts under `experts/<i>`, the general adapters under `general/<i>`), the router's
settings in `arrow_router.json`, and the lorasoup card. `arrow_model` builds PEFT's own Arrow model from it;
every forward then runs each adapted layer through all the experts (the cost the report's `eval s` shows).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from pydantic import Field

from lorasoup_core.config import StrictModel

ROUTER_FILE = "arrow_router.json"
_PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


class RouterFile(StrictModel):
    """What `arrow_router.json` holds: the router's settings and where its adapters are (relative paths)."""

    top_k: int = Field(ge=1, description="Experts mixed per token (at most the number of experts).")
    router_temperature: float = Field(gt=0, description="Softmax temperature over the top-k similarities.")
    rng_seed: int = Field(description="Seed of the prototypes' power iteration (PEFT's ArrowConfig.rng_seed).")
    experts: list[str] = Field(min_length=1, description="The task adapters' directories, in order.")
    names: list[str] = Field(description="The experts' adapter names (for messages and the lineage).")
    general: list[str] = Field(default_factory=list, description="GenKnowSub's general adapters (empty: plain "
                               "Arrow).")


def _copy_peft(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    for name in _PEFT_FILES:  # the adapter only: no examples, no card of its own
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)


def write_routed(out: Path, experts: list[tuple[str, Path]], general: list[Path], *, top_k: int,
                 router_temperature: float, rng_seed: int) -> RouterFile:
    """Copy the experts (name, PEFT directory) and general adapters into `out` and write the router file
    (the caller writes the card last: the card marks a complete directory)."""
    spec = RouterFile(top_k=min(top_k, len(experts)), router_temperature=router_temperature, rng_seed=rng_seed,
                      experts=[f"experts/{i}" for i in range(len(experts))], names=[n for n, _ in experts],
                      general=[f"general/{i}" for i in range(len(general))])
    for rel, (_, src) in zip(spec.experts, experts, strict=True):
        _copy_peft(Path(src), out / rel)
    for rel, src in zip(spec.general, general, strict=True):
        _copy_peft(Path(src), out / rel)
    (out / ROUTER_FILE).write_text(spec.model_dump_json(indent=1), encoding="utf-8")
    return spec


def read_router(path: str | Path) -> RouterFile:
    file = Path(path) / ROUTER_FILE
    try:
        return RouterFile.model_validate_json(file.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{file}: not a valid router file: {err}") from None


def arrow_model(model: Any, path: str | Path) -> Any:
    """PEFT's Arrow model over the routed adapter at `path`, on `model` (the base's layers are wrapped in
    place: undo with `model.unload()`). An incompatible expert (rank, shapes, modules) is named."""
    from peft import ArrowConfig, create_arrow_model

    spec, root = read_router(path), Path(path)
    config = ArrowConfig(top_k=spec.top_k, router_temperature=spec.router_temperature, rng_seed=spec.rng_seed,
                         use_gks=bool(spec.general))
    try:
        return create_arrow_model(model, [str(root / e) for e in spec.experts], config,
                                  general_adapter_paths=[str(root / g) for g in spec.general] or None)
    except ValueError as err:  # PEFT names its internal adapter names (task_3, gks_0): say which adapters
        text = re.sub(r"task_(\d+)", lambda m: repr(spec.names[int(m.group(1))]), str(err))
        raise ValueError(f"routed adapter {root}: {text}") from None
