"""A plain multilayer perceptron: the module the estimators train, usable on its own.

A plain stack of ``nn.Linear`` layers with an activation between them and none after the
last one (regression outputs or classification logits), which is what the pruning engine
expects: every ``nn.Linear`` is applied once per sample.
"""

import math

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "MLP"]

#: Activation name -> factory of the ``nn.Module`` applied after each hidden layer.
ACTIVATIONS = {
    "identity": nn.Identity,
    "logistic": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "prelu": nn.PReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


class MLP(nn.Module):
    """Fully connected network ``n_features -> hidden_layer_sizes -> n_outputs``.

    Parameters
    ----------
    n_features : int
        Number of input features.

    n_outputs : int
        Number of outputs (targets for regression, classes for classification).

    hidden_layer_sizes : sequence of int, default=(64, 64)
        Width of each hidden layer; empty for a linear model.

    activation : str, default="prelu"
        Name of the hidden activation, a key of :data:`ACTIVATIONS`. ``"prelu"`` learns
        one negative slope per hidden layer.

    random_state : int or None, default=None
        Seed of the initial weights. With an int the layers are initialised from a private
        ``torch.Generator`` (the distribution of ``nn.Linear``'s own initialisation), so
        building the module neither reads nor advances torch's global generator, and two
        modules built with one seed, in any thread, are equal. None uses ``nn.Linear``'s
        initialisation from the global generator.

    Attributes
    ----------
    layers : torch.nn.Sequential
        ``Linear, activation, Linear, activation, ..., Linear``.
    """

    def __init__(
        self,
        n_features,
        n_outputs,
        hidden_layer_sizes=(64, 64),
        activation="prelu",
        random_state=None,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"Unknown activation {activation!r}; expected one of {sorted(ACTIVATIONS)}."
            )
        widths = [int(n_features), *(int(w) for w in hidden_layer_sizes), int(n_outputs)]
        generator = None
        if random_state is not None:
            generator = torch.Generator().manual_seed(int(random_state))
        blocks = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            blocks.append(_linear(n_in, n_out, generator))
            if i < len(widths) - 2:
                blocks.append(ACTIVATIONS[activation]())
        self.layers = nn.Sequential(*blocks)

    def sequential_chain(self):
        """The ``nn.Sequential`` this module's forward pass applies, nothing else.

        Lets the pruning engine compute output sensitivities layer by layer in closed form
        (:mod:`.chain`); a subclass that changes ``forward`` must drop it.
        """
        return self.layers

    def forward(self, X):
        """Return the network outputs (logits for a classifier) for a batch ``X``."""
        return self.layers(X)


def _linear(n_in, n_out, generator):
    """``nn.Linear(n_in, n_out)``, initialised from ``generator`` when one is given.

    ``skip_init`` builds the layer without running its own (global-generator)
    initialisation; the weights are then drawn as ``nn.Linear.reset_parameters`` draws them:
    Kaiming-uniform with ``a = sqrt(5)`` for the weight, ``U(-1/sqrt(n_in), 1/sqrt(n_in))``
    for the bias.
    """
    if generator is None:
        return nn.Linear(n_in, n_out)
    layer = nn.utils.skip_init(nn.Linear, n_in, n_out)
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(n_in) if n_in > 0 else 0.0
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer
