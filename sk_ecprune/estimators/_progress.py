"""Progress output of ``fit`` (``verbose``): stage lines, epoch lines, a batch progress bar.

- ``verbose=0``: the nets carry no printing callback at all (skorch's ``PrintLog`` is
  switched off), and ``fit`` prints nothing.
- ``verbose=1``: one line as each stage and each pruning step starts, with the time spent
  and an estimate of the time to the end of the fit (:class:`FitProgress`), and one line
  per epoch, numbered within its stage and labelled with it (:class:`EpochLog`). Plain
  text, no colour codes (skorch's table colours its columns even when the output is a file).
- ``verbose=2``: also a tqdm progress bar over each epoch's batches (:class:`BatchProgressBar`,
  skorch's ``ProgressBar``) on standard error.

Every line goes through :func:`echo` (the package's sink ``print_line``), which looks
``print`` up when it is called, not when the package is imported: tools that capture a worker's output (Ray, Jupyter) replace
``builtins.print``, and a sink bound at import (skorch's ``PrintLog(sink=print)``) would keep
printing to the original stream.
"""

from __future__ import annotations

import time
from numbers import Number

from skorch.callbacks import Callback, ProgressBar

from ._callbacks import print_line

__all__ = [
    "BatchProgressBar",
    "EpochLog",
    "FitProgress",
    "discard",
    "echo",
    "fit_progress",
    "progress_callbacks",
]

#: History keys the epoch line leaves out: counters and skorch's bookkeeping.
_NOT_SHOWN = frozenset({"epoch", "dur", "train_batch_count", "valid_batch_count"})


def echo(text: str) -> None:
    """Print ``text`` with the ``print`` in effect now (flushed), through the package's
    sink :func:`~._callbacks.print_line`."""
    print_line(text, flush=True)


def discard(*args, **kwargs) -> None:
    """A sink that prints nothing (the callbacks' messages with ``verbose=0``)."""


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(round(value)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class EpochLog(Callback):
    """One line per epoch: the stage, the epoch within the stage, the epoch's numbers.

    ``"fine-tuning after pruning step 2 of 5, epoch 1/3: train_loss=0.1234
    valid_loss=0.2345 (0.05s)"``. Every number the epoch recorded is shown (the losses,
    and the scores of callbacks such as skorch's ``EpochScoring``), skorch's booleans
    (``*_best``) and counters are not.

    Parameters
    ----------
    stage : str, default="dense training"
        Label of the current stage; the estimators set it before each training call.

    epochs : int or None, default=None
        Epochs the stage runs at most, shown as ``k/epochs``.

    sink : callable, default=echo
        Called with each line.
    """

    def __init__(self, stage="dense training", epochs=None, sink=echo):
        self.stage = stage
        self.epochs = epochs
        self.sink = sink

    def on_train_begin(self, net, **kwargs):
        self.first_epoch_ = len(net.history)  # epochs of earlier stages in this history

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        number = len(net.history) - getattr(self, "first_epoch_", 0)
        of = f"/{self.epochs}" if self.epochs else ""
        values = " ".join(
            f"{key}={value:.4g}" for key, value in row.items()
            if key not in _NOT_SHOWN and isinstance(value, Number) and not isinstance(value, bool)
        )
        self.sink(f"{self.stage}, epoch {number}{of}: {values} ({row.get('dur', 0.0):.2f}s)")


class BatchProgressBar(ProgressBar):
    """skorch's :class:`~skorch.callbacks.ProgressBar` (tqdm, on standard error), with the
    stage and epoch as its description.

    Parameters
    ----------
    stage : str, default="dense training"
        Label of the current stage; the estimators set it before each training call.

    batches_per_epoch, detect_notebook, postfix_keys
        As for skorch's ``ProgressBar``.
    """

    def __init__(self, stage="dense training", batches_per_epoch="auto",
                 detect_notebook=True, postfix_keys=None):
        super().__init__(batches_per_epoch=batches_per_epoch, detect_notebook=detect_notebook,
                         postfix_keys=postfix_keys)
        self.stage = stage

    def on_train_begin(self, net, **kwargs):
        self.first_epoch_ = len(net.history)

    def on_epoch_begin(self, net, **kwargs):
        super().on_epoch_begin(net, **kwargs)
        number = len(net.history) - getattr(self, "first_epoch_", 0)
        self.pbar_.set_description(f"{self.stage}, epoch {number}")


def progress_callbacks(verbose, stage, epochs):
    """The named printing callbacks of ``verbose`` for a net: none for 0."""
    callbacks = []
    if verbose >= 1:
        callbacks.append(("epoch_log", EpochLog(stage, epochs)))
    if verbose >= 2:
        callbacks.append(("progress_bar", BatchProgressBar(stage)))
    return callbacks


def fit_progress(estimator):
    """The :class:`FitProgress` of ``estimator.fit`` with ``verbose``; None without."""
    if not estimator.verbose:
        return None
    schedule = estimator._schedule()  # (ratio, steps, epochs) of each pruning call
    n_stages = 1 + sum(1 + (epochs > 0) for _, _, epochs in schedule)
    n_stages += 0 if schedule else int(estimator.finetune_epochs > 0)
    n_stages += getattr(estimator, "quantize_bits", None) is not None
    return FitProgress(n_stages, estimator.max_epochs + estimator.finetune_epochs,
                       len(schedule))


class FitProgress:
    """The stage lines of one ``fit``, with the time spent and the time still to go.

    The estimate is the epochs still to run times the mean duration of the epochs run so
    far (skorch's ``dur``), plus the pruning calls still to come times the mean duration
    of those done (an epoch's duration before the first); with early stopping it is an
    upper bound.

    Parameters
    ----------
    n_stages : int
        Stages of the fit: the dense training, each pruning call, each fine-tuning segment.

    n_epochs : int
        Epochs the fit runs at most (dense and fine-tuning).

    n_prunes : int
        Calls of the pruning engine.

    sink : callable, default=echo
    """

    def __init__(self, n_stages, n_epochs, n_prunes, sink=echo):
        self.n_stages, self.n_epochs, self.n_prunes = n_stages, n_epochs, n_prunes
        self.sink = sink
        self.started = time.perf_counter()
        self.stage = 0
        self.epochs_done, self.epoch_seconds = 0, 0.0
        self.prunes_done, self.prune_seconds = 0, 0.0

    def begin(self, text):
        """Print the line of the stage that starts now: ``[i/n] text (time)``."""
        self.stage += 1
        self.sink(f"[{self.stage}/{self.n_stages}] {text} ({self.timing()})")

    def begin_pruning(self, method, ratio, steps, call, n_calls):
        """The line of a call of the pruning engine, as it starts."""
        what = f"pruning step {call} of {n_calls}" if n_calls > 1 else "pruning"
        how = f"{steps} steps" if steps > 1 else "one step"
        self.begin(f"{what}: method={method}, {how} to {ratio:.4g} of the weights removed")

    def note(self, text):
        """Print a line that belongs to the current stage."""
        self.sink(text)

    def epochs(self, history):
        """Count the epochs of ``history`` (a stage's) as done."""
        self.epochs_done += len(history)
        self.epoch_seconds += float(sum(epoch.get("dur", 0.0) for epoch in history))

    def pruned(self, seconds):
        self.prunes_done += 1
        self.prune_seconds += float(seconds)

    def timing(self):
        """``"elapsed 1.2s, about 3.4s to go"`` (no estimate before the first epoch)."""
        elapsed = time.perf_counter() - self.started
        text = f"elapsed {_seconds(elapsed)}"
        epochs_left = max(self.n_epochs - self.epochs_done, 0)
        prunes_left = max(self.n_prunes - self.prunes_done, 0)
        if not epochs_left and not prunes_left:
            return text
        if not self.epochs_done:
            return text + ", estimate after the first epoch"
        per_epoch = self.epoch_seconds / self.epochs_done
        per_prune = self.prune_seconds / self.prunes_done if self.prunes_done else per_epoch
        left = epochs_left * per_epoch + prunes_left * per_prune
        return text + f", about {_seconds(left)} to go"

    def done(self, text):
        """Print the last line: ``text`` and the total time."""
        self.sink(f"{text} in {_seconds(time.perf_counter() - self.started)}")
