"""Experiment configs and the library steps the Prefect pipeline wraps."""

from lorasoup_core.experiment.config import ExperimentConfig, load_experiment

__all__ = ["ExperimentConfig", "load_experiment"]
