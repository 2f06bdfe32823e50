"""scikit-learn estimators that train, prune and fine-tune an MLP in one ``fit``.

The estimators wrap a skorch network (they do not subclass skorch) and call the pruning
engine (:func:`sk_ecprune.pruning.prune_model`); they hold no pruning mathematics.
"""

import contextlib
import inspect
import time
from numbers import Integral, Real

import numpy as np
import torch
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.dataset import ValidSplit
from skorch.history import History
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_memory, validate_data

from ._cache import fit_dense_cached
from ._data import TensorBatchIterator, TensorDataset, fast_net_class
from ._module import ACTIVATIONS, MLP
from ._validation import (
    OPTIMIZERS,
    RegisteredMethods,
    check_device,
    check_finite_float32,
    check_hidden_layer_sizes,
    to_tensor,
)
from .pruning import layer_sparsity, make_permanent, prune_model

__all__ = ["PrunedMLPClassifier", "PrunedMLPRegressor"]

_EVAL_BATCH_SIZE = 1024  # smallest batch for prediction: outputs do not depend on it

_PARAMS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or array-like of int, default=(64, 64)
        Width of each hidden layer (at least 1); an int means one hidden layer and an
        empty tuple a linear model.

    activation : {"prelu", "relu", "tanh", "logistic", "gelu", "silu", "identity"}, \
default="prelu"
        Activation after each hidden layer. ``"prelu"`` learns one negative slope per
        layer. The output layer has none.

    prune_ratio : float in [0, 1), default=0.5
        Fraction of the weights (biases excluded) removed after the dense training.
        0 keeps the dense network.

    method : str, default="ec"
        Weight-scoring method, a key of :data:`sk_ecprune.importance.SCORERS`:
        ``"ec"`` (elimination-compensation, with bias compensation), ``"obd"``,
        ``"nonlinear"`` (brute force, slow), ``"magnitude"``, ``"gradient_magnitude"``
        (uses the targets) or ``"random"``.

    scope : {"global", "layer"}, default="global"
        Rank all weights together, or remove ``prune_ratio`` of each layer.

    max_epochs : int >= 1, default=15
        Epochs of training of the dense network.

    finetune_epochs : int >= 0, default=15
        Epochs of fine-tuning after pruning, with a fresh optimizer and the removed
        weights held at zero. 0 returns the network right after pruning.

    lr : float > 0, default=1e-3
        Learning rate of both phases.

    batch_size : int >= 1, default=32
        Mini-batch size of training. Small batches give the default 15 epochs enough
        optimizer steps on small tabular data sets; raise it for large ones. Prediction
        and loss evaluation use batches of ``max(batch_size, 1024)``.

    optimizer : {"adam", "adamw", "sgd"} or torch optimizer class, default="adam"
        Optimizer of both phases, created afresh for fine-tuning.

    weight_decay : float >= 0, default=0.0
        L2 penalty passed to the optimizer (decoupled for ``"adamw"``).

    validation_fraction : float in (0, 1) or None, default=None
        Fraction of the training data held out to report a validation loss each epoch.
        None trains on all of X.

    device : str or torch.device, default="cpu"
        Where training and pruning run, e.g. ``"cuda"``. A fitted model unpickles on a
        CPU-only machine (onto the CPU).

    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, batch shuffling, the validation split and the
        ``"random"`` method. With an int, ``fit`` is reproducible bit for bit on CPU;
        torch's and numpy's global random states are left untouched.

    verbose : int, default=0
        0 is silent; 1 prints skorch's epoch table for both phases and one line for
        the pruning step.

    memory : str, joblib.Memory or None, default=None
        Cache of the trained dense network, as ``Pipeline(memory=...)``: a directory or
        a :class:`joblib.Memory`. Fits that differ only in ``prune_ratio``, ``method``,
        ``scope``, ``finetune_epochs``, ``output_metric`` or ``verbose`` (for example
        the grid points of a ``GridSearchCV`` on one fold) train the dense network once
        and load it afterwards; any other parameter, the data, the seed, the versions
        of Python, torch, skorch, scikit-learn or numpy, or sk_ecprune's source start
        a new entry.
        A cached fit is bit for bit the uncached one (on CPU, with the same thread
        settings): the entry also restores torch's random state after training. Used
        only with an int (or RandomState) ``random_state``; with None every fit differs
        and nothing is cached. An entry that cannot be read or fails its checksum is
        trained again with a warning. Entries are not removed automatically (clear
        them with ``joblib.Memory(path).clear()``); on a filesystem shared by all
        workers, the cache serves a distributed search.
"""

_ATTRIBUTES_DOC = """
    net_ : skorch.NeuralNet
        The trained skorch network; ``net_.module_`` is the sparse torch module with
        plain weights (removed weights are exact zeros). Training ``net_`` further
        would let removed weights grow back.

    sparsity_ : float
        Achieved fraction of zero weights over all linear layers of the final network.

    layer_sparsity_ : dict of str to float
        Fraction of zero weights of each linear layer, by module name.

    pruning_report_ : sk_ecprune.pruning.PruningReport or None
        The engine's report of the pruning step; None when ``prune_ratio == 0``.

    loss_before_pruning_, loss_after_pruning_ : float
        Training loss (criterion on all of X) just before and just after pruning.

    history_dense_, history_finetune_ : skorch.history.History
        skorch's per-epoch history of the dense training and of the fine-tuning
        (the latter is empty when ``finetune_epochs == 0``).

    n_features_in_ : int
        Number of features seen during ``fit``.

    feature_names_in_ : ndarray of str
        Feature names seen during ``fit``, defined only if X had string column names.
"""


class _BasePrunedMLP(BaseEstimator):
    """Shared fit logic: train dense, prune with the engine, fine-tune."""

    _parameter_constraints = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "prune_ratio": [Interval(Real, 0, 1, closed="left")],
        "method": [RegisteredMethods()],
        "scope": [StrOptions({"global", "layer"})],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "finetune_epochs": [Interval(Integral, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "optimizer": [StrOptions(set(OPTIMIZERS)), callable],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "validation_fraction": [None, Interval(Real, 0, 1, closed="neither")],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "memory": [None, str, HasMethods(["cache"])],
    }

    def __init__(
        self,
        hidden_layer_sizes=(64, 64),
        activation="prelu",
        prune_ratio=0.5,
        method="ec",
        scope="global",
        max_epochs=15,
        finetune_epochs=15,
        lr=1e-3,
        batch_size=32,
        optimizer="adam",
        weight_decay=0.0,
        validation_fraction=None,
        device="cpu",
        random_state=None,
        verbose=0,
        memory=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.prune_ratio = prune_ratio
        self.method = method
        self.scope = scope
        self.max_epochs = max_epochs
        self.finetune_epochs = finetune_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.memory = memory

    # ----------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the dense network, prune it, and fine-tune it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs; converted once to float32. Never modified.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets: class labels for the classifier, values for the regressor.
            Never modified.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X, y_t = self._validate_fit_data(X, y)
        sizes = check_hidden_layer_sizes(self.hidden_layer_sizes)
        device = check_device(self.device)
        X_t = to_tensor(X)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        with _seeded_torch(seed, device):
            self.net_ = self._build_net(sizes, device, seed)
            self._fit_dense(X_t, y_t, seed)
            self._prune(X_t, y_t, seed)
            self._finetune(X_t, y_t)
        self._finalize()
        return self

    def _build_net(self, hidden_layer_sizes, device, seed):
        """Return the (uninitialised) skorch net for this estimator's settings."""
        optimizer = self.optimizer
        kwargs = {}
        if isinstance(optimizer, str):
            optimizer = OPTIMIZERS[optimizer]
            kwargs["optimizer__weight_decay"] = self.weight_decay
            if _has_fused_kernels(optimizer, device):
                # one kernel per step for all parameters instead of one per tensor and
                # operation: on small networks the optimizer step costs as much as the
                # forward and backward passes together
                kwargs["optimizer__fused"] = True
        elif self.weight_decay:
            kwargs["optimizer__weight_decay"] = self.weight_decay
        net_class, data_kwargs = _data_path(self._net_class, device)
        kwargs.update(data_kwargs)
        train_split = None
        if self.validation_fraction is not None:
            train_split = ValidSplit(
                self.validation_fraction, stratified=self._stratify, random_state=seed
            )
        return net_class(
            module=MLP,
            module__n_features=self.n_features_in_,
            module__n_outputs=self._n_net_outputs,
            module__hidden_layer_sizes=hidden_layer_sizes,
            module__activation=self.activation,
            criterion=self._criterion,
            optimizer=optimizer,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            iterator_train__shuffle=True,
            iterator_valid__batch_size=max(self.batch_size, _EVAL_BATCH_SIZE),
            train_split=train_split,
            device=str(device),
            verbose=self.verbose,
            **kwargs,
        )

    def _fit_dense(self, X, y, seed):
        """Stage 1: initialise and train the dense network for ``max_epochs``.

        With ``memory`` and a fixed ``random_state``, the trained network (module,
        optimizer, history and torch's random state after training) is loaded from the
        cache when an equal dense stage was trained before, else trained and stored; see
        :mod:`sk_ecprune._cache`. Runs inside ``fit``'s seeded torch context.
        """
        fixed_seed = self.random_state is not None and self.random_state is not np.random
        if self.memory is None or not fixed_seed:
            self.net_.fit(X, y)
        else:
            memory = check_memory(self.memory)
            hit = fit_dense_cached(memory, self, self.net_, X, y, seed)
            if hit and self.verbose:
                last = self.net_.history[-1]
                print(
                    f"Dense network loaded from the cache (memory): {len(self.net_.history)} "
                    f"epochs, train loss {last['train_loss']:.4f}",
                    flush=True,
                )
        self.history_dense_ = self.net_.history

    def _prune(self, X, y, seed):
        """Stage 2: score the weights with ``method`` and remove ``prune_ratio`` of them."""
        self.loss_before_pruning_ = self._training_loss(X, y)
        start = time.perf_counter()
        self.pruning_report_ = None
        if self.prune_ratio > 0:
            self.pruning_report_ = prune_model(
                self.net_.module_,
                X,
                y,
                ratio=float(self.prune_ratio),
                method=self.method,
                scope=self.scope,
                loss=self.net_.criterion_,
                output_metric=self._output_metric,
                random_state=seed,
            )
        elapsed = time.perf_counter() - start
        self.loss_after_pruning_ = self._training_loss(X, y)
        if self.verbose:
            self._print_pruning_line(elapsed)

    def _finetune(self, X, y):
        """Stage 3: fine-tune ``finetune_epochs`` with a fresh optimizer and history."""
        self.net_.history = History()
        if self.finetune_epochs > 0:
            self.net_.initialize_callbacks()  # fresh timers, scores and table header
            self.net_.initialize_optimizer()
            self.net_.partial_fit(X, y, epochs=self.finetune_epochs)
        self.history_finetune_ = self.net_.history

    def _finalize(self):
        """Make pruning permanent and record the sparsity of the final network."""
        module = self.net_.module_
        if self.pruning_report_ is not None:
            make_permanent(module)
            # The optimizer referenced the reparametrised weights: rebuild it on the
            # plain ones so that the fitted net is consistent and pickles cleanly.
            self.net_.initialize_optimizer()
        module.eval()
        linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
        n_zero = sum(int((m.weight == 0).sum()) for m in linears)
        n_total = sum(m.weight.numel() for m in linears)
        self.sparsity_ = n_zero / n_total
        self.layer_sparsity_ = dict(layer_sparsity(module))

    def _training_loss(self, X, y):
        """Mean criterion of the current network on the training data.

        Computed where the network is, batch by batch (``max(batch_size, 1024)`` rows
        sliced from the data on the net's device): the batch means, weighted by the batch
        sizes, are summed in float64 on the device, and one scalar comes back. No output
        is kept beyond its batch (keeping them all fragments the heap: up to one hidden
        activation of all of X in extra resident memory).
        """
        net = self.net_
        y = y.to(net.device)
        total, start = None, 0
        with torch.no_grad():
            for out in net.forward_iter(X, training=False, device=net.device):
                stop = start + len(out)
                term = net.criterion_(out, y[start:stop]).double() * (stop - start)
                total = term if total is None else total + term
                start = stop
        return float(total) / start

    def _print_pruning_line(self, elapsed):
        report = self.pruning_report_
        if report is None:
            removed = "no weights removed (prune_ratio=0)"
        else:
            removed = (
                f"removed {report.n_removed}/{report.n_weights} weights "
                f"({report.sparsity:.1%}, scope={self.scope})"
            )
        print(
            f"Pruning: method={self.method}, ratio={self.prune_ratio}, {removed} in "
            f"{elapsed:.2f}s; train loss {self.loss_before_pruning_:.4f} -> "
            f"{self.loss_after_pruning_:.4f}",
            flush=True,
        )

    # ------------------------------------------------------------------- predict
    def _forward(self, X):
        """Validated X -> network outputs as a float64 ndarray of shape (n, n_out)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        # Batch outputs are written into one buffer on the net's device (no per-batch
        # tensors kept alive to fragment the heap) and come back in one transfer.
        out, start = None, 0
        for batch in self.net_.forward_iter(to_tensor(X), training=False, device=self.net_.device):
            if out is None:
                out = batch.new_empty((len(X), *batch.shape[1:]))
            out[start : start + len(batch)] = batch
            start += len(batch)
        return out.cpu().numpy().astype(np.float64)


def _has_fused_kernels(optimizer_class, device):
    """Whether ``optimizer_class(..., fused=True)`` is available on ``device``.

    Fused kernels exist for Adam and AdamW on CUDA since torch 2.0 and on the CPU since
    torch 2.4, for SGD since torch 2.3/2.4; older builds train unfused.
    """
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        if "fused" not in inspect.signature(optimizer_class).parameters:
            return False
        return device.type in _get_fused_kernels_supported_devices()
    except Exception:  # a private torch helper: if it moves, train unfused
        return False


def _data_path(net_class, device):
    """skorch net class and options of the tensor data path (see :mod:`sk_ecprune._data`).

    The training data are held as tensors on the net's device and batches are sliced from
    them, through skorch's ``dataset``, ``iterator_train``/``iterator_valid`` and
    ``train_step``; the batches are those of skorch's default path.
    """
    options = {
        "dataset": TensorDataset,
        "iterator_train": TensorBatchIterator,
        "iterator_valid": TensorBatchIterator,
    }
    return fast_net_class(net_class), options


@contextlib.contextmanager
def _seeded_torch(seed, device):
    """Run the block with torch seeded by ``seed``; restore the global RNG states after.

    On CPU only the CPU generator is forked and seeded (the CUDA ones are not touched);
    on CUDA all visible CUDA generators are forked too.
    """
    cuda_devices = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        if cuda_devices:
            torch.manual_seed(seed)
        else:
            torch.default_generator.manual_seed(seed)
        yield


class PrunedMLPRegressor(RegressorMixin, _BasePrunedMLP):
    __doc__ = (
        """Multilayer perceptron regressor trained, pruned and fine-tuned in one ``fit``.

    ``fit`` trains the network with skorch for ``max_epochs`` (mean squared error),
    scores every weight with ``method`` on the training inputs, removes the fraction
    ``prune_ratio`` of the weights (``"ec"`` also shifts biases to compensate), then
    fine-tunes for ``finetune_epochs`` with a fresh optimizer while the removed weights
    stay at exactly zero. Multi-output ``y`` is supported.

    The targets are used as given (the reported losses are in their units); standardise
    them, e.g. with :class:`~sklearn.compose.TransformedTargetRegressor`, when their
    scale is far from 1, as for the inputs with a ``StandardScaler``.
"""
        + _PARAMS_DOC
        + """
    Attributes
    ----------
    n_outputs_ : int
        Number of targets."""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    PrunedMLPClassifier : The classifier counterpart.
    sk_ecprune.pruning.prune_model : The pruning engine called by ``fit``.

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> from sk_ecprune.estimators import PrunedMLPRegressor
    >>> X, y = make_friedman1(n_samples=200, random_state=0)
    >>> reg = PrunedMLPRegressor(prune_ratio=0.5, random_state=0).fit(X, y)
    >>> round(reg.sparsity_, 2)
    0.5
    """
    )

    _net_class = NeuralNetRegressor
    _criterion = torch.nn.MSELoss
    _output_metric = "euclidean"
    _stratify = False

    def _validate_fit_data(self, X, y):
        X, y = validate_data(
            self, X, y, dtype=np.float32, multi_output=True, y_numeric=True
        )
        with np.errstate(over="ignore"):
            y = np.asarray(y, dtype=np.float32)
        check_finite_float32(y, "y")
        self._y_ndim = y.ndim
        y2d = y.reshape(len(y), -1)
        self.n_outputs_ = y2d.shape[1]
        return X, to_tensor(y2d)

    @property
    def _n_net_outputs(self):
        return self.n_outputs_

    def predict(self, X):
        """Predict targets for X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions (float64), with the dimensionality of the ``y`` seen in fit.
        """
        out = self._forward(X)
        return out.ravel() if self._y_ndim == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class PrunedMLPClassifier(ClassifierMixin, _BasePrunedMLP):
    __doc__ = (
        """Multilayer perceptron classifier trained, pruned and fine-tuned in one ``fit``.

    The network outputs one logit per class (two for a binary problem) and is trained
    with cross-entropy on the encoded labels; pruning scores the logits. Otherwise as
    :class:`PrunedMLPRegressor`.
"""
        + _PARAMS_DOC
        + """
    output_metric : {"euclidean", "fisher"}, default="euclidean"
        How pruning measures the change of the output: Euclidean norm of the logits,
        or the softmax Fisher metric (change of the predicted distribution).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in fit."""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    PrunedMLPRegressor : The regressor counterpart.
    sk_ecprune.pruning.prune_model : The pruning engine called by ``fit``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sk_ecprune.estimators import PrunedMLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = PrunedMLPClassifier(prune_ratio=0.7, random_state=0).fit(X, y)
    >>> clf.predict(X[:2]).shape
    (2,)
    """
    )

    _parameter_constraints = {
        **_BasePrunedMLP._parameter_constraints,
        "output_metric": [StrOptions({"euclidean", "fisher"})],
    }
    _net_class = NeuralNetClassifier
    _criterion = torch.nn.CrossEntropyLoss
    _stratify = True

    def __init__(
        self,
        hidden_layer_sizes=(64, 64),
        activation="prelu",
        prune_ratio=0.5,
        method="ec",
        scope="global",
        max_epochs=15,
        finetune_epochs=15,
        lr=1e-3,
        batch_size=32,
        optimizer="adam",
        weight_decay=0.0,
        validation_fraction=None,
        device="cpu",
        random_state=None,
        verbose=0,
        memory=None,
        output_metric="euclidean",
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            prune_ratio=prune_ratio,
            method=method,
            scope=scope,
            max_epochs=max_epochs,
            finetune_epochs=finetune_epochs,
            lr=lr,
            batch_size=batch_size,
            optimizer=optimizer,
            weight_decay=weight_decay,
            validation_fraction=validation_fraction,
            device=device,
            random_state=random_state,
            verbose=verbose,
            memory=memory,
        )
        self.output_metric = output_metric

    @property
    def _output_metric(self):
        return self.output_metric

    @property
    def _n_net_outputs(self):
        return len(self.classes_)

    def _validate_fit_data(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        if len(encoder.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in y; got only "
                f"one class: {encoder.classes_.tolist()[0]!r}."
            )
        self.classes_ = encoder.classes_
        return X, torch.from_numpy(encoder.transform(y).astype(np.int64))

    def predict_proba(self, X):
        """Class probabilities (softmax of the logits) for X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities (float64) in the order of ``classes_``.
        """
        logits = self._forward(X)
        logits -= logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Predict class labels for X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        logits = self._forward(X)  # checks fitted first
        return self.classes_[np.argmax(logits, axis=1)]
