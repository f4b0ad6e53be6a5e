"""Evaluation harness: a sandbox for model-generated code (``sandbox``), answer extraction
(``answers``) and metrics with bootstrap intervals (``metrics``). Import the submodules directly."""
