"""Quickstart: train, prune and fine-tune a classifier in one ``fit``.

Trains a 64-32-32-10 network on scikit-learn's digits, removes 80% of its weights with
elimination-compensation (EC) pruning, fine-tunes, and compares with the dense network.
Runs in about 10 seconds on two CPU cores::

    python examples/quickstart.py

``SK_ECPRUNE_QUICK=1`` (the tests' fast mode) trains 2 epochs instead of 15.
"""

import os

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from sk_ecprune.estimators import PrunedMLPClassifier

EPOCHS = 2 if os.environ.get("SK_ECPRUNE_QUICK") else 15

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X / 16, y, stratify=y, random_state=0)

dense = PrunedMLPClassifier(hidden_layer_sizes=(32, 32), prune_ratio=0.0, max_epochs=EPOCHS,
                            finetune_epochs=EPOCHS, random_state=0)
dense.fit(X_train, y_train)

clf = PrunedMLPClassifier(hidden_layer_sizes=(32, 32), prune_ratio=0.8, method="ec",
                          max_epochs=EPOCHS, finetune_epochs=EPOCHS, random_state=0)
clf.fit(X_train, y_train)

print(f"dense network : test accuracy {dense.score(X_test, y_test):.3f}")
print(f"80% pruned    : test accuracy {clf.score(X_test, y_test):.3f}, "
      f"sparsity {clf.sparsity_:.1%}")
print("zero weights per layer:",
      {name: f"{s:.0%}" for name, s in clf.layer_sparsity_.items()})
print(f"training loss {clf.loss_before_pruning_:.3f} before pruning, "
      f"{clf.loss_after_pruning_:.3f} right after, "
      f"{clf.history_finetune_[-1, 'train_loss']:.3f} after fine-tuning")
print(clf.pruning_report_)
