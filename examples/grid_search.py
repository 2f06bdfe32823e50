"""Tune sparsity like any hyperparameter: GridSearchCV over ``prune_ratio`` and ``method``.

The estimator sits in a ``Pipeline`` after a ``StandardScaler``; the grid crosses pruning
ratio and scoring method, with two worker processes. Runs in about 20 seconds on two CPU
cores::

    python examples/grid_search.py

``SK_ECPRUNE_QUICK=1`` (the tests' fast mode) trains 2 epochs instead of 10.
"""

import os

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_ecprune.estimators import PrunedMLPClassifier

EPOCHS = 2 if os.environ.get("SK_ECPRUNE_QUICK") else 10

X, y = load_breast_cancer(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)

pipe = make_pipeline(
    StandardScaler(),
    PrunedMLPClassifier(hidden_layer_sizes=(32, 32), max_epochs=EPOCHS,
                        finetune_epochs=EPOCHS, random_state=0),
)
grid = GridSearchCV(
    pipe,
    param_grid={
        "prunedmlpclassifier__prune_ratio": [0.0, 0.5, 0.8, 0.95],
        "prunedmlpclassifier__method": ["ec", "magnitude"],
    },
    cv=3,
    n_jobs=2,
)
grid.fit(X_train, y_train)

results = pd.DataFrame(grid.cv_results_)
columns = {
    "param_prunedmlpclassifier__method": "method",
    "param_prunedmlpclassifier__prune_ratio": "prune_ratio",
    "mean_test_score": "cv accuracy",
    "std_test_score": "std",
}
print(results[list(columns)].rename(columns=columns).sort_values(["method", "prune_ratio"])
      .to_string(index=False, float_format="{:.3f}".format))
print("best:", grid.best_params_)
best = grid.best_estimator_[-1]
print(f"test accuracy of the refitted best pipeline: {grid.score(X_test, y_test):.3f} "
      f"(sparsity {best.sparsity_:.0%})")
