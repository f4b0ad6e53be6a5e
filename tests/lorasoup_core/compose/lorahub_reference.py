"""LoraHub's procedure as its published code runs it (sail-sg/lorahub `lorahub/algorithm.py`), written here
from that spec as the independent reference for the `lorahub` preset (tests and benchmarks/lorahub_parity.py).

Per evaluation: the candidates' PEFT state dicts are summed with the weights, loaded into a PEFT model with
`set_peft_model_state_dict`, and scored by HF's own `model(**batch).loss` on the one batch of shots divided by
the number of examples, + 0.05 * mean |w|. The search is nevergrad's NGOpt over
`ng.p.Array(init=0, lower=-1.5, upper=1.5)` with the budget, minimised with `optimizer.minimize`; the result is
the recommendation.
"""

from __future__ import annotations

import time

import nevergrad as ng
import numpy as np
import torch


class ReferenceLoraHub:
    def __init__(self, base_model: torch.nn.Module, adapter_dirs: list, batch: dict[str, torch.Tensor],
                 n_examples: int) -> None:
        from peft import PeftModel
        from peft.utils import load_peft_weights

        self.model = PeftModel.from_pretrained(base_model, str(adapter_dirs[0])).eval()
        self.cache = [load_peft_weights(str(d)) for d in adapter_dirs]
        keys = self.cache[0].keys()
        for d, sd in zip(adapter_dirs, self.cache, strict=True):
            assert sd.keys() == keys and all(sd[k].shape == self.cache[0][k].shape for k in keys), d
        self.batch, self.n = batch, n_examples
        self.rebuild_s = self.forward_s = 0.0  # cumulative: state-dict rebuild + load, and the forward

    def objective(self, weights) -> float:
        from peft.utils import set_peft_model_state_dict

        start = time.perf_counter()
        weights = [float(w) for w in weights]
        state = {k: sum(w * sd[k] for w, sd in zip(weights, self.cache, strict=True)) for k in self.cache[0]}
        set_peft_model_state_dict(self.model, state)
        loaded = time.perf_counter()
        with torch.no_grad():
            loss = self.model(**self.batch).loss
        self.rebuild_s += loaded - start
        self.forward_s += time.perf_counter() - loaded
        return float(loss) / self.n + 0.05 * sum(abs(w) for w in weights) / len(weights)

    def search(self, budget: int = 40, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray], list[float]]:
        """(recommended weights, every evaluated weight vector in order, their objective values)."""
        n = len(self.cache)
        param = ng.p.Array(init=[0] * n, upper=[1.5] * n, lower=[-1.5] * n)
        param.random_state = np.random.RandomState(seed)
        optimizer = ng.optimizers.NGOpt(parametrization=param, budget=budget)
        evaluated, values = [], []

        def score(w):
            evaluated.append(np.array(w, dtype=np.float64))
            values.append(self.objective(w))
            return values[-1]

        recommendation = optimizer.minimize(score)
        return np.asarray(recommendation.value, dtype=np.float64), evaluated, values
