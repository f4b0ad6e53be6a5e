"""`recommended`: lorasoup's best measured pipeline for a new task with a few examples, beyond the papers.

LoraHub's search (the paper's procedure and settings, `lorahub`) over the candidates the embedding filter
ranks closest to the target's shots, in place of LoraHub's random draw; when some candidate has no stored
examples (an imported adapter), over the `arrow` filter's, which ranks every adapter from its weights
(`embedding-or-arrow`). Chosen from the skill study, where the embedding filter is the largest single gain
measured over the paper preset at equal k and the arrow filter recovers 84% of it (README, Findings);
`lorasoup compose` runs it when no --method is given. `lorahub` stays the paper's procedure.
"""

from __future__ import annotations

from lorasoup_core.compose.lorahub import LorahubSettings
from lorasoup_core.methods.base import Consumes, MethodCall, MethodEnv, MethodOutput, Yields, method
from lorasoup_core.methods.composers import compose_method
from lorasoup_core.models import LoadedModel

RECOMMENDED = "recommended"


@method(RECOMMENDED, LorahubSettings, consumes={Consumes.CANDIDATES, Consumes.SHOTS}, yields=Yields.ADAPTER,
        filters=("embedding-or-arrow",))
def recommended(base: LoadedModel, call: MethodCall, env: MethodEnv) -> MethodOutput:
    """lorasoup's pick: LoraHub's search over the embedding filter's candidates, or the arrow filter's where
    adapters lack stored examples (the default of `compose`)."""
    return compose_method("lorahub", base, call, env)
