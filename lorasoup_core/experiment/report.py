"""The experiment's parent MLflow run, and its report: the results table, plots, and the same report
published to the artifact store."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lorasoup_core import tracking
from lorasoup_core.experiment.analysis import Analysis, analyse
from lorasoup_core.experiment.config import ExperimentConfig
from lorasoup_core.experiment.results import TargetResult
from lorasoup_core.fingerprint import sha256_json
from lorasoup_core.pool import PoolResult
from lorasoup_core.registry import use_storage
from lorasoup_core.reporting import result_figures
from lorasoup_core.storage import Artifact, open_store


def start_experiment_run(cfg: ExperimentConfig, config_path: str | None) -> str:
    """The parent run: params are the fully resolved config; tags name the pool and the config file."""
    tags = {
        "lorasoup.kind": "experiment",
        "lorasoup.config_fingerprint": sha256_json(cfg.model_dump(mode="json")),
        "lorasoup.pool_tasks": ",".join(cfg.pool.task_names),
        "lorasoup.base_model": cfg.model.spec,
    }
    if config_path:
        tags["lorasoup.config_path"] = str(Path(config_path).resolve())
    # named by config and start time (the experiment holds every run of the config); renamed when done
    name = f"{cfg.name} {time.strftime('%Y-%m-%d %H:%M')}"
    run_id = tracking.start_run(cfg.experiment_name, name, tags=tags, tracking_uri=cfg.tracking.tracking_uri,
                                store_uri=cfg.storage.uri, system_metrics=True)
    tracking.log_params(run_id, cfg.model_dump(mode="json"), cfg.tracking.tracking_uri)
    return run_id


def tag_data_fingerprints(cfg: ExperimentConfig, run_id: str, pool: PoolResult) -> None:
    tracking.set_tags(run_id, {f"data_fingerprint.{task}": v.data_fingerprint for task, v in pool.versions.items()},
                      cfg.tracking.tracking_uri)


def _fit(cfg: ExperimentConfig, res: TargetResult, method: str) -> str:
    """A fit's label in plots: target/method, with @seed when the config lists seeds."""
    return f"{res.target}/{method}" + (f"@{res.seed}" if cfg.seeds else "")


def _cell(res: TargetResult, seeds: list[int]) -> str:
    return res.target if len(seeds) == 1 else f"{res.target}@{res.seed}"


@dataclass
class PublishedReport:
    text: str  # the markdown report: scores, macro, costs, paired comparisons (and the best seed)
    artifact: Artifact  # the same report in the artifact store
    analysis: Analysis


def publish_report(cfg: ExperimentConfig, run_id: str, results: list[TargetResult], pool: PoolResult
                   ) -> PublishedReport:
    """Log the table, the analysis and plots to MLflow and publish the same report to the artifact store."""
    import matplotlib.pyplot as plt

    use_storage(cfg.storage)
    analysis = analyse(results, cfg.compare_to)
    weights = {_fit(cfg, res, m): v for res in results for m, v in res.weights.items()}
    traces = {_fit(cfg, res, m): v for res in results for m, v in res.traces.items()}
    tracking.log_results(run_id, analysis.rows, weights=weights, traces=traces, tracking_uri=cfg.tracking.tracking_uri)
    tracking.log_metrics(run_id, {f"macro/{r.method}": r.score for r in analysis.macro}
                         | {f"macro_ci_low/{r.method}": r.ci_low for r in analysis.macro}
                         | {f"macro_ci_high/{r.method}": r.ci_high for r in analysis.macro},
                         tracking_uri=cfg.tracking.tracking_uri)
    text = analysis.markdown()
    tracking.log_text(run_id, text, "results/report.md", cfg.tracking.tracking_uri)
    _describe(cfg, run_id, pool, analysis, text)
    seeds = cfg.run_seeds
    doc = {**analysis.to_dict(),
           "rows_per_seed": [{**r.to_dict(), "seed": res.seed} for res in results for r in res.rows],
           "scores": {_cell(res, seeds): res.scores for res in results},  # per example, to re-analyse offline
           "weights": weights, "traces": traces,
           "pool": {"trained": pool.trained, "skipped": pool.skipped},
           "throughput": {_cell(res, seeds): res.throughput for res in results},
           "selection": {_cell(res, seeds): res.selection for res in results},
           "adapters": {_cell(res, seeds): {m: asdict(v) for m, v in res.adapters.items()} for res in results}}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "results.md").write_text(text + "\n")
        (out / "results.json").write_text(json.dumps(doc, indent=2, default=str))
        for name, fig in result_figures(analysis.rows, weights, traces).items():
            fig.savefig(out / name, dpi=120, bbox_inches="tight")
            plt.close(fig)
        artifact = open_store(cfg.storage.uri).publish(out, f"reports/{cfg.name}/{run_id}",
                                                       metadata={"run_id": run_id, "experiment": cfg.experiment_name})
    return PublishedReport(text, artifact, analysis)


def _describe(cfg: ExperimentConfig, run_id: str, pool: PoolResult, analysis: Analysis, text: str) -> None:
    """A name that tells a cold run from a warm one (adapters trained, or all reused) and the report as the
    run's description (MLflow renders it as markdown on the run page)."""
    name = tracking.client(cfg.tracking.tracking_uri).get_run(run_id).info.run_name or cfg.name
    best = max(analysis.macro, key=lambda r: r.score, default=None)
    parts = [name, f"trained {len(pool.trained)} of {len(pool.versions)}" if pool.trained else "pool reused"]
    if best is not None:
        parts.append(f"best {best.method} {100 * best.score:.1f}")
    tracking.set_tags(run_id, {"mlflow.runName": " · ".join(parts), "mlflow.note.content": run_description(text)},
                      cfg.tracking.tracking_uri)


def run_description(text: str) -> str:
    """The report within MLflow's tag limit (8000 characters): whole tables first, whole rows of the one that
    no longer fits, then where the full report is. MLflow itself would cut it mid-row, with a warning."""
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    if len(text) <= MAX_TAG_VAL_LENGTH:
        return text
    more = "\n\n(Shortened to fit the run description: the full report is the artifact `results/report.md`.)"
    kept: list[str] = []
    size = len(more)
    for line in text.split("\n"):
        if size + len(line) + 1 > MAX_TAG_VAL_LENGTH:
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept).rstrip() + more


def finish_experiment_run(cfg: ExperimentConfig, run_id: str, failed: bool = False) -> None:
    tracking.end_run(run_id, "FAILED" if failed else "FINISHED", cfg.tracking.tracking_uri)
