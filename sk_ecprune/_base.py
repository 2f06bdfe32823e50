"""The shared ``fit`` of the estimators: train dense, prune, fine-tune.

:class:`_BasePrunedMLP` wraps a skorch network (it does not subclass skorch) and calls the
pruning engine (:func:`sk_ecprune.pruning.prune_model`); it holds no pruning mathematics.
The public classes are in :mod:`sk_ecprune.estimators`.
"""

import inspect
from numbers import Integral, Real

import numpy as np
import torch
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.dataset import ValidSplit
from skorch.history import History
from sklearn.base import BaseEstimator, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._cache import fit_dense_cached
from ._callbacks import HoldRemovedWeights, RaiseOnDivergence, TrainingDiverged
from ._data import TensorBatchIterator, TensorDataset
from ._module import ACTIVATIONS, MLP
from ._net import PrunedNetClassifier, PrunedNetRegressor
from ._validation import (
    OPTIMIZERS,
    RegisteredMethods,
    check_device,
    check_hidden_layer_sizes,
    check_optimizer,
    to_tensor,
)
from .pruning import (
    chain_reports,
    kept_masks,
    layer_sparsity,
    make_permanent,
    prune_model,
    step_ratios,
)

_EVAL_BATCH_SIZE = 1024  # smallest batch for prediction: outputs do not depend on it
# Rows per scoring batch: the scores depend on it only through rounding (sums in float64),
# and fewer, larger batches cut the per-batch cost that dominates on small networks.
_SCORING_BATCH_SIZE = 8192

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

    scope : {"global", "layer", "magnitude_budget"}, default="global"
        Rank all weights together, remove ``prune_ratio`` of each layer, or remove from
        each layer as many weights as global magnitude pruning would and let ``method``
        choose which (the layer budget of magnitude pruning, the choice of EC).

    prune_steps : int >= 1, default=5
        Reach ``prune_ratio`` in this many steps of a geometric schedule (each step
        removes the same share of the weights still present), re-scoring and
        re-compensating the current pruned network at every step. Each step costs one
        scoring pass (for ``"ec"`` 0.4-0.6 training epochs on the paper's small
        networks). 1 is one-shot pruning, the paper's. The default is the benchmark's
        choice (``benchmarks/RESULTS.md``, "EC+"): right after pruning, five steps beat
        magnitude pruning where one-shot EC collapses (r >= 0.8), at about the cost of
        twenty steps' quality.

    gradual : bool, default=True
        Spread the ``finetune_epochs`` between the ``prune_steps`` steps (gradual
        pruning: step t is followed by ``floor(t*E/k) - floor((t-1)*E/k)`` epochs, so the
        last step always gets some) instead of running them all after the last step.
        The optimizer is created once, before the first step. With
        ``finetune_epochs=0`` both schedules are the same iterative pruning.

    layer_floor : float in [0, 1), default=0.0
        With a global scope, keep at least this fraction of the weights of every
        layer: a global ranking can otherwise empty a layer and cut the network.

    scoring_samples : int >= 1 or None, default=8192
        Rows of X (drawn at random, once per fit) on which the weights are scored; None
        scores on all of X. The scores are expectations over the data, which a few
        thousand rows estimate well; scoring cost grows with the rows used.

    output_metric : {"auto", "euclidean", "fisher"}, default="auto"
        How ``"ec"`` (and ``"obd"``) measure the change of the network's output:
        ``"euclidean"`` is the squared norm of the change of the outputs (the paper's
        metric, on the logits for a classifier); ``"fisher"`` is the Fisher metric of the
        model's likelihood, the softmax Fisher ``diag(p) - p p^T`` for the classifier
        (the change of the predicted distribution) and, for the squared-error regressor,
        the Euclidean metric itself. ``"auto"`` is ``"fisher"``.

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
        Seeds weight initialisation, batch shuffling, the validation split, the rows
        scored (``scoring_samples``) and the ``"random"`` method, through generators of
        the fit's own. With an int, ``fit`` is reproducible in any thread (bit for bit
        with the same torch thread settings, else to rounding) and torch's and numpy's
        global random states are neither read nor changed.

    verbose : int, default=0
        0 is silent; 1 prints skorch's epoch table for both phases and one line for
        the pruning step.

    memory : str, joblib.Memory or None, default=None
        Cache of the trained dense network, as ``Pipeline(memory=...)``: a directory or
        a :class:`joblib.Memory`. Fits that differ only in ``prune_ratio``, ``method``,
        ``scope``, ``prune_steps``, ``gradual``, ``layer_floor``, ``scoring_samples``,
        ``output_metric``,
        ``finetune_epochs`` or ``verbose`` (for example
        the grid points of a ``GridSearchCV`` on one fold) train the dense network once
        and load it afterwards; any other parameter, the data, the seed, the versions
        of Python, torch, skorch, scikit-learn or numpy, or sk_ecprune's source start
        a new entry.
        A cached fit equals the uncached one to rounding and a cache hit is bit for bit
        its miss: the entry also holds the state of the batch-order generator. Used
        only with an int (or RandomState) ``random_state``; with None every fit differs
        and nothing is cached. An entry that cannot be read or fails its checksum is
        trained again with a warning, and a directory that cannot be written costs a
        warning and a fit without the cache. Entries are not removed automatically (clear
        them with ``joblib.Memory(path).clear()``); on a filesystem shared by all
        workers, the cache serves a distributed search.
"""

_ATTRIBUTES_DOC = """
    net_ : skorch.NeuralNet
        The trained skorch network; ``net_.module_`` is the sparse torch module with
        plain weights (removed weights are exact zeros). Its callback
        ``"hold_removed_weights"`` keeps them at zero if ``net_`` is trained further.

    sparsity_ : float
        Achieved fraction of zero weights over all linear layers of the final network.

    layer_sparsity_ : dict of str to float
        Fraction of zero weights of each linear layer, by module name.

    pruning_report_ : sk_ecprune.pruning.PruningReport or None
        The engine's report of the pruning (all steps); None when ``prune_ratio == 0``.

    loss_before_pruning_, loss_after_pruning_ : float
        Training loss (criterion on all of X) just before the first and just after the
        last pruning step.

    pruning_time_ : float
        Seconds spent scoring and removing weights (all steps).

    history_dense_, history_finetune_ : skorch.history.History
        skorch's per-epoch history of the dense training and of the fine-tuning, all
        steps together (the latter is empty when ``finetune_epochs == 0``).

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
        "scope": [StrOptions({"global", "layer", "magnitude_budget"})],
        "prune_steps": [Interval(Integral, 1, None, closed="left")],
        "gradual": ["boolean"],
        "layer_floor": [Interval(Real, 0, 1, closed="left")],
        "scoring_samples": [None, Interval(Integral, 1, None, closed="left")],
        "output_metric": [StrOptions({"auto", "euclidean", "fisher"})],
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
        prune_steps=5,
        gradual=True,
        layer_floor=0.0,
        scoring_samples=8192,
        output_metric="auto",
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
        self.prune_steps = prune_steps
        self.gradual = gradual
        self.layer_floor = layer_floor
        self.scoring_samples = scoring_samples
        self.output_metric = output_metric
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
        self._discard_fit()
        try:
            self._fit_stages(X, y)
        except BaseException:
            # An interrupt or an error in any stage: nothing of this fit, nor of an earlier
            # one, stays behind (a refit that fails must not leave old and new attributes).
            self._discard_fit()
            raise
        return self

    def _fit_stages(self, X, y):
        """Validate, build, train dense, prune and fine-tune, finalize."""
        X, y_t = self._validate_fit_data(X, y)
        sizes = check_hidden_layer_sizes(self.hidden_layer_sizes)
        device = check_device(self.device)
        check_optimizer(self.optimizer)
        X_t = to_tensor(X)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self.net_ = self._build_net(sizes, device, seed)
        self._fit_dense(X_t, y_t, seed)
        self._prune_and_finetune(X_t, y_t, seed)
        self._finalize()

    def _discard_fit(self):
        """Remove every fitted attribute (public ``name_`` and private ``_name_``)."""
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, name)

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
        init_seed, shuffle_seed = np.random.SeedSequence(seed).generate_state(2)
        divergence = RaiseOnDivergence("the dense training", self._divergence_advice())
        return net_class(
            module=MLP,
            module__n_features=self.n_features_in_,
            module__n_outputs=self._n_net_outputs,
            module__hidden_layer_sizes=hidden_layer_sizes,
            module__activation=self.activation,
            # Private generators for the initial weights and the batch order: a seeded fit
            # neither reads nor changes torch's global generator, which threads share.
            module__random_state=int(init_seed),
            iterator_train__generator=torch.Generator().manual_seed(int(shuffle_seed)),
            # a loader draws a base seed even when it does not shuffle (validation,
            # prediction): from a generator of its own, not torch's global one
            iterator_valid__generator=torch.Generator().manual_seed(0),
            callbacks=[("raise_on_divergence", divergence)],
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
        optimizer, history and batch-order generator state after training) is loaded from
        the cache when an equal dense stage was trained before, else trained and stored;
        see :mod:`sk_ecprune._cache`.
        """
        fixed_seed = self.random_state is not None and self.random_state is not np.random
        if self.memory is None or not fixed_seed:
            self.net_.fit(X, y)
        else:
            hit = fit_dense_cached(self.memory, self, self.net_, X, y, seed)
            if hit and self.verbose:
                last = self.net_.history[-1]
                print(
                    f"Dense network loaded from the cache (memory): {len(self.net_.history)} "
                    f"epochs, train loss {last['train_loss']:.4f}",
                    flush=True,
                )
        self.history_dense_ = self.net_.history

    def _prune_and_finetune(self, X, y, seed):
        """Stages 2 and 3: prune to ``prune_ratio`` and fine-tune, as the schedule says.

        Without ``gradual``, one call of the engine (``prune_steps`` steps) is followed by
        all the fine-tuning epochs; with it, each step is its own call, followed by its
        share of the epochs. After each pruning the weights are plain parameters and a
        :class:`~sk_ecprune._callbacks.HoldRemovedWeights` callback keeps the removed ones
        at zero.
        """
        self.loss_before_pruning_ = self._training_loss(X, y)
        self.pruning_time_ = 0.0
        self._start_finetuning()
        schedule = self._schedule()
        reports = []
        for ratio, steps, epochs in schedule:
            reports.append(self._prune(X, y, seed, ratio, steps))
            last = len(reports) == len(schedule)
            if last:
                self.loss_after_pruning_ = self._training_loss(X, y)
                if not np.isfinite(self.loss_after_pruning_):
                    raise TrainingDiverged(
                        f"The pruned network's training loss is {self.loss_after_pruning_}: "
                        f"pruning with method={self.method!r} produced non-finite outputs."
                    )
            if self.verbose:
                self._print_pruning_line(reports[-1], len(reports), len(schedule), last)
            where = f" after pruning step {len(reports)} of {len(schedule)}"
            self._finetune(X, y, epochs, "fine-tuning" + (where if len(schedule) > 1 else ""))
        if not schedule:
            self.loss_after_pruning_ = self.loss_before_pruning_
            if self.verbose:
                print("Pruning: none (prune_ratio=0)", flush=True)
            self._finetune(X, y, self.finetune_epochs)
        self.pruning_report_ = chain_reports(reports) if reports else None
        self.history_finetune_ = self.net_.history

    def _schedule(self):
        """(ratio, engine steps, fine-tuning epochs) of each call of the engine."""
        if self.prune_ratio == 0:
            return []
        if not self.gradual:
            return [(float(self.prune_ratio), self.prune_steps, self.finetune_epochs)]
        k, total = self.prune_steps, self.finetune_epochs
        ratios = step_ratios(float(self.prune_ratio), k)
        return [(r, 1, total * t // k - total * (t - 1) // k) for t, r in enumerate(ratios, 1)]

    def _prune(self, X, y, seed, ratio, steps):
        """Stage 2: score the weights with ``method`` and remove them up to ``ratio``.

        The module leaves with plain weights; the fine-tuning callback holds the masks.
        """
        module = self.net_.module_
        report = prune_model(
            module,
            X,
            y,
            ratio=ratio,
            method=self.method,
            scope=self.scope,
            steps=steps,
            layer_floor=float(self.layer_floor),
            loss=self.net_.criterion_,
            batch_size=_SCORING_BATCH_SIZE,
            output_metric=self._engine_output_metric(),
            random_state=seed,
            check_finite=False,  # validate_data has checked X
            max_samples=self.scoring_samples,
        )
        self.pruning_time_ += report.time_s
        masks = {name: mask.cpu() for name, mask in kept_masks(module).items()}
        make_permanent(module)
        self._hold_removed_weights_.hold(masks)
        return report

    def _start_finetuning(self):
        """Fresh history, fine-tuning callbacks and optimizer for stage 3."""
        net = self.net_
        net.history = History()
        self._hold_removed_weights_ = HoldRemovedWeights()
        self._divergence_ = RaiseOnDivergence("fine-tuning", self._divergence_advice())
        net.callbacks = [
            ("hold_removed_weights", self._hold_removed_weights_),
            ("raise_on_divergence", self._divergence_),
        ]
        net.initialize_callbacks()  # fresh timers, scores and table header
        net.initialize_optimizer()

    def _finetune(self, X, y, epochs, stage="fine-tuning"):
        """Stage 3: ``epochs`` epochs of training with the removed weights held at zero."""
        if epochs > 0:
            self._divergence_.stage = stage
            self.net_.partial_fit(X, y, epochs=epochs)

    def _divergence_advice(self):
        return (
            f"Try a smaller lr (lr={self.lr!r}), inputs scaled to about unit variance (a "
            "StandardScaler in a Pipeline)" + self._divergence_advice_extra
            + ", or optimizer='adam'."
        )

    _divergence_advice_extra = ""

    def _finalize(self):
        """Check the final network and record its sparsity."""
        del self._hold_removed_weights_, self._divergence_  # live on in net_.callbacks_
        module = self.net_.module_
        module.eval()
        bad = [name for name, p in module.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise TrainingDiverged(
                f"The fitted network has non-finite parameters ({', '.join(bad)}); "
                f"{self._divergence_advice()}"
            )
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

    def _print_pruning_line(self, report, call, n_calls, last):
        """One line per call of the engine; the last one with the training loss change."""
        where = f" (call {call}/{n_calls} of the gradual schedule)" if n_calls > 1 else ""
        line = (
            f"Pruning: method={self.method}, ratio={report.ratio:.4g}, removed "
            f"{report.n_removed}/{report.n_weights} weights ({report.sparsity:.1%}, "
            f"scope={self.scope}, {report.steps} step(s)){where} in {report.time_s:.2f}s"
        )
        if last:
            line += (
                f"; train loss {self.loss_before_pruning_:.4f} -> "
                f"{self.loss_after_pruning_:.4f}"
            )
        print(line, flush=True)

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
    ``train_step``; the batches are those of skorch's default path. The net classes also
    let interrupts reach the caller (:mod:`sk_ecprune._net`).
    """
    options = {
        "dataset": TensorDataset,
        "iterator_train": TensorBatchIterator,
        "iterator_valid": TensorBatchIterator,
    }
    return _PRUNED_NETS[net_class], options


_PRUNED_NETS = {NeuralNetRegressor: PrunedNetRegressor, NeuralNetClassifier: PrunedNetClassifier}
