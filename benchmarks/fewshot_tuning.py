"""What the few-shot tuning baselines cost: choosing lr and steps on held-out shots, then the final fit, per kind.

    .venv/bin/python benchmarks/fewshot_tuning.py --model smollm2-135m --target skills:sort_then_first --json
    .venv/bin/python benchmarks/fewshot_tuning.py --model smollm2-135m --target skills:sort_then_first --folds 0 --json

For each of lora-fewshot, ia3-fewshot and full-fewshot (their default grids unless --lrs/--steps): seconds to
choose (the cross-validation runs), seconds of the final fit on all shots, the choice, its held-out loss and
the untrained base's on the same folds, trained parameters, and optimizer steps in all. One JSON object.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _report import emit  # benchmarks/ is on sys.path when a script runs

from lorasoup_core.adapters.train import train_adapter
from lorasoup_core.data import load_task
from lorasoup_core.methods import MethodCall, settings_for
from lorasoup_core.methods.fewshot import choose, folds_of, shots_task, training_config
from lorasoup_core.models import load_model

KINDS = {"lora-fewshot": "lora", "ia3-fewshot": "ia3", "full-fewshot": "full"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama", help="model spec (tiny-llama, smollm2-135m ...)")
    parser.add_argument("--target", default="skills:sort_then_first", help="target task spec")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=None, help="cross-validation folds (default: the methods')")
    parser.add_argument("--methods", default=",".join(KINDS), help="comma-separated: " + ", ".join(KINDS))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    base = load_model(args.model)
    target = load_task(args.target)
    shots = target.draw_shots(args.shots, args.seed)
    out = {"model": args.model, "target": target.name, "shots": len(shots), "seed": args.seed}
    for name in args.methods.split(","):
        settings = settings_for(name, {} if args.folds is None else {"folds": args.folds})
        call = MethodCall(name, name, settings, args.seed, target=target, shots=shots)
        start = time.perf_counter()
        choice = choose(base, call, KINDS[name])
        chose = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            card = train_adapter(base, shots_task(call), training_config(call, choice.lr, choice.steps, len(shots)),
                                 tmp, kind=KINDS[name], progress=False, embed_examples=0)
            fit = time.perf_counter() - start
        n_folds = len(folds_of(shots, settings.folds))
        out[name] = {"choose_seconds": round(chose, 2), "fit_seconds": round(fit, 2), "lr": choice.lr,
                     "steps": choice.steps, "held_out_loss": round(choice.losses[(choice.lr, choice.steps)], 4),
                     "untrained_held_out_loss": round(choice.untrained, 4), "folds": n_folds,
                     "trainable_params": int(card.metrics["trainable_params"]),
                     "optimizer_steps": n_folds * len(settings.lrs) * max(settings.steps) + choice.steps}
    emit(out, args.json)


if __name__ == "__main__":
    main()
