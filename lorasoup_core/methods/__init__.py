"""Everything a study compares, behind one registry: the composers and the baselines (zero-shot, ICL,
DATA-MIX, the few-shot tuning baselines, Arrow routing), each declaring what it consumes and yields and its settings class (see `methods.base`)."""

from lorasoup_core.methods import arrow, composers, datamix, fewshot, prompting, recommended  # noqa: F401  (register the methods)
from lorasoup_core.methods.base import (
    METHODS,
    Consumes,
    MethodCall,
    MethodEnv,
    MethodError,
    MethodOutput,
    MethodSettings,
    MethodSpec,
    Yields,
    method,
    methods_help,
    settings_for,
)

__all__ = ["METHODS", "Consumes", "MethodCall", "MethodEnv", "MethodError", "MethodOutput", "MethodSettings",
           "MethodSpec", "Yields", "method", "methods_help", "settings_for"]
