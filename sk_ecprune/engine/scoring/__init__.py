"""Methods that remove weights: the weight view of the registry, one module per family.

Importing this package registers the built-in methods; see :data:`SCORERS`.
"""

from . import baselines, ec, ec_obs, nonlinear  # noqa: F401  (register the built-in methods)
from .registry import (
    SCORERS,
    Importance,
    LayerChange,
    ScoringFunction,
    WeightScorer,
    get_scorer,
    make_generator,
    register_scorer,
    score_weights,
)

__all__ = ["SCORERS", "Importance", "LayerChange", "ScoringFunction", "WeightScorer",
           "get_scorer", "make_generator", "register_scorer", "score_weights"]
