"""The numpydoc sections the two estimators share (parameters, fitted attributes)."""

_PARAMS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or array-like of int, default=(64, 64)
        Width of each hidden layer (at least 1); an int means one hidden layer and an
        empty tuple a linear model. Ignored when ``module`` is given.

    activation : {"relu", "prelu", "tanh", "logistic", "gelu", "silu", "identity"}, \
default="relu"
        Activation after each hidden layer. ``"prelu"`` learns one negative slope per
        layer (the paper's networks). The output layer has none. Ignored when ``module``
        is given.

    prune_ratio : float in [0, 1), default=0.5
        Fraction of the weights (biases excluded) removed after the dense training.
        0 keeps the dense network.

    method : str or sk_ecprune.engine.Method, default="ec_obs"
        Pruning method, a key of :data:`sk_ecprune.SCORERS` (the registry: each method's
        docstring says what it computes, and README's table lists the built-in ones), or a
        method instance with its options set, e.g. ``ECOBS(damp=0.1)`` (its options are
        then searchable as ``method__damp``). ``"ec_obs"`` compensates each removal with
        the unit's bias and its kept weights (an Optimal Brain Surgeon step), ``"ec"``
        (elimination-compensation) with the bias alone; methods registered with
        :func:`sk_ecprune.register_method` are accepted too.

    scope : {"global", "layer", "magnitude_budget"}, default="global"
        Rank all weights together, remove ``prune_ratio`` of each layer, or remove from
        each layer as many weights as global magnitude pruning would and let ``method``
        choose which (the layer budget of magnitude pruning, the choice of EC).

    granularity : {"weight", "neuron"}, default="weight"
        Remove single weights, or whole hidden units (each unit's incoming and outgoing
        weights; with ``method`` in :data:`sk_ecprune.NEURON_SCORERS`, compensated in the
        next layer by ``"ec"`` and ``"ec_obs"``). ``prune_ratio`` still counts removed
        weights, so a search over ``granularity`` compares equal budgets; with ``"neuron"``
        the achieved count is at or below the target (``sparsity_`` says what was
        achieved), ``scope`` must be ``"global"``, and after ``fit`` the network is compacted: ``net_.module_`` has the
        smaller layers (``hidden_layer_sizes_``) and ``predict`` runs it.

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

    max_epochs : int >= 0, default=200
        Most epochs of training of the dense network (scikit-learn's ``max_iter``); the
        stopping rule (``n_iter_no_change``, ``tol``) usually ends it earlier. 0 prunes
        the network as it is built: with a trained ``module`` instance, a network trained
        elsewhere.

    finetune_epochs : int >= 0, default=50
        Most epochs of fine-tuning after pruning, with a fresh optimizer and the removed
        weights held at zero, shared between the pruning steps with ``gradual`` (each
        segment has its own stopping rule). 0 returns the network right after pruning.

    quantize_bits : int in [2, 8] or None, default=None
        Round every weight of the final network (after pruning and fine-tuning, and after
        the compaction of ``granularity="neuron"``) to a symmetric grid of this many bits
        with one scale per output row: ``scale_i * {-qmax, ..., qmax}``,
        ``qmax = 2**(bits - 1) - 1``, the scale from the row's largest weight. Removed
        weights stay zero. The weights stay float32 on their grid (``predict``,
        ``coefs_`` and ``to_torch()`` are unchanged in kind); ``quantization_`` holds the
        integer codes and scales, and the ONNX export stores them as int8 (int4 for
        ``quantize_bits <= 4`` at opset 21 and above). None keeps float32 weights.

    quantize_method : str or quantiser instance, default="ec_obs"
        How the rounding errors are compensated, layer by layer from the input side, each
        layer measured on the network whose earlier layers are already rounded:
        ``"ec_obs"`` sweeps each row's columns and lets the bias and the not yet rounded
        weights absorb each rounding error under the unit's output-weighted statistics
        (those of ``method="ec_obs"``); ``"ec"`` rounds to nearest and shifts the bias by
        the expected change; ``"gptq"`` is GPTQ (Frantar et al. 2023: the same sweep with
        the unweighted input second moment, bias untouched); ``"rtn"`` rounds to nearest.
        Measured on the ``scoring_samples`` rows. A name of
        :data:`sk_ecprune.engine.QUANTIZERS` or an instance with its options (e.g.
        ``sk_ecprune.engine.ECOBSRounding(damp=0.1)``). Ignored when ``quantize_bits``
        is None.

    lr : float > 0, default=1e-3
        Learning rate of the dense training (and of the fine-tuning unless
        ``finetune_lr`` is given).

    finetune_lr : float > 0 or None, default=None
        Learning rate of the fine-tuning after pruning (its optimizer is a fresh one);
        None uses ``lr``. A smaller one keeps the fine-tuned network closer to what the
        pruning left: measured to help where the dense network already overfits
        (small data, whole units removed) and to hurt where the dense training had not
        converged (``benchmarks/RESULTS.md``, "Fine-tuning ablation").

    batch_size : int >= 1 or "auto", default="auto"
        Mini-batch size of training; ``"auto"`` is ``min(200, n_train)`` as in
        scikit-learn's MLP, ``n_train`` the rows left after the validation split.
        Prediction and loss evaluation use batches of ``max(batch_size, 1024)``.

    optimizer : {"adam", "adamw", "sgd"} or torch optimizer class, default="adam"
        Optimizer of both phases, created afresh for fine-tuning. Its other arguments
        are nested parameters, as in skorch: ``optimizer="sgd", optimizer__momentum=0.9``
        (they override ``lr`` and ``weight_decay`` where they name them).

    weight_decay : float >= 0, default=1e-4
        L2 penalty passed to the optimizer (decoupled for ``"adamw"``), on every
        parameter. Not part of ``loss_``. 0 is the paper's protocol.

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows and end each stage early when the
        validation loss stalls: the dense training, and each fine-tuning segment of the
        schedule (with ``gradual``, one after each pruning step) stops once the
        validation loss has not decreased by at least ``tol`` for ``n_iter_no_change``
        epochs, and its network goes back to the weights of its best epoch (the last
        one that improved by ``tol``; a fine-tuning segment keeps its removed weights
        at zero). ``max_epochs`` and ``finetune_epochs`` become upper bounds. The
        validation score of each epoch (R² or accuracy, as scikit-learn's MLP computes
        it) is recorded in ``validation_scores_``. Unlike scikit-learn's MLP, which
        watches that score, the stop watches the validation loss (the criterion
        training minimises), and stops after ``n_iter_no_change`` epochs without
        improvement where scikit-learn needs one more. Uses skorch's ``EarlyStopping``
        callback (``load_best=True``). Without it, each stage stops on a stalled
        training loss instead (as scikit-learn's MLP does), keeping its last epoch.

    validation_fraction : float in (0, 1) or None, default=None
        Fraction of the rows held out (stratified for the classifier) to report a
        validation loss each epoch, in both stages; with ``early_stopping`` also the
        rows it watches. None holds out nothing, except with ``early_stopping``, where
        None means 0.1 (scikit-learn's default): a float is honoured as given either way.
        With early stopping the validation set must have at least 2 rows.

    n_iter_no_change : int >= 1 or None, default=10
        Epochs in a row without an improvement by ``tol`` after which a stage (the dense
        training, each fine-tuning segment) stops (skorch's ``patience``): of the
        validation loss with ``early_stopping``, else of the training loss. None never
        stops early: every epoch runs (the paper's protocol), and with
        ``early_stopping`` the best epoch is still restored.

    tol : float >= 0, default=1e-4
        The least decrease that counts as an improvement, **relative** to the best loss
        so far: an epoch improves when its loss is below ``(1 - tol)`` times the loss of
        the last improving epoch. scikit-learn's ``tol`` is absolute; a relative one
        behaves alike for losses of any scale (a PDE surrogate's mean squared error of
        1e-4 never decreases by an absolute 1e-4, so scikit-learn's rule stops it
        long before it converges; ``benchmarks/RESULTS.md``).

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
        0 is silent (the net carries no printing callback). 1 prints a line as each stage
        starts (the dense training, each pruning call, each fine-tuning segment), with
        the time spent and an estimate of the time to the end of the fit, a line per
        epoch (numbered within its stage and labelled with it, every number the epoch
        recorded, the losses and the scores of callbacks such as ``EpochScoring``), the
        result of each pruning call, and a last line with the total time. Plain text,
        through the ``print`` in effect when each line is printed (Ray's and Jupyter's
        capture work). 2 also shows a tqdm progress bar over the batches of each epoch
        (skorch's ``ProgressBar``) on standard error.

    memory : str, joblib.Memory or None, default=None
        Cache of the trained dense network, as ``Pipeline(memory=...)``: a directory or
        a :class:`joblib.Memory`. Fits that differ only in ``prune_ratio``, ``method``,
        ``scope``, ``prune_steps``, ``gradual``, ``layer_floor``, ``scoring_samples``,
        ``output_metric``, ``finetune_epochs``, ``finetune_lr``, ``quantize_bits``,
        ``quantize_method`` or ``verbose`` (for example
        the grid points of a ``GridSearchCV`` on one fold) train the dense network once
        and load it afterwards; any other parameter, the data, the seed, the versions
        of Python, torch, skorch, scikit-learn or numpy, or sk_ecprune's source start
        a new entry.
        The sample weights given to ``fit`` are part of the key too, and ``tol`` only
        where a stopping rule acts (``n_iter_no_change`` not None or
        ``early_stopping``).
        A cached fit equals the uncached one to rounding and a cache hit is bit for bit
        its miss: the entry also holds the state of the batch-order generator. Used
        only with an int (or RandomState) ``random_state``; with None every fit differs
        and nothing is cached. An entry that cannot be read or fails its checksum is
        trained again with a warning, and a directory that cannot be written costs a
        warning and a fit without the cache. Entries are not removed automatically (clear
        them with ``joblib.Memory(path).clear()``); on a filesystem shared by all
        workers, the cache serves a distributed search. ``module``, ``callbacks`` and
        the nested parameters are part of the key (with the source of the module's and
        the callbacks' classes, and a module instance's weights).

    module : None, torch.nn.Module class or instance, default=None
        The network, with skorch's meaning. None is the package's MLP of
        ``hidden_layer_sizes`` and ``activation``. A class is built with the
        ``module__*`` parameters (``module__width=32`` passes ``width=32``), plus
        ``n_features`` (``n_features_in_``) and ``n_outputs`` (the targets, or one logit
        per class) when its constructor takes arguments of those names and they are not
        given; its initial weights are drawn from torch's generator seeded from
        ``random_state`` (its state is restored afterwards). An instance is used as it
        is (a copy: the parameter is never changed, and ``clone`` deep-copies it); with
        ``max_epochs=0`` a trained one is pruned and fine-tuned without dense training.
        The module maps a float32 batch ``(n, n_features_in_)`` to ``(n, n_outputs)``
        (checked before training). Every ``nn.Linear`` applied once per sample can be
        pruned (``granularity="weight"``); ``granularity="neuron"``, ``to_torch()`` and
        the ONNX export need a plain chain: an ``nn.Sequential`` of ``nn.Linear`` layers
        and elementwise modules (activations, ``nn.Dropout``), or a module whose
        ``sequential_chain()`` returns one (``sk_ecprune.compact``), and refuse
        other modules with an error that says so.

    callbacks : list of skorch callbacks or (name, callback) pairs, default=None
        Added to every training stage (the dense training and each fine-tuning
        segment), as skorch's ``callbacks``: ``LRScheduler``, ``EpochScoring``,
        ``GradientNormClipping``, ``Checkpoint``, ... Each stage gets fresh copies (the
        parameter is never changed); their records are in ``history_dense_`` and
        ``history_finetune_``. They run after the package's own callbacks and before the
        one that holds removed weights at zero, which acts last after every optimizer
        step. Their parameters are nested parameters: ``callbacks__<name>__<param>``
        (an unnamed callback is named by its class). skorch's ``EarlyStopping`` is
        refused: use ``early_stopping=True``.

    **kwargs : nested parameters
        ``module__*``, ``optimizer__*`` and ``callbacks__<name>__*``, as in skorch:
        stored by the constructor, listed by ``get_params``, set by ``set_params``, so
        that ``clone`` and the searches vary them (``{"optimizer__momentum": [0, 0.9]}``).
        Other names are refused by ``fit``.
"""

_ATTRIBUTES_DOC = """
    net_ : skorch.NeuralNet
        The trained skorch network; ``net_.module_`` is the sparse torch module with
        plain weights (removed weights are exact zeros). Its callback
        ``"hold_removed_weights"`` keeps them at zero if ``net_`` is trained further.

    sparsity_ : float
        Achieved fraction of removed weights over all linear layers, counted in the
        network of ``hidden_layer_sizes`` (before any compaction).

    hidden_layer_sizes_ : tuple of int
        Widths of the hidden layers of the fitted ``net_.module_``: the constructor's for
        ``granularity="weight"``, the compacted ones for ``"neuron"``. For a ``module``
        that is not a plain chain, the ``out_features`` of its ``nn.Linear`` layers but
        the last, in module order.

    layer_sparsity_ : dict of str to float
        Fraction of zero weights of each linear layer, by module name.

    pruning_report_ : sk_ecprune.PruningReport or None
        The engine's report of the pruning (all steps); None when ``prune_ratio == 0``.

    loss_before_pruning_, loss_after_pruning_ : float
        Training loss (criterion on all of X) just before the first and just after the
        last pruning step.

    pruning_time_ : float
        Seconds spent scoring and removing weights (all steps).

    quantization_ : list of sk_ecprune.LayerQuantization or None
        With ``quantize_bits``, one record per ``nn.Linear`` of ``net_.module_`` in order
        (the layers of ``coefs_``): ``name``, ``bits``, ``method``, ``scales`` (float32,
        one per output row) and ``codes`` (int8, shape ``(out_features, in_features)``),
        with ``weight == codes * scales[:, None]`` exactly in float32 (``coefs_[i]`` is
        its transpose). None without quantisation. Describes the fitted network: training
        ``net_`` further moves the weights off their grids.

    quantization_time_ : float
        Seconds spent quantising (0.0 without ``quantize_bits``).

    model_bytes_ : int or None
        Size in bytes of the model's ONNX file, ``skl2onnx.to_onnx(est,
        X[:1].astype(np.float32))`` serialised (default options and opset; int8 or int4
        initializers for a quantised model, float32 otherwise): what a deployment ships,
        comparable across pruning ratios, granularities and bit widths (see README,
        "Quantisation", for a search that refits the smallest model within a tolerance
        of the best score). Computed on first access (one conversion); None when skl2onnx
        or onnx is not installed (``pip install sk_ecprune[onnx]``).

    history_dense_, history_finetune_ : skorch.history.History
        skorch's per-epoch history of the dense training and of the fine-tuning, all
        steps together (the latter is empty when ``finetune_epochs == 0``). With early
        stopping their epochs also hold ``"valid_score"``.

    coefs_ : list of ndarray of shape (n_in_i, n_out_i)
        Weights of each linear layer in scikit-learn's layout (``coefs_[i]`` maps layer
        i to layer i + 1: the transpose of ``nn.Linear.weight``), float32, read from
        the final ``net_.module_``'s ``nn.Linear`` layers in order; removed weights are
        zeros. Each access returns copies: changing them does not change the network.

    intercepts_ : list of ndarray of shape (n_out_i,)
        Biases of each linear layer, likewise.

    n_layers_ : int
        Number of layers, the input and output layers included (``len(coefs_) + 1``).

    n_iter_ : int
        Epochs run in all: the dense training and every fine-tuning segment.

    loss_ : float
        Training loss of the last epoch (the epoch mean of the mini-batch losses).

    loss_curve_ : list of float
        Training loss of every epoch, the dense training then the fine-tuning, in order.

    loss_curve_stages_ : list of str
        The stage of each epoch of ``loss_curve_`` (and of ``validation_scores_``):
        ``"dense"``, ``"fine-tuning"`` or, with a gradual schedule of k > 1 steps,
        ``"fine-tuning after pruning step t of k"``.

    best_loss_ : float or None
        Lowest training loss of ``loss_curve_`` (both stages); None with
        ``early_stopping``, as in scikit-learn.

    validation_scores_ : list of float or None
        With ``early_stopping``, scikit-learn's validation score of every epoch, both
        stages in order (R² for the regressor, accuracy for the classifier, weighted by
        the validation rows' sample weights): the score, not the loss; None without
        early stopping, as in scikit-learn (the histories hold ``"valid_loss"`` whenever
        ``validation_fraction`` is set).

    best_validation_score_ : float or None
        The highest of ``validation_scores_``; None without early stopping. The fitted
        network is the best epoch (by validation loss) of the last stage, whose score
        may be lower than this.

    n_features_in_ : int
        Number of features seen during ``fit``.

    feature_names_in_ : ndarray of str
        Feature names seen during ``fit``, defined only if X had string column names.
"""
