"""The scikit-learn estimators: train a skorch MLP, prune it with the engine, fine-tune it.

Where each part lives:

- :mod:`._mlp`: :class:`PrunedMLPRegressor`, :class:`PrunedMLPClassifier` (targets, predict);
- :mod:`._base`: their shared ``fit``, as stages (validate, build, dense, schedule, finalize);
- :mod:`._params`: parameter constraints and checks; :mod:`._docs`: shared docstrings;
- :mod:`._build`: the skorch net of an estimator's settings (the MLP is the engine's
  :class:`~sk_ecprune.engine.MLP`);
- :mod:`._net`: the skorch nets (interrupts, a plain train step); :mod:`._data`: the tensor
  data path; :mod:`._skorch_internals`: shortcuts through skorch's internals (one switch);
- :mod:`._callbacks`: skorch callbacks (removed weights held at zero, divergence, early
  stopping and its validation score);
- :mod:`._cache`: the ``memory=`` cache of the dense stage.
"""

# The first torch optimizer built in a process imports torch._dynamo (about 800 modules,
# sympy among them: about a second). Paid here, when the estimators are imported, it does
# not land inside the first fit, so that each worker of a search fits as fast the first
# time as the next (and ``fit_time`` means the fit). A private module: some torch releases
# refuse to import it on some Pythons (torch 2.2 on 3.12), and then the first fit pays as before.
try:
    import torch._dynamo  # noqa: F401  (isort: skip)
except Exception:  # pragma: no cover - depends on the torch build
    pass

from ._mlp import PrunedMLPClassifier, PrunedMLPRegressor

__all__ = ["PrunedMLPClassifier", "PrunedMLPRegressor"]
