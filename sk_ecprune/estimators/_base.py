"""The shared ``fit`` of the estimators, as named stages: validate, build, dense, schedule,
finalize, quantize.

:class:`_BasePrunedMLP` wraps a skorch network (it does not subclass skorch) and reaches the
pruning engine through :func:`sk_ecprune.engine.prune_model` alone; it holds no pruning
mathematics. The public classes are in :mod:`._mlp`.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch
from skorch.history import History
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ..engine import (
    ACTIVATIONS,
    NEURON_SCORERS,
    SCORERS,
    Method,
    Quantizer,
    chain_reports,
    compact,
    gradual_schedule,
    kept_masks,
    layer_sparsity,
    make_permanent,
    prune_model,
    to_sparse,
)
from ._build import build_net, stage_callbacks, validation_fraction, validation_rows
from ._cache import fit_dense_cached
from ._callbacks import HoldRemovedWeights, RaiseOnDivergence, TrainingDiverged
from ._data import net_inputs, to_tensor
from ._quantize import (
    QUANTIZE_METHODS,
    export_grids,
    onnx_model_bytes,
    quantize_network,
)
from ._network import (
    NestedParamsMixin,
    check_module,
    check_network_params,
    hidden_layer_sizes_of,
)
from ._progress import echo, fit_progress
from ._params import (
    ARRAY_LIKE,
    BOOLEAN,
    CACHE,
    CALLABLE,
    DEVICE,
    NONE,
    OPTIMIZERS,
    RANDOM_STATE,
    STRING,
    VERBOSE,
    Interval,
    Kind,
    Options,
    check_device,
    check_granularity,
    check_hidden_layer_sizes,
    check_optimizer,
    validate_params,
)

# Rows per scoring batch: the scores depend on it only through rounding (sums in float64),
# and fewer, larger batches cut the per-batch cost that dominates on small networks.
_SCORING_BATCH_SIZE = 8192


@dataclass(frozen=True)
class _FitData:
    """What the validation stage hands to the others: tensors, the seed, the settings."""

    X: torch.Tensor
    y: torch.Tensor
    seed: int
    hidden_layer_sizes: tuple
    device: torch.device
    sample_weight: torch.Tensor | None = None  # float32, shape (n_samples,)

    @property
    def inputs(self):
        """What the net is fitted on: ``X``, or ``X`` and the weights (:func:`net_inputs`)."""
        return net_inputs(self.X, self.sample_weight)


class _BasePrunedMLP(NestedParamsMixin, BaseEstimator):
    """Shared fit logic: train dense, prune with the engine, fine-tune."""

    _parameter_constraints = {
        "hidden_layer_sizes": [ARRAY_LIKE, Interval(Integral, 1, None)],
        "activation": [Options(ACTIVATIONS)],
        "prune_ratio": [Interval(Real, 0, 1)],
        "method": [Options(lambda: SCORERS),  # read when checked: methods may be added
                   Kind(lambda value: isinstance(value, Method),
                        "a method instance of sk_ecprune.engine (e.g. ECOBS(damp=0.1))")],
        "scope": [Options({"global", "layer", "magnitude_budget"})],
        "granularity": [Options({"weight", "neuron"})],
        "prune_steps": [Interval(Integral, 1, None)],
        "gradual": [BOOLEAN],
        "layer_floor": [Interval(Real, 0, 1)],
        "scoring_samples": [NONE, Interval(Integral, 1, None)],
        "output_metric": [Options({"auto", "euclidean", "fisher"})],
        "max_epochs": [Interval(Integral, 0, None)],
        "finetune_epochs": [Interval(Integral, 0, None)],
        "quantize_bits": [NONE, Interval(Integral, 2, 8, closed="both")],
        "quantize_method": [Options(lambda: QUANTIZE_METHODS),
                            Kind(lambda value: isinstance(value, Quantizer),
                                 "a quantiser instance of sk_ecprune.engine (e.g. "
                                 "ECOBSRounding(damp=0.1))")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "finetune_lr": [NONE, Interval(Real, 0, None, closed="neither")],
        "batch_size": [Options({"auto"}), Interval(Integral, 1, None)],
        "optimizer": [Options(OPTIMIZERS), CALLABLE],
        "weight_decay": [Interval(Real, 0, None)],
        "early_stopping": [BOOLEAN],
        "validation_fraction": [NONE, Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [NONE, Interval(Integral, 1, None)],
        "tol": [Interval(Real, 0, None)],
        "device": [DEVICE],
        "random_state": [RANDOM_STATE],
        "verbose": [VERBOSE],
        "memory": [NONE, STRING, CACHE],
    }

    def __init__(
        self,
        hidden_layer_sizes=(64, 64),
        activation="relu",
        prune_ratio=0.5,
        method="ec_obs",
        scope="global",
        granularity="weight",
        prune_steps=5,
        gradual=True,
        layer_floor=0.0,
        scoring_samples=8192,
        output_metric="auto",
        max_epochs=200,
        finetune_epochs=50,
        quantize_bits=None,
        quantize_method="ec_obs",
        lr=1e-3,
        finetune_lr=None,
        batch_size="auto",
        optimizer="adam",
        weight_decay=1e-4,
        early_stopping=False,
        validation_fraction=None,
        n_iter_no_change=10,
        tol=1e-4,
        device="cpu",
        random_state=None,
        verbose=0,
        memory=None,
        module=None,
        callbacks=None,
        **kwargs,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.prune_ratio = prune_ratio
        self.method = method
        self.scope = scope
        self.granularity = granularity
        self.prune_steps = prune_steps
        self.gradual = gradual
        self.layer_floor = layer_floor
        self.scoring_samples = scoring_samples
        self.output_metric = output_metric
        self.max_epochs = max_epochs
        self.finetune_epochs = finetune_epochs
        self.quantize_bits = quantize_bits
        self.quantize_method = quantize_method
        self.lr = lr
        self.finetune_lr = finetune_lr
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.memory = memory
        self.module = module
        self.callbacks = callbacks
        self._store_nested_params(kwargs)  # optimizer__*, module__*, callbacks__*

    # ----------------------------------------------------------------------- fit
    def fit(self, X, y, sample_weight=None):
        """Train the dense network, prune it, and fine-tune it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs; converted once to float32. Never modified.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets: class labels for the classifier, values for the regressor.
            Never modified.

        sample_weight : array-like of shape (n_samples,) or float, default=None
            Non-negative weight of each row (finite, not all zero), as for scikit-learn's
            MLP: the loss of every mini-batch is the weighted mean of its rows' losses
            (a row of weight 0 adds nothing to it, and a batch whose weights are all zero
            has loss 0), the validation split (``validation_fraction``,
            ``early_stopping``) takes its rows' weights along and weighs its loss and
            score alike, and the pruning methods that take expectations over the data
            (``"ec"``, ``"obd"``, ``"nonlinear"``, ``"gradient_magnitude"``) take weighted
            means (an integer weight counts as that many copies of the row).
            ``"magnitude"`` and ``"random"`` ignore them. A number weighs all rows alike.
            None is the unweighted fit, and uniform weights equal it up to rounding.
            Never modified; part of the ``memory`` key.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._discard_fit()
        try:
            data = self._validate(X, y, sample_weight)
            self._progress_ = fit_progress(self)
            self.net_ = build_net(self, data.hidden_layer_sizes, data.device, data.seed,
                                  len(data.X))
            check_module(self, self.net_.module, data.X)
            self._fit_dense(data)
            self._prune_and_finetune(data)
            self._finalize()
            if self._progress_ is not None and self.quantize_bits is not None:
                self._progress_.begin(
                    f"quantisation: {self.quantize_bits} bits, method={self.quantize_method}")
            self._quantize(data)
            if self._progress_ is not None:
                self._progress_.done(
                    f"Fitted: sparsity {self.sparsity_:.1%}, train loss "
                    f"{self.loss_before_pruning_:.4g} (dense) -> {self.loss_after_pruning_:.4g} "
                    f"(pruned) -> {self.loss_:.4g} (final)"
                )
            del self._progress_
        except BaseException:
            # An interrupt or an error in any stage: nothing of this fit, nor of an earlier
            # one, stays behind (a refit that fails must not leave old and new attributes).
            self._discard_fit()
            raise
        return self

    def _discard_fit(self):
        """Remove every fitted attribute (public ``name_`` and private ``_name_``)."""
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, name)

    def _validate(self, X, y, sample_weight=None):
        """Stage 0: check the parameters and the data; derive the fit's seed."""
        validate_params(self, self._parameter_constraints)
        check_network_params(self)
        check_granularity(self.granularity, self.method, self.scope, NEURON_SCORERS)
        check_optimizer(self.optimizer)
        sizes = check_hidden_layer_sizes(self.hidden_layer_sizes)
        device = check_device(self.device)
        X, y_t, weights = self._validate_fit_data(X, y, sample_weight)
        self._check_validation_size(len(X))
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        weights = None if weights is None else to_tensor(weights)
        return _FitData(to_tensor(X), y_t, seed, sizes, device, weights)

    def _check_validation_size(self, n_samples):
        """With early stopping, at least 2 validation rows (as scikit-learn requires)."""
        if not self.early_stopping:
            return
        fraction = validation_fraction(self)
        n_valid = validation_rows(self, n_samples)
        if n_valid < 2 or n_valid >= n_samples:
            raise ValueError(
                f"The validation set is too small or leaves nothing to train on: "
                f"validation_fraction={fraction} of {n_samples} rows is {n_valid} rows; "
                "early stopping needs at least 2 and fewer than all. Change "
                "validation_fraction or use more data."
            )

    def _fit_dense(self, data):
        """Stage 1: initialise and train the dense network for ``max_epochs`` (fewer where
        the stopping rule ends it; ``early_stopping`` then restores its best epoch).

        With ``memory`` and a fixed ``random_state``, the trained network (module,
        optimizer, history and batch-order generator state after training) is loaded from
        the cache when an equal dense stage was trained before, else trained and stored;
        see :mod:`._cache`.
        """
        progress = self._progress_
        if progress is not None:
            progress.begin(
                f"dense training: {self._upto}{self.max_epochs} epochs" if self.max_epochs else
                "no dense training (max_epochs=0): the module is pruned as given"
            )
        fixed_seed = self.random_state is not None and self.random_state is not np.random
        if self.max_epochs == 0:
            self.net_.initialize()
        elif self.memory is None or not fixed_seed:
            self.net_.fit(data.inputs, data.y)
        else:
            hit = fit_dense_cached(
                self.memory, self, self.net_, data.X, data.y, data.seed, data.sample_weight
            )
            if hit and self.verbose:
                last = self.net_.history[-1]
                echo(
                    f"Dense network loaded from the cache (memory): {len(self.net_.history)} "
                    f"epochs, train loss {last['train_loss']:.4f}"
                )
        self.history_dense_ = self.net_.history
        if progress is not None:
            progress.epochs(self.history_dense_)
        self.loss_curve_stages_ = ["dense"] * len(self.history_dense_)

    def _prune_and_finetune(self, data):
        """Stage 2: prune to ``prune_ratio`` and fine-tune, as :meth:`_schedule` says.

        Without ``gradual``, one call of the engine (``prune_steps`` steps) is followed by
        all the fine-tuning epochs; with it, each step is its own call, followed by its
        share of the epochs. After each pruning the weights are plain parameters and a
        :class:`~._callbacks.HoldRemovedWeights` callback keeps the removed ones at zero.
        """
        self.loss_before_pruning_ = self._training_loss(data)
        self.pruning_time_ = 0.0
        self._start_finetuning()
        schedule = self._schedule()
        reports = []
        for call, (ratio, steps, epochs) in enumerate(schedule, 1):
            if self._progress_ is not None:
                self._progress_.begin_pruning(self.method, ratio, steps, call, len(schedule))
            reports.append(self._prune(data, ratio, steps))
            if call == len(schedule):
                self.loss_after_pruning_ = self._checked_pruned_loss(data)
            if self._progress_ is not None:
                self._progress_.pruned(reports[-1].time_s)
                self._print_pruning_line(reports[-1], call, len(schedule))
            where = f" after pruning step {call} of {len(schedule)}" if len(schedule) > 1 else ""
            self._finetune(data, epochs, "fine-tuning" + where)
        if not schedule:
            self.loss_after_pruning_ = self.loss_before_pruning_
            if self._progress_ is not None:
                self._progress_.note("Pruning: none (prune_ratio=0)")
            self._finetune(data, self.finetune_epochs)
        self.pruning_report_ = chain_reports(reports) if reports else None
        self.history_finetune_ = self.net_.history

    def _schedule(self):
        """(ratio, engine steps, fine-tuning epochs) of each call of the engine."""
        if self.prune_ratio == 0:
            return []
        if not self.gradual:
            return [(float(self.prune_ratio), self.prune_steps, self.finetune_epochs)]
        steps = gradual_schedule(float(self.prune_ratio), self.prune_steps, self.finetune_epochs)
        return [(ratio, 1, epochs) for ratio, epochs in steps]

    def _prune(self, data, ratio, steps):
        """Score the weights with ``method`` and remove them up to ``ratio``.

        The module leaves with plain weights; the fine-tuning callback holds the masks.
        """
        module = self.net_.module_
        report = prune_model(
            module,
            data.X,
            data.y,
            ratio=ratio,
            sample_weight=data.sample_weight,
            method=self.method,
            scope=self.scope,
            steps=steps,
            layer_floor=float(self.layer_floor),
            loss=self.net_.criterion_,
            batch_size=_SCORING_BATCH_SIZE,
            output_metric=self._engine_output_metric(),
            random_state=data.seed,
            check_finite=False,  # validate_data has checked X
            max_samples=self.scoring_samples,
            granularity=self.granularity,
        )
        self.pruning_time_ += report.time_s
        masks = {name: mask.cpu() for name, mask in kept_masks(module).items()}
        make_permanent(module)
        self._hold_removed_weights_.hold(masks)
        return report

    def _checked_pruned_loss(self, data):
        loss = self._training_loss(data)
        if not np.isfinite(loss):
            raise TrainingDiverged(
                f"The pruned network's training loss is {loss}: pruning with "
                f"method={self.method!r} produced non-finite outputs."
            )
        return loss

    def _start_finetuning(self):
        """Fresh history, fine-tuning callbacks and optimizer (learning rate
        ``finetune_lr``, else ``lr``) for the fine-tuning."""
        net = self.net_
        net.history = History()
        self._hold_removed_weights_ = HoldRemovedWeights()
        self._divergence_ = RaiseOnDivergence("fine-tuning", self._divergence_advice())
        net.callbacks = stage_callbacks(
            self, [("raise_on_divergence", self._divergence_)], "fine-tuning",
            self.finetune_epochs,
            # last: it acts after every other callback (the user's too) at each batch end
            last=[("hold_removed_weights", self._hold_removed_weights_)],
        )
        net.initialize_callbacks()  # fresh timers, scores and progress output
        # skorch builds the optimizer with the net's lr: the fine-tuning one from here on
        net.lr = self.lr if self.finetune_lr is None else self.finetune_lr
        net.initialize_optimizer()

    def _finetune(self, data, epochs, stage="fine-tuning"):
        """``epochs`` epochs of training with the removed weights held at zero.

        With ``early_stopping``, fewer when the validation loss stalls, and the best
        epoch's weights (with this segment's zeros) restored at the end.
        """
        if epochs > 0:
            self._divergence_.stage = stage
            if self._progress_ is not None:
                self._progress_.begin(f"{stage}: {self._upto}{epochs} epochs")
                for name, callback in self.net_.callbacks_:
                    if name in ("epoch_log", "progress_bar"):
                        callback.stage, callback.epochs = stage, epochs
            before = len(self.net_.history)
            self.net_.partial_fit(data.inputs, data.y, epochs=epochs)
            self.loss_curve_stages_ += [stage] * (len(self.net_.history) - before)
            if self._progress_ is not None:
                self._progress_.epochs(list(self.net_.history)[before:])

    def _finalize(self):
        """Stage 3: check the final network and record its sparsity."""
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
        if self.granularity == "neuron" and self.prune_ratio > 0:
            self._compact_network()
        self.hidden_layer_sizes_ = hidden_layer_sizes_of(self.net_.module_)
        self._record_curves()

    def _quantize(self, data):
        """Stage 4: round the final (compacted) network's weights to ``quantize_bits``.

        Last, so that the grids describe the network ``predict`` runs; see
        :mod:`._quantize`.
        """
        quantize_network(self, data, _SCORING_BATCH_SIZE)

    @property
    def model_bytes_(self):
        """int or None: size in bytes of the model's ONNX file (``sk_ecprune.onnx``).

        ``skl2onnx.to_onnx(est, X[:1].astype(np.float32))`` with the default options and
        opset, serialised; computed on first access. None without skl2onnx and onnx.
        """
        check_is_fitted(self)
        if not hasattr(self, "_model_bytes_"):
            self._model_bytes_ = onnx_model_bytes(self)
        return self._model_bytes_

    def _export_grids(self, module):
        """The integer grids of ``module`` (``to_torch()``) for the ONNX export."""
        check_is_fitted(self)
        return export_grids(self, module)

    def _record_curves(self):
        """scikit-learn's MLP attributes of the training, from the two skorch histories.

        ``loss_curve_`` and ``validation_scores_`` run over both stages in order
        (``loss_curve_stages_`` says which epoch is which); ``best_loss_`` and
        ``best_validation_score_`` follow scikit-learn's rules: with early stopping the
        former is None, without it the latter two are.
        """
        epochs = [*self.history_dense_, *self.history_finetune_]
        self.loss_curve_ = [float(epoch["train_loss"]) for epoch in epochs]
        self.n_iter_ = len(self.loss_curve_)
        # no epoch at all (max_epochs=0, finetune_epochs=0): the pruned network's loss
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else self.loss_after_pruning_
        self.out_activation_ = self._out_activation
        if self.early_stopping:
            self.best_loss_ = None
            self.validation_scores_ = [float(epoch["valid_score"]) for epoch in epochs]
            self.best_validation_score_ = _best(self.validation_scores_, higher=True)
        else:
            self.best_loss_ = _best(self.loss_curve_ or [self.loss_], higher=False)
            self.validation_scores_ = None
            self.best_validation_score_ = None

    # ------------------------------------------------------- scikit-learn's MLP layout
    def _linear_layers(self):
        check_is_fitted(self)
        return [m for m in self.net_.module_.modules() if isinstance(m, torch.nn.Linear)]

    @property
    def coefs_(self):
        """list of ndarray: ``coefs_[i]``, shape ``(n_in_i, n_out_i)``, the weights of layer i.

        scikit-learn's layout (the transpose of ``nn.Linear.weight``), float32 copies of
        the final network's ``nn.Linear`` layers in order, whatever their shapes; removed
        weights are zeros. Changing them does not change the network (``net_.module_``).
        """
        return [layer.weight.detach().cpu().numpy().T.copy() for layer in self._linear_layers()]

    @property
    def intercepts_(self):
        """list of ndarray: ``intercepts_[i]``, shape ``(n_out_i,)``, the biases of layer i.

        Copies, as for ``coefs_``; zeros for a layer without bias.
        """
        return [
            np.zeros(layer.out_features, dtype=np.float32) if layer.bias is None
            else layer.bias.detach().cpu().numpy().copy()
            for layer in self._linear_layers()
        ]

    @property
    def n_layers_(self):
        """int: number of layers, input and output layers included (linear layers + 1)."""
        return len(self._linear_layers()) + 1

    def _compact_network(self):
        """Replace the MLP's layers by their compacted equivalent: the removed units go.

        The optimizer is rebuilt for the new parameters (its state is lost) and the
        callback holds the compacted network's zeros, so that training ``net_`` further
        keeps them.
        """
        net = self.net_
        if self.module is None:  # the package's MLP keeps its class
            net.module_.layers = compact(net.module_)
        else:
            net.module = net.module_ = compact(net.module_)
        net.initialize_optimizer()
        masks = {name: mask.cpu() for name, mask in kept_masks(net.module_).items()}
        dict(net.callbacks_)["hold_removed_weights"].hold(masks)

    def to_torch(self, sparse=False):
        """The fitted network as a standalone, compacted ``torch.nn.Module`` on the CPU.

        A plain ``nn.Sequential`` of ``nn.Linear`` layers and activations, with no skorch,
        hooks or masks: units that pruning disconnected (all of a unit's incoming or
        outgoing weights zero) are removed (:func:`sk_ecprune.compact`). Its output is the
        regressor's prediction, or the classifier's logits (one per class; probabilities
        are their softmax), for float32 input of shape ``(n, n_features_in_)``.

        Parameters
        ----------
        sparse : bool, default=False
            Store the layers with at least 90% zero weights in torch's CSR format
            (:func:`sk_ecprune.to_sparse`): faster for batches of thousands of rows at
            such sparsity, slower for single rows (``benchmarks/README.md``).

        Returns
        -------
        module : torch.nn.Sequential
            In evaluation mode, float32, on the CPU.
        """
        check_is_fitted(self)
        try:
            module = compact(self.net_.module_)
        except ValueError as exc:
            raise ValueError(
                f"to_torch() (and the ONNX export) rebuild the network as a plain chain of "
                f"layers, and module={type(self.net_.module_).__name__} is not one: {exc} The "
                "fitted module itself, with its removed weights at zero, is net_.module_."
            ) from None
        module = module.cpu().float().eval()
        return to_sparse(module) if sparse else module

    # -------------------------------------------------------------------- helpers
    _divergence_advice_extra = ""
    _out_activation = "identity"  # what the fitted out_activation_ says
    _validation_score = "r2"  # scikit-learn's validation score for early stopping

    @property
    def _upto(self):
        """"up to " where a stopping rule may end a stage before its last epoch."""
        return "" if self.n_iter_no_change is None and not self.early_stopping else "up to "

    def _divergence_advice(self):
        return (
            f"Try a smaller lr (lr={self.lr!r}), inputs scaled to about unit variance (a "
            "StandardScaler in a Pipeline)" + self._divergence_advice_extra
            + ", or optimizer='adam'."
        )

    def _training_loss(self, data):
        """Mean criterion of the current network on the training data.

        Computed where the network is, batch by batch (``max(batch_size, 1024)`` rows
        sliced from the data on the net's device): the batch means, weighted by the batch
        sizes, are summed in float64 on the device, and one scalar comes back. No output
        is kept beyond its batch (keeping them all fragments the heap: up to one hidden
        activation of all of X in extra resident memory). With sample weights, the
        weighted mean over all rows: ``sum(w * row loss) / sum(w)``.
        """
        net = self.net_
        y = data.y.to(net.device)
        w = None if data.sample_weight is None else data.sample_weight.to(net.device)
        total, start = None, 0
        with torch.no_grad():
            for out in net.forward_iter(data.X, training=False, device=net.device):
                stop = start + len(out)
                if w is None:
                    term = net.criterion_(out, y[start:stop]).double() * (stop - start)
                else:
                    rows = net.row_losses(out, y[start:stop]).double()
                    term = (rows * w[start:stop].double()).sum()
                total = term if total is None else total + term
                start = stop
        return float(total) / (start if w is None else float(w.double().sum()))

    def _print_pruning_line(self, report, call, n_calls):
        """One line per call of the engine; the last one with the training loss change."""
        where = f" (call {call}/{n_calls} of the gradual schedule)" if n_calls > 1 else ""
        line = (
            f"Pruning: method={self.method}, ratio={report.ratio:.4g}, removed "
            f"{report.n_removed}/{report.n_weights} weights ({report.sparsity:.1%}, "
            f"scope={self.scope}, {report.steps} step(s)){where} in {report.time_s:.2f}s"
        )
        if call == n_calls:
            line += (
                f"; train loss {self.loss_before_pruning_:.4f} -> "
                f"{self.loss_after_pruning_:.4f}"
            )
        self._progress_.note(line)

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


def _best(values, higher):
    """The best of ``values`` as scikit-learn's MLP tracks it: from -inf (``higher``) or
    +inf, replaced by each value that beats it (NaN never does)."""
    best = -np.inf if higher else np.inf
    for value in values:
        if (value > best) if higher else (value < best):
            best = value
    return float(best)
