"""The prompting baselines: the base model as it is, zero-shot or with k demonstrations in its prompt
(ICL). Nothing is fitted or registered; the evaluation harness builds the prompts (`eval.k_shot` and
`eval.icl_demos` set the demonstrations, drawn from the target's train split, never from the test split)."""

from __future__ import annotations

from lorasoup_core.methods.base import MethodCall, MethodEnv, MethodOutput, Yields, method
from lorasoup_core.models import LoadedModel


@method("zero-shot", yields=Yields.PROMPT)
def zero_shot(base: LoadedModel, call: MethodCall, env: MethodEnv) -> MethodOutput:
    """The base model alone, prompted with the target's template."""
    return MethodOutput(mode="zero-shot")


@method("icl", yields=Yields.PROMPT)
def icl(base: LoadedModel, call: MethodCall, env: MethodEnv) -> MethodOutput:
    """In-context learning: eval.k_shot demonstrations from the target's train split before each query."""
    return MethodOutput(mode="icl")
