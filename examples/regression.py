"""Regression: how much of a network can be removed before the fit degrades?

Friedman #1 (10 inputs, 5 of them informative). The targets are standardised with
``TransformedTargetRegressor`` so that the default learning rate suits them. Compares EC
and magnitude pruning right after pruning (``finetune_epochs=0``) and after fine-tuning.
Runs in about 20 seconds on two CPU cores::

    python examples/regression.py

``SK_ECPRUNE_QUICK=1`` (the tests' fast mode) trains 2 epochs instead of 15.
"""

import os

from sklearn.base import clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import make_friedman1
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_ecprune.estimators import PrunedMLPRegressor

EPOCHS = 2 if os.environ.get("SK_ECPRUNE_QUICK") else 15

X, y = make_friedman1(n_samples=1000, noise=0.5, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

model = TransformedTargetRegressor(
    regressor=make_pipeline(
        StandardScaler(),
        PrunedMLPRegressor(hidden_layer_sizes=(32, 32), max_epochs=EPOCHS, random_state=0),
    ),
    transformer=StandardScaler(),
)

print(f"{'method':<10}{'ratio':>6}  {'R2 right after pruning':>23}  {'R2 after fine-tuning':>21}")
for method in ["ec", "magnitude"]:
    for ratio in [0.0, 0.5, 0.8, 0.9]:
        scores = []
        for finetune_epochs in [0, EPOCHS]:
            est = clone(model).set_params(
                regressor__prunedmlpregressor__prune_ratio=ratio,
                regressor__prunedmlpregressor__method=method,
                regressor__prunedmlpregressor__finetune_epochs=finetune_epochs,
            )
            scores.append(est.fit(X_train, y_train).score(X_test, y_test))
        print(f"{method:<10}{ratio:>6.1f}  {scores[0]:>23.3f}  {scores[1]:>21.3f}")
