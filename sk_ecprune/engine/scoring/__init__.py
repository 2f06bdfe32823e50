"""Scoring methods: the registry, and one module per family of methods.

Importing this package registers the built-in methods; see :data:`SCORERS`.
"""

from . import baselines, ec, ec_obs, nonlinear  # noqa: F401  (register the built-in methods)
from .registry import (
    PROCEDURES,
    SCORERS,
    Importance,
    LayerChange,
    get_scorer,
    make_generator,
    register_scorer,
    score_weights,
)

__all__ = ["PROCEDURES", "SCORERS", "Importance", "LayerChange", "get_scorer",
           "make_generator", "register_scorer", "score_weights"]
