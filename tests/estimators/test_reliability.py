"""A fit that returns is a fit that ran (issue #11): interrupts, divergence, threads, input.

Interrupts and divergence are injected through public means: an optimizer class whose
``step`` misbehaves after a number of steps (passed as ``optimizer=``), and a registered
scoring method that raises.
"""

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_blobs, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from sk_ecprune.engine import SCORERS, prune_model, score_weights
from sk_ecprune.estimators import PrunedMLPClassifier, PrunedMLPRegressor
from sk_ecprune.estimators._cache import DenseCacheWarning
from sk_ecprune.engine import MLP

# 64 rows in batches of 32: 2 optimizer steps per epoch.
FAST = dict(hidden_layer_sizes=(8, 8), max_epochs=4, finetune_epochs=4, lr=1e-2, batch_size=32)
DENSE_STEPS = 4 * 2
ESTIMATORS = [PrunedMLPRegressor, PrunedMLPClassifier]


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(n_samples=64, n_features=5, noise=0.1, random_state=0)
    return X, y / y.std()


@pytest.fixture(scope="module")
def clf_data():
    X, y = make_blobs(n_samples=64, n_features=4, centers=3, random_state=0)
    return X, y


def _data(Est, reg_data, clf_data):
    return reg_data if Est is PrunedMLPRegressor else clf_data


class FailingAdam(torch.optim.Adam):
    """Adam whose step number ``fail_at`` (counted over all instances) misbehaves.

    ``failure`` is ``"interrupt"`` (raise KeyboardInterrupt), ``"sigint"`` (send this
    process SIGINT, as Ctrl-C does) or ``"nan"`` (write NaN into the parameters: training
    diverges). A module-level class, so that the dense-stage cache can hash it; the
    attributes below are not part of the cache key.
    """

    fail_at = None
    failure = "interrupt"
    steps = 0

    def step(self, closure=None):
        type(self).steps += 1
        if type(self).steps == type(self).fail_at:
            if self.failure == "interrupt":
                raise KeyboardInterrupt
            if self.failure == "sigint":
                os.kill(os.getpid(), signal.SIGINT)
            if self.failure == "nan":
                loss = super().step(closure)
                with torch.no_grad():
                    for group in self.param_groups:
                        for p in group["params"]:
                            p.fill_(float("nan"))
                return loss
        return super().step(closure)


@pytest.fixture
def failing_adam(monkeypatch):
    """FailingAdam with a fresh step count; set ``fail_at`` (and ``failure``) in the test."""
    monkeypatch.setattr(FailingAdam, "steps", 0)
    monkeypatch.setattr(FailingAdam, "fail_at", None)
    monkeypatch.setattr(FailingAdam, "failure", "interrupt")
    return FailingAdam


def _assert_unfitted(est):
    """As unfitted as a freshly constructed estimator: no attribute beyond the params."""
    assert set(vars(est)) == set(vars(clone(est)))
    with pytest.raises(NotFittedError):
        check_is_fitted(est)


def _entries(path):
    return sorted(path.rglob("output.pkl"))


# ----------------------------------------------------------------------------- interrupts
@pytest.mark.parametrize("Est", ESTIMATORS)
@pytest.mark.parametrize(
    "fail_at, gradual",
    [(3, True), (DENSE_STEPS + 3, True), (DENSE_STEPS + 3, False)],
    ids=["dense", "fine-tuning-gradual", "fine-tuning-after-pruning"],
)
def test_an_interrupt_reaches_the_caller_and_leaves_nothing_fitted(
    Est, fail_at, gradual, failing_adam, reg_data, clf_data
):
    X, y = _data(Est, reg_data, clf_data)
    failing_adam.fail_at = fail_at
    est = Est(**FAST, optimizer=failing_adam, gradual=gradual, random_state=0)
    with pytest.raises(KeyboardInterrupt):
        est.fit(X, y)
    assert failing_adam.steps == fail_at  # nothing ran after the interrupt
    _assert_unfitted(est)


@pytest.mark.parametrize("Est", ESTIMATORS)
@pytest.mark.parametrize("fail_at", [3, DENSE_STEPS + 3], ids=["dense", "fine-tuning"])
def test_an_interrupt_with_early_stopping_on_reaches_the_caller(
    Est, fail_at, failing_adam, reg_data, clf_data
):
    # early stopping ends a stage with TrainingStopped, which the nets swallow; a real
    # interrupt must still come through (57 training rows: still 2 steps per epoch)
    X, y = _data(Est, reg_data, clf_data)
    failing_adam.fail_at = fail_at
    est = Est(**FAST, optimizer=failing_adam, early_stopping=True, random_state=0)
    with pytest.raises(KeyboardInterrupt) as caught:
        est.fit(X, y)
    assert type(caught.value) is KeyboardInterrupt
    assert failing_adam.steps == fail_at
    _assert_unfitted(est)
    failing_adam.steps, failing_adam.fail_at = 0, None  # and a stop on purpose is no error
    stopped = Est(**{**FAST, "max_epochs": 40}, optimizer=failing_adam, early_stopping=True,
                  n_iter_no_change=1, tol=1e3, random_state=0).fit(X, y)
    assert len(stopped.history_dense_) == 2  # epoch 1 sets the best, epoch 2 misses


def test_a_real_sigint_is_not_swallowed(failing_adam, reg_data):
    # Python's own Ctrl-C handler, as in a user's process: a library imported by an earlier
    # test of the session (a cluster, a worker pool) may have left another one installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _fit_interrupted_by_sigint(failing_adam, reg_data)
    finally:
        signal.signal(signal.SIGINT, previous)


def _fit_interrupted_by_sigint(failing_adam, reg_data):
    failing_adam.fail_at, failing_adam.failure = DENSE_STEPS + 1, "sigint"
    est = PrunedMLPRegressor(**FAST, optimizer=failing_adam, random_state=0)
    with pytest.raises(KeyboardInterrupt):
        est.fit(*reg_data)
    _assert_unfitted(est)


def test_an_interrupt_while_pruning_leaves_nothing_fitted(reg_data, monkeypatch):
    calls = []

    def interrupting(module, layers, data, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the third step of the schedule
            raise KeyboardInterrupt
        return SCORERS["magnitude"]().importance(module, layers, data, **kwargs)

    monkeypatch.setitem(SCORERS, "interrupting", interrupting)
    est = PrunedMLPRegressor(**FAST, method="interrupting", random_state=0)
    with pytest.raises(KeyboardInterrupt):
        est.fit(*reg_data)
    assert len(calls) == 3
    _assert_unfitted(est)


def test_a_failed_refit_leaves_no_attribute_of_either_fit(failing_adam, reg_data):
    est = PrunedMLPRegressor(**FAST, optimizer=failing_adam, random_state=0).fit(*reg_data)
    assert est.sparsity_ > 0
    failing_adam.steps, failing_adam.fail_at = 0, DENSE_STEPS + 2
    with pytest.raises(KeyboardInterrupt):
        est.set_params(prune_ratio=0.8).fit(*reg_data)
    _assert_unfitted(est)


def test_an_interrupted_dense_stage_is_never_cached(failing_adam, reg_data, tmp_path):
    X, y = reg_data
    params = dict(FAST, optimizer=failing_adam, random_state=0, memory=str(tmp_path))
    failing_adam.fail_at = 3
    with pytest.raises(KeyboardInterrupt):
        PrunedMLPRegressor(**params).fit(X, y)
    assert _entries(tmp_path) == []

    failing_adam.fail_at = None  # the same settings (same cache key), no interrupt
    cached = PrunedMLPRegressor(**params).fit(X, y)
    assert len(cached.history_dense_) == FAST["max_epochs"]
    assert len(_entries(tmp_path)) == 1
    plain = PrunedMLPRegressor(**{**params, "memory": None}).fit(X, y)
    np.testing.assert_allclose(cached.predict(X), plain.predict(X), rtol=1e-5, atol=1e-6)


def test_an_interrupt_after_the_dense_stage_keeps_its_complete_entry(
    failing_adam, reg_data, tmp_path
):
    X, y = reg_data
    params = dict(FAST, optimizer=failing_adam, random_state=0, memory=str(tmp_path))
    failing_adam.fail_at = DENSE_STEPS + 1
    est = PrunedMLPRegressor(**params)
    with pytest.raises(KeyboardInterrupt):
        est.fit(X, y)
    _assert_unfitted(est)
    assert len(_entries(tmp_path)) == 1  # the dense stage had finished: its entry is whole
    failing_adam.fail_at = None
    hit = PrunedMLPRegressor(**params).fit(X, y)
    assert len(hit.history_dense_) == FAST["max_epochs"]


# ----------------------------------------------------------------------------- divergence
@pytest.mark.parametrize("method", ["random", "ec", "magnitude"])
@pytest.mark.parametrize("prune_ratio", [0.0, 0.5])
def test_a_diverging_dense_training_raises_where_it_happens(method, prune_ratio, reg_data):
    X, y = reg_data
    est = PrunedMLPRegressor(
        **{**FAST, "lr": 1e3}, optimizer="sgd", method=method, prune_ratio=prune_ratio,
        random_state=0,
    )
    with pytest.raises(ValueError, match=r"diverged in the dense training.*epoch \d is .*lr=1000"):
        est.fit(X, y)
    _assert_unfitted(est)


def test_huge_but_finite_inputs_raise_instead_of_predicting_nan(reg_data):
    X, y = reg_data
    est = PrunedMLPRegressor(**FAST, prune_ratio=0.0, random_state=0)
    with pytest.raises(ValueError, match="diverged.*StandardScaler"):
        est.fit(X * 1e30, y)
    _assert_unfitted(est)


@pytest.mark.parametrize("gradual", [True, False])
def test_a_diverging_fine_tuning_names_its_stage(gradual, failing_adam, clf_data):
    failing_adam.fail_at, failing_adam.failure = DENSE_STEPS + 3, "nan"
    est = PrunedMLPClassifier(**FAST, optimizer=failing_adam, gradual=gradual, random_state=0)
    # 4 epochs over 5 steps: none after step 1, one after each later step; the NaN comes
    # in the second fine-tuning epoch, which follows step 3
    stage = "fine-tuning after pruning step 3 of 5" if gradual else "fine-tuning:"
    with pytest.raises(ValueError, match=f"diverged in {stage}.* epoch 2 "):
        est.fit(*clf_data)
    _assert_unfitted(est)


def test_non_finite_weights_after_the_last_step_are_caught(failing_adam, reg_data):
    # NaN written by the very last optimizer step: the epoch's loss was computed before
    # it, so only the check of the final network sees it.
    last = DENSE_STEPS + FAST["finetune_epochs"] * 2
    failing_adam.fail_at, failing_adam.failure = last, "nan"
    est = PrunedMLPRegressor(**FAST, optimizer=failing_adam, gradual=False, random_state=0)
    with pytest.raises(ValueError, match="non-finite parameters"):
        est.fit(*reg_data)
    _assert_unfitted(est)


def test_a_diverged_dense_stage_is_never_cached(reg_data, tmp_path):
    est = PrunedMLPRegressor(
        **{**FAST, "lr": 1e3}, optimizer="sgd", random_state=0, memory=str(tmp_path)
    )
    with pytest.raises(ValueError, match="diverged"):
        est.fit(*reg_data)
    assert _entries(tmp_path) == []


# -------------------------------------------------------------------------------- threads
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_seeded_fits_in_threads_equal_the_fit_alone(Est, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    params = dict(FAST, random_state=0, method="random", validation_fraction=0.25)
    alone = Est(**params).fit(X, y)
    torch_state = torch.get_rng_state()
    with ThreadPoolExecutor(2) as pool:
        fits = list(pool.map(lambda _: Est(**params).fit(X, y), range(4)))
    # torch's global generator was neither read nor advanced by any of the fits
    assert torch.equal(torch.get_rng_state(), torch_state)
    # Threads may run torch's kernels with other thread counts, hence a tolerance; a
    # shared generator (weights, batch order, random scores) moves results by 1e-3 to 1e-2.
    expected = alone.net_.module_.state_dict()
    for est in fits:
        for key, value in est.net_.module_.state_dict().items():
            torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            est.history_finetune_[:, "train_loss"], alone.history_finetune_[:, "train_loss"],
            rtol=1e-5,
        )


# ------------------------------------------------------------------------- clear errors
def test_the_engine_names_the_layer_that_cannot_take_X():
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    X = torch.randn(10, 5)
    for call in (
        lambda: score_weights(module, X, method="magnitude"),
        lambda: prune_model(module, X, ratio=0.5, method="ec"),
    ):
        with pytest.raises(ValueError, match=r"'0' of Sequential expects 4 input features but "
                                             r"receives 5 \(X has 5 columns\)"):
            call()


@pytest.mark.parametrize("ratio", [np.float32(0.5), np.float64(0.5), 0.5, 1 / 2])
def test_prune_model_accepts_every_real_number_type(ratio):
    module = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    report = prune_model(module, torch.randn(20, 4), ratio=ratio, method="magnitude",
                         layer_floor=np.float32(0.0))
    assert report.n_removed == 18


@pytest.mark.parametrize("bad", [torch.nn.Linear, dict])
def test_an_optimizer_class_that_is_not_one_is_refused(bad, reg_data):
    with pytest.raises(TypeError, match="optimizer=.*not a torch.optim.Optimizer subclass"):
        PrunedMLPRegressor(**FAST, optimizer=bad).fit(*reg_data)


def test_an_optimizer_factory_returning_something_else_is_refused(reg_data):
    with pytest.raises(TypeError, match="optimizer=.*built a list, not a torch.optim.Optimizer"):
        PrunedMLPRegressor(**FAST, optimizer=lambda params, lr: list(params)).fit(*reg_data)


def test_a_memory_that_cannot_be_created_trains_without_it(reg_data, tmp_path):
    X, y = reg_data
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    params = dict(FAST, random_state=0)
    with pytest.warns(DenseCacheWarning, match="cannot be used.*trained without it"):
        est = PrunedMLPRegressor(**params, memory=str(blocker / "cache")).fit(X, y)
    plain = PrunedMLPRegressor(**params).fit(X, y)
    np.testing.assert_allclose(est.predict(X), plain.predict(X), rtol=1e-5, atol=1e-6)


@contextlib.contextmanager
def _read_only(root):
    """Make the directories under ``root`` unwritable, for this process too.

    chmod for an ordinary user; root ignores permission bits, so for root the immutable
    attribute (chattr +i), which binds root as well; skip where neither is available.
    """
    directories = [root, *(p for p in root.rglob("*") if p.is_dir())]
    if os.geteuid() != 0:
        modes = {d: d.stat().st_mode for d in directories}
        for d in directories:
            d.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            yield
        finally:
            for d, mode in modes.items():
                d.chmod(mode)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a directory read-only")
    done = []
    try:
        for d in directories:
            if subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode:
                pytest.skip("running as root, and chattr +i is not permitted here")
            done.append(d)
        yield
    finally:
        for d in done:
            subprocess.run(["chattr", "-i", str(d)], capture_output=True)


def test_a_read_only_memory_still_serves_its_entries(reg_data, tmp_path):
    X, y = reg_data
    params = dict(FAST, random_state=0, memory=str(tmp_path))
    first = PrunedMLPRegressor(**params).fit(X, y)
    with _read_only(tmp_path):
        with warnings.catch_warnings():
            warnings.simplefilter("error", DenseCacheWarning)
            hit = PrunedMLPRegressor(**params).fit(X, y)
        assert hit.history_dense_[:, "dur"] == first.history_dense_[:, "dur"]  # loaded
        with pytest.warns(DenseCacheWarning, match="cannot be used"):
            miss = PrunedMLPRegressor(**{**params, "lr": 2e-2}).fit(X, y)  # cannot store it
        assert len(miss.history_dense_) == FAST["max_epochs"]
    assert len(_entries(tmp_path)) == 1


# ------------------------------------------------------------- closed form, when it holds
class ScaledMLP(MLP):
    """The package MLP with its output tripled: its forward is no longer the chain."""

    def forward(self, X):
        return 3 * super().forward(X)


def test_a_subclass_that_changes_forward_is_scored_by_autograd():
    torch.manual_seed(0)
    module = ScaledMLP(5, 2, (6, 4), activation="tanh").double()
    plain = MLP(5, 2, (6, 4), activation="tanh").double()
    plain.load_state_dict(module.state_dict())
    X = torch.randn(50, 5, dtype=torch.float64)
    scores = score_weights(module, X, method="ec").scores
    plain_scores = score_weights(plain, X, method="ec").scores
    # EC scores are squared output changes: a tripled output scores nine times higher
    for s, p in zip(scores, plain_scores):
        torch.testing.assert_close(s, 9 * p, rtol=1e-10, atol=1e-12)
