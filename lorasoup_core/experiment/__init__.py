"""Experiment configs, typed results and the report of an experiment run."""

from lorasoup_core.experiment import report
from lorasoup_core.experiment.config import (
    EvalConfig,
    ExperimentConfig,
    SelectionConfig,
    TargetConfig,
    load_experiment,
    load_pool_file,
)
from lorasoup_core.experiment.results import ExperimentResult, TargetResult

__all__ = ["EvalConfig", "ExperimentConfig", "ExperimentResult", "SelectionConfig", "TargetConfig", "TargetResult",
           "load_experiment", "load_pool_file", "report"]
