"""Progress output of ``fit``: stage lines as each stage starts, labelled epochs, time to
the end, a tqdm bar with ``verbose=2``, nothing with ``verbose=0``."""

import builtins
import re

import numpy as np
import pytest
from sklearn.datasets import make_regression
from skorch.callbacks import Callback

from sk_ecprune.estimators import PrunedMLPRegressor
from sk_ecprune.estimators._progress import FitProgress

FAST = dict(hidden_layer_sizes=(8, 8), max_epochs=3, finetune_epochs=6, prune_steps=3,
            batch_size=32,
            lr=1e-2, random_state=0)


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(n_samples=80, n_features=5, noise=0.1, random_state=0)
    return X, y / y.std()


class MarkTrainingStart(Callback):
    """Prints a marker when a training call starts, to see what was printed before it."""

    def on_train_begin(self, net, **kwargs):
        print("<train begins>")


def test_verbose_1_prints_each_stage_as_it_starts(reg_data, capsys):
    X, y = reg_data
    PrunedMLPRegressor(**FAST, verbose=1, callbacks=[MarkTrainingStart()]).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    stages = [line for line in lines if re.match(r"\[\d+/7\] ", line)]
    assert [re.match(r"\[(\d+)/7\] ([a-z -]+)", s).groups() for s in stages] == [
        ("1", "dense training"),
        ("2", "pruning step "), ("3", "fine-tuning after pruning step "),
        ("4", "pruning step "), ("5", "fine-tuning after pruning step "),
        ("6", "pruning step "), ("7", "fine-tuning after pruning step "),
    ]
    # each training stage's line comes before its training starts, and each pruning
    # step's line before the engine's result line
    for i, line in enumerate(lines):
        if line == "<train begins>":
            assert re.match(r"\[\d/7\] (dense training|fine-tuning)", lines[i - 1])
        if line.startswith("Pruning:"):
            assert re.match(r"\[\d/7\] pruning step", lines[i - 1])
    # epochs are numbered within their stage and labelled with it
    assert "dense training, epoch 3/3: train_loss=" in "\n".join(lines)
    tuning = [line for line in lines if line.startswith("fine-tuning after pruning step 2 of 3,")]
    assert [re.search(r"epoch (\d/\d)", line).group(1) for line in tuning] == ["1/2", "2/2"]
    # time spent and to go at each boundary (no estimate before an epoch has run)
    assert "estimate after the first epoch" in stages[0]
    assert all(re.search(r"elapsed [\d.]+s, about [\d.]+s to go\)$", s) for s in stages[1:])
    assert re.match(r"Fitted: sparsity 50.0%, .* in [\d.]+s$", lines[-1])
    assert "\x1b[" not in "\n".join(lines)  # no colour codes in captured output


def test_verbose_2_adds_a_progress_bar(reg_data, capsys):
    X, y = reg_data
    PrunedMLPRegressor(**FAST, verbose=2).fit(X, y)
    captured = capsys.readouterr()
    assert "dense training, epoch 1/3: train_loss" in captured.out
    assert "dense training, epoch 1" in captured.err  # tqdm writes to standard error
    assert "fine-tuning after pruning step 3 of 3, epoch 2" in captured.err
    assert re.search(r"\d+/3 \[", captured.err)  # 80 rows in batches of 32: 3 per epoch


def test_verbose_0_prints_nothing_and_has_no_printing_callback(reg_data, capsys):
    X, y = reg_data
    reg = PrunedMLPRegressor(**FAST).fit(X, y)
    assert capsys.readouterr() == ("", "")
    names = {name for name, _ in reg.net_.callbacks_}
    assert not names & {"print_log", "epoch_log", "progress_bar"}


def test_output_follows_a_replaced_print(reg_data, monkeypatch, capsys):
    # Ray and notebooks replace builtins.print in a worker; the lines must follow it
    X, y = reg_data
    seen = []
    monkeypatch.setattr(builtins, "print", lambda *args, **kwargs: seen.append(args[0]))
    PrunedMLPRegressor(**FAST, verbose=1).fit(X, y)
    monkeypatch.undo()
    assert capsys.readouterr().out == ""
    assert seen[0].startswith("[1/7] dense training") and seen[-1].startswith("Fitted:")


def test_the_estimate_is_the_remaining_work_at_the_measured_rates():
    lines = []
    progress = FitProgress(n_stages=3, n_epochs=10, n_prunes=2, sink=lines.append)
    progress.epochs([{"dur": 1.0}, {"dur": 3.0}])  # 2 s per epoch
    progress.begin("first")
    assert re.search(r"about 20.0s to go", lines[-1])  # 8 epochs + 2 prunes at 2 s
    progress.pruned(0.5)
    progress.begin("second")
    assert re.search(r"about 16.5s to go", lines[-1])  # 8 epochs at 2 s, 1 prune at 0.5 s
    assert np.isclose(progress.epoch_seconds, 4.0)
