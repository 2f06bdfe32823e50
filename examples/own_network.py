"""Prune a network trained elsewhere: your own torch module, ``max_epochs=0``.

A residual MLP is trained on Friedman #1 by a plain PyTorch loop (standing in for a model
trained in another code base), then handed to ``PrunedMLPRegressor(module=...,
max_epochs=0)``: pruned with EC-OBS at several ratios and fine-tuned with a learning-rate
schedule (skorch's ``LRScheduler`` callback). Prints the test R² of the dense network, right
after pruning and after fine-tuning. Runs in under a minute on two CPU cores::

    python examples/own_network.py

``SK_ECPRUNE_QUICK=1`` (the tests' fast mode) trains and fine-tunes for fewer epochs.
"""

import os

import numpy as np
import torch
from sklearn.datasets import make_friedman1
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import LRScheduler
from torch import nn

from sk_ecprune.estimators import PrunedMLPRegressor

QUICK = bool(os.environ.get("SK_ECPRUNE_QUICK"))
TRAIN_STEPS, FINETUNE_EPOCHS = (100, 2) if QUICK else (500, 5)


class ResidualMLP(nn.Module):
    """Two hidden layers with a skip connection: not a plain chain, prunable weight by weight."""

    def __init__(self, n_features, n_outputs, width=64):
        super().__init__()
        self.inp = nn.Linear(n_features, width)
        self.hidden = nn.Linear(width, width)
        self.out = nn.Linear(width, n_outputs)

    def forward(self, X):
        h = torch.tanh(self.inp(X))
        return self.out(h + torch.tanh(self.hidden(h)))


X, y = make_friedman1(n_samples=1000, noise=0.5, random_state=0)
X = StandardScaler().fit_transform(X).astype(np.float32)
y = ((y - y.mean()) / y.std()).astype(np.float32)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

# "Elsewhere": full-batch Adam in a plain loop.
torch.manual_seed(0)
trained = ResidualMLP(10, 1)
optimizer = torch.optim.Adam(trained.parameters(), lr=1e-2)
Xt, yt = torch.as_tensor(X_train), torch.as_tensor(y_train)[:, None]
for _ in range(TRAIN_STEPS):
    optimizer.zero_grad()
    ((trained(Xt) - yt) ** 2).mean().backward()
    optimizer.step()
with torch.no_grad():
    dense_r2 = r2_score(y_test, trained(torch.as_tensor(X_test)).numpy().ravel())
print(f"dense network trained elsewhere: test R2 {dense_r2:.3f}")

print(f"{'ratio':>6}  {'R2 right after pruning':>23}  {'R2 after fine-tuning':>21}")
for ratio in [0.5, 0.8, 0.9]:
    scores = []
    for finetune_epochs in (0, FINETUNE_EPOCHS):
        reg = PrunedMLPRegressor(
            module=trained, max_epochs=0, prune_ratio=ratio, finetune_epochs=finetune_epochs,
            lr=1e-3, callbacks=[LRScheduler(policy="CosineAnnealingLR", T_max=FINETUNE_EPOCHS)],
            random_state=0,
        ).fit(X_train, y_train)
        scores.append(reg.score(X_test, y_test))
    print(f"{ratio:>6.2f}  {scores[0]:>23.3f}  {scores[1]:>21.3f}")
