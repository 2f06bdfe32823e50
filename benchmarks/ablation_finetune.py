"""Why EC-OBS's lead fades in fine-tuning (issue #22): an ablation with per-epoch losses.

Right after pruning EC-OBS is far ahead of magnitude pruning; after the default fifteen
epochs of fine-tuning the lead often disappears. Each *variant* changes one thing against
one-shot EC-OBS (``ecobs``) or one-shot magnitude pruning (``magnitude``), and every fit
records, after pruning and after every fine-tuning epoch, the training loss (whole training
split, evaluation mode), the test loss and the norms of the weights of each layer:

- selection against compensation: ``ecobs`` (EC-OBS's choice and update), ``magnitude``
  (neither), ``ecobs_sel_nocomp`` (EC-OBS's choice, kept weights and biases left as they
  were), ``mag_sel_ecobs_comp`` (magnitude's choice, EC-OBS's joint update of the kept
  weights and biases, layer by layer from the input): these two are methods of the
  engine's protocol defined here, passed as ``method=`` instances (nothing is registered);
- the state the compensation leaves: ``ecobs_damp*``, the damping of the joint update
  (multiples of the mean diagonal of the input covariance; the default is 0.01);
- fine-tuning itself: ``*_lr0.3`` / ``*_lr0.1`` (fine-tuning learning rate a fraction of
  the dense ``lr``), ``*_warm`` (the dense stage's Adam state kept instead of a fresh one),
  ``*_es`` (``early_stopping=True``: a 10% validation split, both stages);
- the default schedule (``*_gradual5``: five prunings, three epochs after each);
- whole units (``neuron_*``): structured EC-OBS (the next layer's kept weights move),
  structured EC (its bias only) and structured magnitude, with the same fine-tuning options.

Tasks (reduced from the issue's protocol to fit the time a run has; see RESULTS.md): digits
64-32-32-10 at r = 0.5 and 0.8 (15 + 15 epochs, batch 32), the diffusion-sorption surrogate
68-32-32-32-1 (40 simulations, noise 0) at r = 0.8 (batch 128); at unit granularity breast
cancer (standardised, (32, 32), 30 + 15 epochs, batch 16) at r = 0.8 and the surrogate (noise
0.01, 8 + 15 epochs, ``pde_units``) at r = 0.5; PReLU, Adam lr 1e-3, 3 seeds.

Run from the repository root::

    python benchmarks/ablation_finetune.py                  # the run of RESULTS.md
    python benchmarks/ablation_finetune.py --tiny --out-dir /tmp/x   # seconds (the tests)
    python benchmarks/ablation_finetune.py --plot-only

Outputs (``--out-dir``, default ``benchmarks/results/ablation_finetune``): ``curves.csv``
(one row per fit and epoch), ``results.csv`` (one row per fit: right after pruning and
final), one PNG per task, ratio and group of variants (training and test loss through
fine-tuning, median over seeds), ``summary.md``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
from _common import (
    PDE_SMALL,
    RESULTS_DIR,
    Log,
    classification_task,
    environment_line,
    fmt,
    load_task_data,
    parser,
    pde_task,
    run_parallel,
    select_tasks,
    shown,
    write_rows,
)

from sk_ecprune.engine import ECOBS, WeightScorer
from sk_ecprune.engine.masks import apply_mask, effective_weight, kept_mask, set_parameters
from sk_ecprune.engine.methods import LayerChange
from sk_ecprune.engine.scoring.ec_obs.procedure import layer_metrics, write_joint_update
from sk_ecprune.engine.selection import select

OUT_DIR = RESULTS_DIR / "ablation_finetune"


# ------------------------------------------------- the ablation's two methods
class ECOBSChoiceWithoutUpdate(ECOBS):
    """EC-OBS's removals; every kept weight and bias back at its value before pruning.

    EC-OBS runs as it does alone (each layer measured on the network as the earlier
    layers' updates left it, so the masks are EC-OBS's); once the last layer is pruned every
    layer's kept parameters are put back, so only the choice remains.
    """

    def plan(self, step):
        before = [(effective_weight(layer).clone(),
                   None if layer.bias is None else layer.bias.detach().clone())
                  for layer in step.layers]
        return super().plan(step), before

    def change(self, step, plan, index):
        ec_obs_plan, before = plan
        super().change(step, ec_obs_plan, index)
        if index == len(step.layers) - 1:  # after the last layer: the updates undone
            for layer, (weight, bias) in zip(step.layers, before):
                set_parameters(layer, weight, bias)  # the masks stay: removed weights zero
        return LayerChange()


class MagnitudeChoiceWithUpdate(WeightScorer):
    """Magnitude's removals (same scope), then EC-OBS's joint update of the kept weights.

    From the input layer on, every row's kept weights and bias get EC-OBS's joint optimum
    for magnitude's mask, measured on the network as the earlier layers left it (EC-OBS's
    default statistics: one Hessian per layer, damping 0.01).
    """

    def plan(self, step):
        weights = [effective_weight(layer).double() for layer in step.layers]
        magnitudes = [W.abs() for W in weights]
        keep = select(magnitudes, [kept_mask(layer) for layer in step.layers], step.target,
                      step.scope, step.layer_floor, magnitudes=magnitudes)
        return weights, keep

    def change(self, step, plan, index):
        weights, keep = plan
        layer = step.layers[index]
        metric = layer_metrics(step.module, step.layers, step.data, step.output_metric,
                               only=[index])[index]
        change = write_joint_update(layer, metric, weights[index], ~keep[index])
        apply_mask(layer, keep[index])
        return change


ONE_SHOT = dict(prune_steps=1, gradual=False)
GRADUAL = dict(prune_steps=5, gradual=True)
#: Both stages until the validation loss stalls (10% held out, patience 10), at most 200 + 100.
LONG_ES = dict(max_epochs=200, finetune_epochs=100, early_stopping=True, n_iter_no_change=10)
#: Variant -> (group, estimator parameters, fine-tuning options).
WEIGHT_VARIANTS = {
    "ecobs": ("selection", dict(method="ec_obs", **ONE_SHOT), {}),
    "magnitude": ("selection", dict(method="magnitude", **ONE_SHOT), {}),
    "ecobs_sel_nocomp": ("selection", dict(method=ECOBSChoiceWithoutUpdate(), **ONE_SHOT), {}),
    "mag_sel_ecobs_comp": ("selection", dict(method=MagnitudeChoiceWithUpdate(), **ONE_SHOT), {}),
    "ecobs_damp0.001": ("damping", dict(method=ECOBS(damp=0.001), **ONE_SHOT), {}),
    "ecobs_damp0.1": ("damping", dict(method=ECOBS(damp=0.1), **ONE_SHOT), {}),
    "ecobs_damp1": ("damping", dict(method=ECOBS(damp=1.0), **ONE_SHOT), {}),
    "ecobs_lr0.3": ("finetune", dict(method="ec_obs", **ONE_SHOT), dict(lr_factor=0.3)),
    "ecobs_lr0.1": ("finetune", dict(method="ec_obs", **ONE_SHOT), dict(lr_factor=0.1)),
    "magnitude_lr0.3": ("finetune", dict(method="magnitude", **ONE_SHOT), dict(lr_factor=0.3)),
    "magnitude_lr0.1": ("finetune", dict(method="magnitude", **ONE_SHOT), dict(lr_factor=0.1)),
    "ecobs_warm": ("finetune", dict(method="ec_obs", **ONE_SHOT), dict(warm=True)),
    "magnitude_warm": ("finetune", dict(method="magnitude", **ONE_SHOT), dict(warm=True)),
    "ecobs_es": ("finetune", dict(method="ec_obs", early_stopping=True, **ONE_SHOT), {}),
    "magnitude_es": ("finetune", dict(method="magnitude", early_stopping=True, **ONE_SHOT), {}),
    "ecobs_gradual5": ("default", dict(method="ec_obs", **GRADUAL), {}),
    "magnitude_gradual5": ("default", dict(method="magnitude", **GRADUAL), {}),
    "ecobs_gradual5_lr0.3": ("default", dict(method="ec_obs", **GRADUAL), dict(lr_factor=0.3)),
    "ecobs_gradual5_lr0.1": ("default", dict(method="ec_obs", **GRADUAL), dict(lr_factor=0.1)),
    "magnitude_gradual5_lr0.3": ("default", dict(method="magnitude", **GRADUAL),
                                 dict(lr_factor=0.3)),
    "ecobs_dense100": ("converged", dict(method="ec_obs", max_epochs=100, **ONE_SHOT), {}),
    "magnitude_dense100": ("converged", dict(method="magnitude", max_epochs=100, **ONE_SHOT),
                           {}),
    "ecobs_gradual5_dense100": ("converged", dict(method="ec_obs", max_epochs=100, **GRADUAL),
                                {}),
    "magnitude_gradual5_dense100": ("converged", dict(method="magnitude", max_epochs=100,
                                                      **GRADUAL), {}),
    "ecobs_es_long": ("stopped", dict(method="ec_obs", **LONG_ES, **ONE_SHOT), {}),
    "magnitude_es_long": ("stopped", dict(method="magnitude", **LONG_ES, **ONE_SHOT), {}),
    "ecobs_gradual5_es_long": ("stopped", dict(method="ec_obs", **LONG_ES, **GRADUAL), {}),
    "magnitude_gradual5_es_long": ("stopped", dict(method="magnitude", **LONG_ES, **GRADUAL),
                                   {}),
}
NEURON = dict(granularity="neuron")
NEURON_VARIANTS = {
    "neuron_ecobs": ("selection", dict(method="ec_obs", **NEURON, **ONE_SHOT), {}),
    "neuron_ec": ("selection", dict(method="ec", **NEURON, **ONE_SHOT), {}),
    "neuron_magnitude": ("selection", dict(method="magnitude", **NEURON, **ONE_SHOT), {}),
    "neuron_ecobs_damp0.1": ("damping", dict(method="ec_obs", **NEURON, **ONE_SHOT),
                             dict(neuron_damp=0.1)),
    "neuron_ecobs_damp1": ("damping", dict(method="ec_obs", **NEURON, **ONE_SHOT),
                           dict(neuron_damp=1.0)),
    "neuron_ecobs_lr0.3": ("finetune", dict(method="ec_obs", **NEURON, **ONE_SHOT),
                           dict(lr_factor=0.3)),
    "neuron_ecobs_lr0.1": ("finetune", dict(method="ec_obs", **NEURON, **ONE_SHOT),
                           dict(lr_factor=0.1)),
    "neuron_magnitude_lr0.3": ("finetune", dict(method="magnitude", **NEURON, **ONE_SHOT),
                               dict(lr_factor=0.3)),
    "neuron_ecobs_warm": ("finetune", dict(method="ec_obs", **NEURON, **ONE_SHOT),
                          dict(warm=True)),
    "neuron_ecobs_es": ("finetune", dict(method="ec_obs", early_stopping=True, **NEURON,
                                         **ONE_SHOT), {}),
    "neuron_magnitude_es": ("finetune", dict(method="magnitude", early_stopping=True,
                                             **NEURON, **ONE_SHOT), {}),
    "neuron_ecobs_gradual5": ("default", dict(method="ec_obs", **NEURON, **GRADUAL), {}),
    "neuron_magnitude_gradual5": ("default", dict(method="magnitude", **NEURON, **GRADUAL), {}),
    "neuron_ecobs_gradual5_lr0.3": ("default", dict(method="ec_obs", **NEURON, **GRADUAL),
                                    dict(lr_factor=0.3)),
    "neuron_ecobs_dense100": ("converged", dict(method="ec_obs", max_epochs=100, **NEURON,
                                                **ONE_SHOT), {}),
    "neuron_magnitude_dense100": ("converged", dict(method="magnitude", max_epochs=100,
                                                    **NEURON, **ONE_SHOT), {}),
    "neuron_ecobs_gradual5_dense100": ("converged", dict(method="ec_obs", max_epochs=100,
                                                         **NEURON, **GRADUAL), {}),
    "neuron_ecobs_es_long": ("stopped", dict(method="ec_obs", **LONG_ES, **NEURON, **ONE_SHOT),
                             {}),
    "neuron_magnitude_es_long": ("stopped", dict(method="magnitude", **LONG_ES, **NEURON,
                                                 **ONE_SHOT), {}),
    "neuron_ecobs_gradual5_es_long": ("stopped", dict(method="ec_obs", **LONG_ES, **NEURON,
                                                      **GRADUAL), {}),
}
#: Variants with another dense stage are compared with magnitude's with the same one.
SUFFIXES = ("_dense100", "_es_long")
#: The reference each variant's final test loss is compared with, seed by seed.
REFERENCE = {"weight": "magnitude", "neuron": "neuron_magnitude"}
CURVE_COLUMNS = ["task", "variant", "group", "seed", "ratio", "epoch", "phase", "train_loss",
                 "test_loss", "test_accuracy", "weight_norm", "layer_norms", "lr"]
RESULT_COLUMNS = ["task", "variant", "group", "seed", "ratio", "pruned_train_loss",
                  "pruned_test_loss", "train_loss", "test_loss", "test_accuracy",
                  "best_test_loss", "best_epoch", "epochs", "sparsity", "fit_time_s"]


# ----------------------------------------------------------------------------- tasks
def breast_cancer_task(*, seeds, ratios, epochs=30, finetune_epochs=15, n_rows=None):
    """Breast cancer, standardised, (32, 32), batch 16: the issue's 'new user' setting."""
    return dict(name="breast_cancer_units", kind="classification", dataset="breast_cancer",
                hidden=(32, 32), noise=None, seeds=list(seeds), ratios=list(ratios),
                epochs=epochs, finetune_epochs=finetune_epochs, batch_size=16,
                granularity="neuron", n_rows=n_rows)


def configuration(mode):
    """Tasks of a mode: ``run`` (RESULTS.md) or ``tiny`` (the tests)."""
    if mode == "run":
        seeds = range(3)
        return [dict(classification_task("digits", "digits", seeds=seeds, ratios=(0.5, 0.8)),
                     granularity="weight"),
                dict(pde_task(PDE_SMALL, 0.0, n_simulations=40, seeds=seeds, ratios=(0.8,)),
                     granularity="weight"),
                breast_cancer_task(seeds=seeds, ratios=(0.8,)),
                dict(pde_task(PDE_SMALL, 0.01, n_simulations=40, seeds=seeds, ratios=(0.5,),
                              epochs=8), name="pde_units", finetune_epochs=15,
                     granularity="neuron")]
    if mode == "tiny":
        return [dict(classification_task("digits", "digits", seeds=[0], ratios=(0.8,),
                                         epochs=2, n_rows=300), granularity="weight"),
                breast_cancer_task(seeds=[0], ratios=(0.8,), epochs=2, finetune_epochs=2,
                                   n_rows=200)]
    raise ValueError(f"Unknown mode {mode!r}.")


def variants_for(task, names=None):
    table = NEURON_VARIANTS if task["granularity"] == "neuron" else WEIGHT_VARIANTS
    return {name: spec for name, spec in table.items() if names is None or name in names}


def load_data(task):
    """(X_train, X_test, y_train, y_test); regression inputs standardised on the training
    split (what the benchmarks' pipeline does), as are breast cancer's."""
    from sklearn.preprocessing import StandardScaler

    if task["dataset"] == "breast_cancer":
        from sklearn.datasets import load_breast_cancer
        from sklearn.model_selection import train_test_split

        X, y = load_breast_cancer(return_X_y=True)
        if task.get("n_rows"):
            X, y = X[: task["n_rows"]], y[: task["n_rows"]]
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y,
                                                  random_state=0)
    else:
        X_tr, X_te, y_tr, y_te, _ = load_task_data(task)
    if task["kind"] == "regression" or task["dataset"] == "breast_cancer":
        scaler = StandardScaler().fit(X_tr)
        X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    return (np.asarray(X_tr, dtype=np.float32), np.asarray(X_te, dtype=np.float32),
            y_tr, y_te)


class EpochLosses:
    """Measures a net on the training and test splits; keeps one row per measurement."""

    def __init__(self, X_train, y_train, X_test, y_test, classification):
        import torch

        def targets(y):
            if classification:
                return torch.as_tensor(np.searchsorted(np.unique(y_train), y), dtype=torch.long)
            return torch.as_tensor(np.asarray(y, dtype=np.float32).reshape(len(y), -1))

        self.X_train, self.X_test = torch.as_tensor(X_train), torch.as_tensor(X_test)
        self.y_train, self.y_test = targets(y_train), targets(y_test)
        self.classification = classification
        self.rows, self.epoch = [], 0

    def measure(self, net, phase):
        import torch

        module = net.module_
        was_training = module.training
        module.eval()
        with torch.no_grad():
            train = float(net.criterion_(module(self.X_train), self.y_train))
            out = module(self.X_test)
            test = float(net.criterion_(out, self.y_test))
            accuracy = (float((out.argmax(1) == self.y_test).double().mean())
                        if self.classification else None)
            norms = [float(m.weight.norm()) for m in module.modules()
                     if isinstance(m, torch.nn.Linear)]
        module.train(was_training)
        lr = net.optimizer_.param_groups[0]["lr"] if hasattr(net, "optimizer_") else None
        self.rows.append(dict(epoch=self.epoch, phase=phase, train_loss=train, test_loss=test,
                              test_accuracy=accuracy, weight_norm=float(np.sqrt(np.sum(
                                  np.square(norms)))),
                              layer_norms=" ".join(f"{n:.4g}" for n in norms), lr=lr))


def _epoch_callback(recorder):
    from skorch.callbacks import Callback

    class RecordEpoch(Callback):
        def on_epoch_end(self, net, **kwargs):
            recorder.epoch += 1
            recorder.measure(net, "finetune")

    return RecordEpoch()


def ablated_class(base):
    """``base`` (a pruned-MLP estimator class) with the ablation's hooks: per-epoch
    measurements, the fine-tuning learning rate and a warm optimizer."""

    class Ablated(base):
        def _start_finetuning(self):
            options = self._ablation
            dense_optimizer = self.net_.optimizer_
            super()._start_finetuning()
            if options.get("warm"):
                self.net_.optimizer_ = dense_optimizer
            for group in self.net_.optimizer_.param_groups:
                group["lr"] = self.lr * options.get("lr_factor", 1.0)
            self.net_.callbacks.append(("record_epoch", _epoch_callback(options["recorder"])))
            self.net_.initialize_callbacks()

        def _prune(self, data, ratio, steps):
            recorder = self._ablation["recorder"]
            if not recorder.rows:
                recorder.measure(self.net_, "dense")
            report = super()._prune(data, ratio, steps)
            recorder.measure(self.net_, "pruned")
            return report

    Ablated.__name__ = Ablated.__qualname__ = f"Ablated{base.__name__}"
    return Ablated


def run_job(task, data, job, memory, threads=1):
    """Fit one variant at one ratio and seed; return its per-epoch rows and its result."""
    import torch

    from sk_ecprune import PrunedMLPClassifier, PrunedMLPRegressor
    from sk_ecprune.engine import neurons

    torch.set_num_threads(threads)
    name, ratio, seed = job
    group, params, options = variants_for(task)[name]
    classification = task["kind"] == "classification"
    X_tr, X_te, y_tr, y_te = data
    recorder = EpochLosses(X_tr, y_tr, X_te, y_te, classification)
    base = PrunedMLPClassifier if classification else PrunedMLPRegressor
    settings = dict(hidden_layer_sizes=task["hidden"], activation="prelu", optimizer="adam",
                    lr=1e-3, max_epochs=task["epochs"],
                    finetune_epochs=task.get("finetune_epochs", task["epochs"]),
                    batch_size=task["batch_size"], random_state=int(seed), prune_ratio=ratio,
                    memory=memory, n_iter_no_change=None, weight_decay=0.0)
    estimator = ablated_class(base)(**{**settings, **params})
    estimator._ablation = dict(options, recorder=recorder)
    original = neurons.layer_metrics
    if "neuron_damp" in options:  # the structured update's damping (a module-level default)
        neurons.layer_metrics = partial(original, damp=options["neuron_damp"])
    start = time.perf_counter()
    try:
        estimator.fit(X_tr, y_tr)
    finally:
        neurons.layer_metrics = original
    elapsed = time.perf_counter() - start
    recorder.measure(estimator.net_, "final")  # early stopping restores its best epoch
    key = dict(task=task["name"], variant=name, group=group, seed=seed, ratio=ratio)
    curves = [dict(key, **row) for row in recorder.rows]
    return curves, dict(key, **_result(recorder.rows, estimator.sparsity_, elapsed))


def _result(rows, sparsity, elapsed):
    pruned = [r for r in rows if r["phase"] == "pruned"][-1]
    final = rows[-1]
    # epochs at the final sparsity (a gradual schedule's earlier ones are less pruned)
    tuned = [r for r in rows if r["phase"] == "finetune" and r["epoch"] > pruned["epoch"]]
    best = min(tuned, key=lambda r: r["test_loss"]) if tuned else final
    return dict(pruned_train_loss=pruned["train_loss"], pruned_test_loss=pruned["test_loss"],
                train_loss=final["train_loss"], test_loss=final["test_loss"],
                test_accuracy=final["test_accuracy"], best_test_loss=best["test_loss"],
                best_epoch=best["epoch"], epochs=len(tuned), sparsity=sparsity,
                fit_time_s=elapsed)


def run_task(task, names, n_jobs, memory_dir, log):
    """Every variant of ``task``: one fit per (variant, ratio, seed)."""
    import os

    data = load_data(task)
    memory = os.path.join(memory_dir, task["name"])
    jobs = [(name, ratio, seed) for name in variants_for(task, names)
            for ratio in task["ratios"] for seed in task["seeds"]]
    log(f"[{task['name']}] {len(jobs)} fits, n_train={len(data[0])}")
    start = time.perf_counter()
    # the first variant alone first: its fits fill the dense-stage cache for the others
    first = [job for job in jobs if job[0] == jobs[0][0]]
    out = run_parallel(run_job, task, data, first, n_jobs, memory=memory)
    out += run_parallel(run_job, task, data, [j for j in jobs if j not in first], n_jobs,
                        memory=memory)
    log(f"[{task['name']}] done in {time.perf_counter() - start:.0f} s")
    return [row for curves, _ in out for row in curves], [result for _, result in out]


# ------------------------------------------------------------------- figures, tables
GROUP_REFERENCES = {"selection": (), "damping": ("ecobs",), "finetune": ("ecobs", "magnitude"),
                    "default": ("ecobs", "magnitude"), "converged": (), "stopped": ()}


def plot_curves(curves, out_dir, log):
    """One figure per task, ratio and group: median training and test loss per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    for (task, ratio, group), rows in curves.groupby(["task", "ratio", "group"]):
        prefix = "neuron_" if rows.variant.str.startswith("neuron").any() else ""
        extra = curves[(curves.task == task) & (curves.ratio == ratio)
                       & curves.variant.isin([prefix + v for v in GROUP_REFERENCES[group]])]
        rows = rows if group == "selection" else pd.concat([rows, extra])
        rows = rows[rows.phase.isin(["pruned", "finetune"])]
        figure, axes = plt.subplots(1, 2, figsize=(11, 4))
        for name, sub in rows.groupby("variant", sort=False):
            median = sub.groupby("epoch")[["train_loss", "test_loss"]].median()
            style = "--" if "magnitude" in name else "-"
            for ax, column in zip(axes, ("train_loss", "test_loss")):
                ax.plot(median.index, median[column], style, marker=".", label=name)
        for ax, title in zip(axes, ("training loss", "test loss")):
            ax.set(yscale="log", xlabel="epochs of fine-tuning (0 = right after pruning)",
                   title=title)
        axes[1].legend(fontsize=7)
        figure.suptitle(f"{task}, r = {ratio:g}, {group}: median over "
                        f"{rows.seed.nunique()} seeds", fontsize=10)
        figure.tight_layout()
        path = out_dir / f"{task}_r{ratio:g}_{group}.png"
        figure.savefig(path, dpi=72)
        plt.close(figure)
        log(f"wrote {shown(path)}")


def summary_tables(results):
    """Markdown per task and ratio: medians right after pruning and final (training loss
    next to test loss), and paired wins against the task's reference."""
    out = []
    for (task, ratio), rows in results.groupby(["task", "ratio"], sort=False):
        reference = REFERENCE["neuron" if rows.variant.str.startswith("neuron").any()
                              else "weight"]
        out += [f"### {task}, r = {ratio:g} ({rows.seed.nunique()} seeds)\n",
                "| variant | pruned: train / test | final: train / test | best epoch's test "
                f"(epoch) | test below {reference}'s (median ratio; ``_dense100`` and "
                "``_es_long``: below magnitude's with the same suffix) |",
                "|---|---|---|---|---|"]
        for name, sub in rows.groupby("variant", sort=False):
            # a variant with the longer dense training against magnitude's with the same
            ref_name = reference + next((x for x in SUFFIXES if name.endswith(x)), "")
            ref = rows[rows.variant == ref_name].set_index("seed").test_loss
            sub = sub.set_index("seed")
            pairs = [(sub.test_loss[s], ref[s]) for s in sub.index if s in ref.index]
            wins = (f"{sum(a < b for a, b in pairs)}/{len(pairs)} "
                    f"({np.median([a / b for a, b in pairs]):.2f})") if pairs else "–"
            out.append(f"| {name} | {fmt(sub.pruned_train_loss.median())} / "
                       f"{fmt(sub.pruned_test_loss.median())} | {fmt(sub.train_loss.median())} / "
                       f"{fmt(sub.test_loss.median())} | {fmt(sub.best_test_loss.median())} "
                       f"({sub.best_epoch.median():g}) | {wins} |")
        out.append("")
    return "\n".join(out)


def best_epochs(results, curves):
    """``results`` with the best test loss and its epoch recomputed from ``curves``, among
    the epochs at the final sparsity (after a gradual schedule's last pruning)."""
    keys = ["task", "variant", "seed", "ratio"]
    best = {}
    for key, rows in curves.groupby(keys):
        last = rows[rows.phase == "pruned"].epoch.max()
        tuned = rows[(rows.phase == "finetune") & (rows.epoch > last)]
        if len(tuned):
            row = tuned.loc[tuned.test_loss.idxmin()]
            best[key] = (row.test_loss, row.epoch)
    results = results.copy()
    for index, row in results.iterrows():
        if tuple(row[keys]) in best:
            results.loc[index, ["best_test_loss", "best_epoch"]] = best[tuple(row[keys])]
    return results


def make_outputs(out_dir, log):
    import pandas as pd

    curves = pd.read_csv(out_dir / "curves.csv")
    plot_curves(curves, out_dir, log)
    results = best_epochs(pd.read_csv(out_dir / "results.csv"), curves)
    (out_dir / "summary.md").write_text(summary_tables(results))
    log(f"wrote {shown(out_dir / 'summary.md')}")


def main(argv=None):
    cli = parser(__doc__.splitlines()[0], {"tiny": "seconds"})
    cli.set_defaults(n_jobs=2)
    cli.add_argument("--variants", nargs="+", help="only these variants")
    cli.add_argument("--out-dir", type=Path, default=OUT_DIR)
    cli.add_argument("--append", action="store_true", help="add rows to the CSV files")
    args = cli.parse_args(argv)
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    log = Log()
    if not args.plot_only:
        tasks = select_tasks(configuration(args.mode), args.tasks, cli)
        log(f"mode={args.mode} tasks={[t['name'] for t in tasks]} n_jobs={args.n_jobs} "
            + environment_line())
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as memory_dir:
            for index, task in enumerate(tasks):
                curves, results = run_task(task, args.variants, args.n_jobs, memory_dir, log)
                append = args.append or index > 0
                write_rows(out_dir / "curves.csv", curves, CURVE_COLUMNS, append)
                write_rows(out_dir / "results.csv", results, RESULT_COLUMNS, append)
        log(f"total wall time {time.perf_counter() - start:.0f} s")
    make_outputs(out_dir, log)
    if not args.plot_only:
        log.write(out_dir / "run.log", append=args.append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
