"""Elimination-compensation pruning of PyTorch MLPs, as scikit-learn estimators.

Two subpackages with one door between them:

- :mod:`sk_ecprune.engine` (pure torch) scores, removes, rounds and compensates the weights
  of any ``torch.nn.Module`` built from ``nn.Linear`` layers;
- :mod:`sk_ecprune.estimators` (scikit-learn and skorch) train a network, call the engine
  through :func:`~sk_ecprune.engine.prune_model` alone, and fine-tune, inside one ``fit``.

The names below are loaded on first use, so that ``import sk_ecprune.engine`` does not pull
in scikit-learn, skorch or joblib.
"""

import importlib

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "PrunedMLPClassifier": "sk_ecprune.estimators",
    "PrunedMLPRegressor": "sk_ecprune.estimators",
    "PruningCurveDisplay": "sk_ecprune.display",
    "NEURON_SCORERS": "sk_ecprune.engine",
    "SCORERS": "sk_ecprune.engine",
    "compact": "sk_ecprune.engine",
    "to_sparse": "sk_ecprune.engine",
    "hidden_widths": "sk_ecprune.engine",
    "score_neurons": "sk_ecprune.engine",
    "Importance": "sk_ecprune.engine",
    "PruningReport": "sk_ecprune.engine",
    "layer_sparsity": "sk_ecprune.engine",
    "make_permanent": "sk_ecprune.engine",
    "prune_model": "sk_ecprune.engine",
    "quantize_model": "sk_ecprune.engine",
    "LayerQuantization": "sk_ecprune.engine",
    "QuantizationReport": "sk_ecprune.engine",
    "QUANTIZERS": "sk_ecprune.engine",
    "register_scorer": "sk_ecprune.engine",
    "score_weights": "sk_ecprune.engine",
    "register_method": "sk_ecprune.engine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'sk_ecprune' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
