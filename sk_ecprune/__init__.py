"""Elimination-compensation pruning of PyTorch MLPs, as scikit-learn estimators.

The package has two halves that do not know each other:

- the pruning engine (:mod:`sk_ecprune.importance`, :mod:`sk_ecprune.pruning`), which
  scores and removes the weights of any ``torch.nn.Module`` built from ``nn.Linear`` layers;
- the estimators (:mod:`sk_ecprune.estimators`), which train a skorch network, call the
  engine, and fine-tune, inside one scikit-learn ``fit``.
"""

from .display import PruningCurveDisplay
from .estimators import PrunedMLPClassifier, PrunedMLPRegressor
from .importance import SCORERS, register_scorer, score_weights
from .pruning import PruningReport, layer_sparsity, make_permanent, prune_model

__all__ = [
    "PrunedMLPClassifier",
    "PrunedMLPRegressor",
    "PruningCurveDisplay",
    "SCORERS",
    "PruningReport",
    "layer_sparsity",
    "make_permanent",
    "prune_model",
    "register_scorer",
    "score_weights",
]

__version__ = "0.1.0.dev0"
