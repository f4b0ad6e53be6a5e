"""Prefect tasks for composition and evaluation: thin wrappers over lorasoup_core.experiment.compose_steps.

Composition and evaluation results are small dicts, persisted and cached under keys built from
fingerprints (base weights, target data, shots, candidate versions, method config), so a re-run of
a crashed or finished experiment does not redo them.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.compose import ComposeConfig
from lorasoup_core.config import ModelConfig
from lorasoup_core.data import Example, Task
from lorasoup_core.experiment import compose_steps, pool_steps
from lorasoup_core.experiment.config import EvalSection, SelectionSection
from lorasoup_core.experiment.steps import fingerprint, pick_shots, shared_base
from tasks._policies import IO_RETRIES


def _key(prefix: str, *fields: str):
    def key_fn(context: Any, params: dict[str, Any]) -> str:
        base = shared_base(params["model"])
        values = []
        for f in fields:
            v = params[f]
            values.append(v.fingerprint if isinstance(v, Task) else v)
        return f"lorasoup-{prefix}-{fingerprint(base.fingerprint, *values)}"

    return key_fn


@task(task_run_name="shots-{target.name}", cache_policy=NONE)
def draw_shots(target: Task, n: int, seed: int) -> list[Example]:
    return pick_shots(target, n, seed)


@task(task_run_name="pool-candidates", cache_policy=NONE, **IO_RETRIES)
def pool_candidates(storage_uri: str | None, tracking_uri: str | None, model: ModelConfig,
                    task_names: list[str]) -> list[dict[str, Any]]:
    """Registered pool adapters on this base model, downloaded to the local cache."""
    reg = pool_steps.registry(storage_uri, tracking_uri)
    return compose_steps.download(reg, compose_steps.pool_versions(reg, model, task_names))


@task(task_run_name="select-{target.name}", cache_policy=NONE)
def select_candidates(model: ModelConfig, candidates: list[dict[str, Any]], target: Task, shots: list[Example],
                      selection: SelectionSection, seed: int) -> dict[str, Any]:
    return compose_steps.select(model, candidates, target, shots, selection, seed)


@task(task_run_name="compose-{target.name}-{method}", persist_result=True,
      cache_key_fn=_key("compose", "candidates", "target", "shots", "method", "config"))
def compose_adapter(model: ModelConfig, candidates: list[dict[str, Any]], target: Task, shots: list[Example],
                    method: str, config: ComposeConfig, experiment: str, parent_run_id: str | None,
                    tracking_uri: str | None) -> dict[str, Any]:
    return compose_steps.compose_target(model, candidates, target, shots, method, config, experiment=experiment,
                                        parent_run_id=parent_run_id, tracking_uri=tracking_uri)


@task(task_run_name="register-composed-{composed[method]}", cache_policy=NONE, **IO_RETRIES)
def register_composed(storage_uri: str | None, tracking_uri: str | None, composed: dict[str, Any]) -> dict[str, Any]:
    """Publish the composed adapter and register it with its lineage (candidates, method, weights)."""
    reg = pool_steps.registry(storage_uri, tracking_uri)
    return pool_steps.version_dict(reg.register(AdapterCard.read(composed["dir"]), composed["dir"],
                                                run_id=composed.get("run_id")))


@task(task_run_name="evaluate-{target.name}-{label}", persist_result=True,
      cache_key_fn=_key("eval", "target", "mode", "adapter_digest", "shots", "eval_cfg", "label", "seed"))
def evaluate(model: ModelConfig, target: Task, mode: str, adapter_dir: str | None, adapter_digest: str | None,
             shots: list[Example], eval_cfg: EvalSection, label: str, seed: int) -> dict[str, Any]:
    """Score one method or baseline (`adapter_digest` names the adapter's content for the cache key)."""
    return compose_steps.evaluate(model, target, mode, adapter_dir, shots, eval_cfg, label, seed)
