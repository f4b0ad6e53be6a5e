"""One MLflow run per evaluation cell (target, method, seed), nested under the experiment's run: what
MLflow's own table, chart and compare views can group and plot side by side.

Each run has the score, its interval and n as metrics (companion metrics such as `mc` beside them), the
cost per test example, task / method / seed as tags, the evaluated test split as an MLflow dataset
input, and links to what produced it: the registered adapter version, the run that composed it (on a
warm re-run, the earlier run whose cached result was reused) and the Prefect flow run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lorasoup_core import tracking
from lorasoup_core.data import Task

if TYPE_CHECKING:
    from lorasoup_core.bench import EvalReport
    from lorasoup_core.registry import AdapterVersion
    from lorasoup_core.tracking import RunContext

COST_METRICS = ("examples_per_s", "prompt_tokens_per_example", "gen_tokens_per_s")


def log_test_split(run_id: str, task: Task, n: int, tracking_uri: str | None = None) -> None:
    """The evaluated split as an MLflow dataset input (name, data fingerprint, size), context 'test'."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    dataset = Dataset(name=task.name, digest=task.fingerprint[:36], source_type="lorasoup",
                      source=json.dumps({"task": task.name, "source": task.source or "", "fingerprint": task.fingerprint}),
                      profile=json.dumps({"test_examples": len(task.test), "scored": n}))
    tracking.client(tracking_uri).log_inputs(run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", "test")])])


def log_evaluation(run: RunContext, target: Task, label: str, seed: int, report: EvalReport,
                   adapter: AdapterVersion | None = None, links: Mapping[str, str] | None = None) -> str:
    """The nested run of one evaluation; returns its id."""
    main = report.rows[0]
    tags = {"lorasoup.step": "evaluate", "lorasoup.task": target.name, "lorasoup.method": label,
            "lorasoup.seed": str(seed), "lorasoup.data_fingerprint": target.fingerprint, **(links or {})}
    if adapter is not None:
        tags |= {"lorasoup.adapter": adapter.ref, "lorasoup.adapter_uri": adapter.store_uri}
        if adapter.run_id:
            tags["lorasoup.adapter_run"] = adapter.run_id
    name = f"eval {target.name} · {label} · seed {seed}"
    with tracking.run(run.experiment, name, parent_run_id=run.parent_run_id, tags=tags,
                      tracking_uri=run.tracking_uri, store_uri=run.store_uri) as run_id:
        metrics = {"score": main.score, "ci_low": main.ci_low, "ci_high": main.ci_high, "n": float(main.n)}
        for row, metric in list(zip(report.rows, report.metrics[target.name], strict=True))[1:]:
            # companions: mc -> mc, mc_ci_low, mc_ci_high
            metrics |= {metric: row.score, f"{metric}_ci_low": row.ci_low, f"{metric}_ci_high": row.ci_high}
        metrics |= {k: report.throughput[k] for k in COST_METRICS if k in report.throughput}
        tracking.log_metrics(run_id, metrics, tracking_uri=run.tracking_uri)
        tracking.client(run.tracking_uri).set_tag(
            run_id, "mlflow.note.content",
            f"{label} on {target.name} (seed {seed}): {main.score:.3f} [{main.ci_low:.3f}, {main.ci_high:.3f}] "
            f"over {main.n} test examples" + (f"; adapter {adapter.ref}" if adapter else ""))
        log_test_split(run_id, target, main.n, run.tracking_uri)
    return run_id
