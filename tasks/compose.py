"""The target cell's steps (`lorasoup_core.experiment.steps`) as Prefect tasks: the library functions
themselves, with retries on I/O and caching where a step's result is worth keeping.

The method runs and the scores persist and are cached under keys computed from their typed inputs (base
weights, target data, shots, candidate adapters, the method's settings, the seed) and the lorasoup
version, so re-running a crashed or finished experiment does not redo them."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from lorasoup_core.experiment import steps
from lorasoup_core.experiment.steps import CellSteps
from tasks._policies import IO_RETRIES, typed_inputs_key

load_target = task(steps.load_target, task_run_name="load-target", cache_policy=NONE)
draw_shots = task(steps.draw_shots, task_run_name="shots-{target.name}", cache_policy=NONE)
pool_candidates = task(steps.pool_candidates, task_run_name="pool-candidates", cache_policy=NONE, **IO_RETRIES)
select_candidates = task(steps.select_candidates, task_run_name="select-{target.name}", cache_policy=NONE)
candidate_data = task(steps.candidate_data, task_run_name="candidate-data", cache_policy=NONE)
run_method = task(steps.run_method, task_run_name="run-{call.name}", persist_result=True,
                  cache_key_fn=typed_inputs_key)
register = task(steps.register, task_run_name="register", cache_policy=NONE, **IO_RETRIES)
evaluate = task(steps.evaluate, task_run_name="evaluate-{target.name}-{label}", persist_result=True,
                cache_key_fn=typed_inputs_key)
record_score = task(steps.record_score, task_run_name="record-score-{target}-{adapter.name}", cache_policy=NONE,
                    **IO_RETRIES)

PREFECT_STEPS = CellSteps(load_target, draw_shots, pool_candidates, select_candidates, candidate_data, run_method,
                          register, evaluate, record_score)
