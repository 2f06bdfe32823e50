"""Data shipped with the package, for the benchmarks, the examples and the tests.

- :mod:`.diffusion_sorption`: the 1-D diffusion-sorption problem of PDEBench (the paper's
  scientific-regression task), its solver and the generated regression data set;
- :mod:`.digits`: scikit-learn's 8x8 digits laid out like MNIST (28x28, 784 inputs);
- :mod:`.mnist`: a reader for a local copy of MNIST (nothing is downloaded).
"""

from .diffusion_sorption import make_diffusion_sorption, solve_diffusion_sorption
from .digits import load_digits_28x28
from .mnist import load_mnist

__all__ = [
    "load_digits_28x28",
    "load_mnist",
    "make_diffusion_sorption",
    "solve_diffusion_sorption",
]
