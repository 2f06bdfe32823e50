"""The estimators' tensor data path (issue #7): same batches, same results, no copies.

Behaviour only: the tensor path must give exactly what skorch's default path
(``skorch.dataset.Dataset`` + ``DataLoader``) gives, for training, validation split,
scoring and prediction. Speed is measured in ``benchmarks/bench_training.py``.
"""

import numpy as np
import pytest
import torch
from skorch import NeuralNetRegressor
from skorch.callbacks import Callback
from skorch.dataset import Dataset as SkorchDataset
from sklearn.datasets import make_blobs, make_regression
from torch.utils.data import DataLoader, Subset

from sk_ecprune.estimators import PrunedMLPClassifier, PrunedMLPRegressor, _build, _data
from sk_ecprune.estimators import _skorch_internals as internals
from sk_ecprune.estimators._data import TensorBatchIterator, TensorDataset
from sk_ecprune.engine import MLP
from sk_ecprune.estimators._net import FastPrunedNetRegressor, PrunedNetMixin

FAST = dict(hidden_layer_sizes=(8, 8), max_epochs=3, finetune_epochs=2, lr=1e-2, batch_size=32)

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(n_samples=75, n_features=5, noise=0.1, random_state=0)
    return X, y / y.std()


@pytest.fixture(scope="module")
def clf_data():
    X, y = make_blobs(n_samples=90, n_features=4, centers=3, random_state=0)
    return X, y


def _batches(iterator):
    return [(Xb.clone(), None if yb is None else yb.clone()) for Xb, yb in iterator]


def _assert_same_batches(ours, reference):
    assert len(ours) == len(reference)
    for (Xa, ya), (Xb, yb) in zip(ours, reference):
        assert torch.equal(Xa, Xb)
        assert torch.equal(ya, yb)


# ------------------------------------------------------------------------------- iterator
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("subset", [False, True])
@pytest.mark.parametrize("private_generator", [False, True])
def test_iterator_batches_and_random_draws_are_the_dataloaders(
    shuffle, drop_last, subset, private_generator
):
    X = torch.randn(53, 3)
    y = torch.arange(53)
    ours_ds, ref_ds = TensorDataset(X, y), SkorchDataset(X, y)
    if subset:
        indices = np.random.RandomState(0).permutation(53)[:41]
        ours_ds, ref_ds = Subset(ours_ds, indices), Subset(ref_ds, indices)
    options = dict(batch_size=8, shuffle=shuffle, drop_last=drop_last)

    def draws(make_loader):
        # three epochs through one loader, as skorch's fit loop does; returns the batches
        # and the state of the generator drawn from
        torch.manual_seed(3)
        generator = torch.Generator().manual_seed(5) if private_generator else None
        loader = make_loader(generator)
        batches = [_batches(loader) for _ in range(3)]
        return batches, (generator.get_state() if generator else torch.get_rng_state())

    ours, state_ours = draws(lambda g: TensorBatchIterator(ours_ds, generator=g, **options))
    reference, state_ref = draws(lambda g: DataLoader(ref_ds, generator=g, **options))
    assert torch.equal(state_ours, state_ref)
    iterator = TensorBatchIterator(ours_ds, **options)
    assert not iterator.uses_dataloader

    for epoch_ours, epoch_ref in zip(ours, reference):
        _assert_same_batches(epoch_ours, epoch_ref)
    assert len(iterator) == len(DataLoader(ref_ds, **options)) == len(ours[0])
    if shuffle:
        assert not torch.equal(ours[0][0][1], ours[1][0][1])


def test_iterator_gathers_in_blocks_with_the_same_batches(monkeypatch):
    # Shuffled batches are sliced from blocks of gathered rows; the block size must not
    # change the batches (here 3 batches per block, and a ragged last block).
    X, y = torch.randn(100, 4), torch.randn(100, 1)
    torch.manual_seed(0)
    whole = _batches(TensorBatchIterator(TensorDataset(X, y), batch_size=7, shuffle=True))
    monkeypatch.setattr(_data, "_GATHER_BYTES", 3 * 7 * 5 * 4)
    torch.manual_seed(0)
    blocks = _batches(TensorBatchIterator(TensorDataset(X, y), batch_size=7, shuffle=True))
    _assert_same_batches(blocks, whole)


def test_iterator_without_targets_yields_none():
    X = torch.randn(10, 2)
    batches = list(TensorBatchIterator(TensorDataset(X), batch_size=4))
    assert [len(Xb) for Xb, _ in batches] == [4, 4, 2]
    assert all(yb is None for _, yb in batches)
    assert torch.equal(torch.cat([Xb for Xb, _ in batches]), X)


def test_iterator_falls_back_to_a_dataloader():
    X = torch.randn(10, 2)
    # data the tensor path does not hold (a dict with strings), or a DataLoader option
    # it lacks
    names = np.array(list("abcdefghij"))
    dict_data = TensorDataset({"X": X.numpy(), "names": names}, np.zeros(10, dtype=np.float32))
    assert not dict_data.is_tensor
    for iterator in (
        TensorBatchIterator(dict_data, batch_size=4),
        TensorBatchIterator(TensorDataset(X), batch_size=4, num_workers=0),
        TensorBatchIterator(SkorchDataset(X), batch_size=4),
    ):
        assert iterator.uses_dataloader
        assert len(iterator) == 3 and len(list(iterator)) == 3


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("subset", [False, True])
def test_a_dict_of_arrays_is_sliced_as_the_dataloader_batches_it(shuffle, subset):
    # what a fit with sample weights gives the net: {"X": X, "sample_weight": w}
    X, w = torch.randn(41, 3), torch.rand(41)
    y = torch.arange(41)
    ours = TensorDataset({"X": X.numpy(), "sample_weight": w}, y)
    assert ours.is_tensor and set(ours.X) == {"X", "sample_weight"}
    reference = SkorchDataset({"X": X, "sample_weight": w}, y)
    if subset:
        rows = np.random.RandomState(0).permutation(41)[:17]
        ours, reference = Subset(ours, rows), Subset(reference, rows)
    batches = []
    for dataset, iterator in ((ours, TensorBatchIterator), (reference, DataLoader)):
        loader = iterator(dataset, batch_size=5, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(3))
        assert iterator is DataLoader or not loader.uses_dataloader
        batches.append(list(loader))
    assert len(batches[0]) == len(batches[1]) == (4 if subset else 9)
    for (Xa, ya), (Xb, yb) in zip(*batches):
        assert set(Xa) == set(Xb) == {"X", "sample_weight"}
        for key in Xa:
            assert torch.equal(Xa[key], Xb[key]), key
        assert torch.equal(ya, yb)
    with pytest.raises(ValueError, match="inconsistent lengths: X: 41, sample_weight: 40"):
        TensorDataset({"X": X, "sample_weight": w[:40]}, y)


def test_dataset_shares_memory_with_float32_input():
    X = np.random.RandomState(0).randn(20, 3).astype(np.float32)
    y = np.arange(20)
    dataset = TensorDataset(X, y, device="cpu")
    assert dataset.is_tensor
    assert dataset.X.data_ptr() == X.__array_interface__["data"][0]
    assert dataset.y.data_ptr() == y.__array_interface__["data"][0]
    dataset.X[0, 0] = 123.0  # a view, not a copy (the estimators never write to it)
    assert X[0, 0] == 123.0
    with pytest.raises(ValueError, match="inconsistent lengths"):
        TensorDataset(X, y[:5])


def test_fit_does_not_copy_float32_training_data(reg_data, monkeypatch):
    # The training dataset wraps the array the estimator validated, not a copy of it.
    X = np.ascontiguousarray(reg_data[0], dtype=np.float32)
    seen = []
    original = _data.TensorDataset.__init__

    def spy(self, X_, *args, **kwargs):
        original(self, X_, *args, **kwargs)
        seen.append(self.X.data_ptr())

    monkeypatch.setattr(_data.TensorDataset, "__init__", spy)
    PrunedMLPRegressor(**FAST, random_state=0).fit(X, reg_data[1])
    assert seen and set(seen) == {X.__array_interface__["data"][0]}


# ----------------------------------------------------------------------------- estimators
@pytest.mark.parametrize(
    "Est, params",
    [
        (PrunedMLPRegressor, {}),
        (PrunedMLPRegressor, {"validation_fraction": 0.2, "method": "gradient_magnitude"}),
        (PrunedMLPClassifier, {}),
        (PrunedMLPClassifier, {"validation_fraction": 0.25, "output_metric": "fisher"}),
        (PrunedMLPRegressor, {"optimizer": "sgd", "batch_size": 7, "method": "random"}),
    ],
)
def test_tensor_path_gives_the_default_paths_results(
    Est, params, reg_data, clf_data, monkeypatch
):
    # Two code paths, so equal only up to rounding: the sliced batches are views at other
    # memory offsets than the DataLoader's stacked copies, and on some CPUs the matrix
    # kernels round such inputs differently in the last bit. What must agree exactly is
    # what decides the result (batch sizes and counts, the pruned positions); the weights
    # and losses agree to a tolerance far below what a different batch order, a skipped
    # epoch or a missed mask would change (about 1e-2 on these fits).
    X, y = reg_data if Est is PrunedMLPRegressor else clf_data
    ours = Est(**{**FAST, **params}, random_state=0).fit(X, y)
    assert isinstance(ours.net_.get_iterator(ours.net_.get_dataset(X)), TensorBatchIterator)

    monkeypatch.setattr(_build, "_data_path_options", dict)  # skorch's Dataset, DataLoader
    monkeypatch.setattr(internals, "ENABLED", False)  # and skorch's own epoch loop
    reference = Est(**{**FAST, **params}, random_state=0).fit(X, y)
    assert not isinstance(reference.net_, internals.InternalsMixin)
    assert isinstance(reference.net_, PrunedNetMixin)
    assert isinstance(reference.net_.get_iterator(reference.net_.get_dataset(X)), DataLoader)

    state, ref_state = ours.net_.module_.state_dict(), reference.net_.module_.state_dict()
    for key in ref_state:
        torch.testing.assert_close(state[key], ref_state[key], rtol=1e-4, atol=1e-5)
        assert torch.equal(state[key] == 0, ref_state[key] == 0), key  # same removed weights
    for history in ("history_dense_", "history_finetune_"):
        ours_h, ref_h = getattr(ours, history), getattr(reference, history)
        assert len(ours_h) == len(ref_h)
        for epoch, ref_epoch in zip(ours_h, ref_h):
            assert epoch.keys() == ref_epoch.keys()
            for key, value in ref_epoch.items():
                if key == "batches":
                    sizes = [{k: v for k, v in b.items() if "size" in k} for b in value]
                    assert sizes == [
                        {k: v for k, v in b.items() if "size" in k} for b in epoch[key]
                    ]
                elif key != "dur":
                    assert epoch[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert ours.loss_before_pruning_ == pytest.approx(reference.loss_before_pruning_, rel=1e-4)
    assert ours.loss_after_pruning_ == pytest.approx(reference.loss_after_pruning_, rel=1e-4)
    np.testing.assert_allclose(ours.predict(X), reference.predict(X), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", torch.optim.RMSprop])
def test_the_internals_switch_changes_no_result(optimizer, clf_data, monkeypatch):
    # The shortcuts through skorch's and torch's internals against skorch's public API
    # alone, on the same data path: other code, the same arithmetic up to rounding.
    X, y = clf_data
    params = dict(FAST, optimizer=optimizer, validation_fraction=0.2, random_state=0)
    fast = PrunedMLPClassifier(**params).fit(X, y)
    monkeypatch.setattr(internals, "ENABLED", False)
    public = PrunedMLPClassifier(**params).fit(X, y)
    assert isinstance(fast.net_, internals.InternalsMixin)
    assert not isinstance(public.net_, internals.InternalsMixin)
    for key, value in public.net_.module_.state_dict().items():
        torch.testing.assert_close(fast.net_.module_.state_dict()[key], value,
                                   rtol=1e-5, atol=1e-6)
    for stage in ("history_dense_", "history_finetune_"):
        np.testing.assert_allclose(getattr(fast, stage)[:, "valid_loss"],
                                   getattr(public, stage)[:, "valid_loss"], rtol=1e-5)


@pytest.mark.parametrize("Est", [PrunedMLPRegressor, PrunedMLPClassifier])
def test_validation_split_is_reproducible(Est, reg_data, clf_data):
    X, y = reg_data if Est is PrunedMLPRegressor else clf_data
    a = Est(**FAST, validation_fraction=0.2, random_state=1).fit(X, y)
    b = Est(**FAST, validation_fraction=0.2, random_state=1).fit(X, y)
    c = Est(**FAST, validation_fraction=0.2, random_state=2).fit(X, y)
    assert a.history_dense_[:, "valid_loss"] == b.history_dense_[:, "valid_loss"]
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert a.history_dense_[:, "valid_loss"] != c.history_dense_[:, "valid_loss"]
    # 20% of 75 / 25% of 90 held out: the train batches cover the rest
    n_valid = int(np.ceil(0.2 * len(X))) if Est is PrunedMLPRegressor else 18
    assert sum(a.history_dense_[-1, "batches", :, "train_batch_size"]) == len(X) - n_valid


# --------------------------------------------------------------------------------- net
def _net(**params):
    defaults = dict(
        module__n_features=3,
        module__n_outputs=1,
        module__hidden_layer_sizes=(4,),
        max_epochs=2,
        batch_size=8,
        train_split=None,
        dataset=TensorDataset,
        iterator_train=TensorBatchIterator,
        iterator_train__shuffle=True,
        iterator_valid=TensorBatchIterator,
        verbose=0,
    )
    return FastPrunedNetRegressor(MLP, **{**defaults, **params})


def _xy():
    g = torch.Generator().manual_seed(0)
    return torch.randn(40, 3, generator=g), torch.randn(40, 1, generator=g)


def test_closure_optimizers_keep_skorchs_train_step():
    # LBFGS evaluates the loss several times per step: skorch's closure path is kept.
    X, y = _xy()
    options = dict(optimizer=torch.optim.LBFGS, lr=0.01, optimizer__max_iter=3, max_epochs=1)
    torch.manual_seed(0)
    ours = _net(**options).fit(X, y)
    torch.manual_seed(0)
    reference = NeuralNetRegressor(
        MLP,
        module__n_features=3,
        module__n_outputs=1,
        module__hidden_layer_sizes=(4,),
        batch_size=8,
        train_split=None,
        iterator_train__shuffle=True,
        **options,
    ).fit(X, y)
    # the same train step, but batches sliced instead of stacked: equal up to rounding
    for p, q in zip(ours.module_.parameters(), reference.module_.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def test_gradient_listeners_are_still_called():
    class CountGrads(Callback):
        calls = 0

        def on_grad_computed(self, net, named_parameters, **kwargs):
            CountGrads.calls += 1
            assert all(p.grad is not None for _, p in named_parameters)

    X, y = _xy()
    _net(callbacks=[CountGrads()]).fit(X, y)
    assert CountGrads.calls == 2 * 5  # 2 epochs of 5 batches


def test_training_mode_is_restored_after_validation_and_prediction():
    class Recorder(MLP):
        def forward(self, X):
            self.modes.append((self.training, self.layers[0].training))
            return super().forward(X)

    from skorch.dataset import ValidSplit

    X, y = _xy()
    net = _net(train_split=ValidSplit(4), iterator_valid__batch_size=16)
    net.set_params(module=Recorder).initialize()
    net.module_.modes = []
    net.partial_fit(X, y, epochs=2)
    net.predict(X)
    net.partial_fit(X, y, epochs=1)
    modes = net.module_.modes
    # per epoch: 4 training batches (30 samples), then 1 validation batch (10 samples);
    # prediction: 3 batches (40 samples)
    train, evaluate = [(True, True)], [(False, False)]
    expected = (train * 4 + evaluate) * 2 + evaluate * 3 + train * 4 + evaluate
    assert modes == expected


@gpu
def test_cuda_fit_keeps_the_training_data_on_the_device(reg_data):
    X, y = reg_data
    reg = PrunedMLPRegressor(**FAST, device="cuda", random_state=0).fit(X, y)
    dataset = reg.net_.get_dataset(torch.as_tensor(X, dtype=torch.float32))
    assert dataset.X.device.type == "cuda"
    batch = next(iter(reg.net_.get_iterator(dataset, training=True)))
    assert batch[0].device.type == "cuda"
    assert np.isfinite(reg.predict(X)).all()


def test_deferred_batch_losses_give_the_same_history(monkeypatch):
    # On accelerators the batch losses are read once per pass instead of once per batch;
    # forced on here (CPU), the history must be the one skorch writes.
    from skorch.dataset import ValidSplit

    X, y = _xy()
    histories = []
    for defer in (False, True):
        monkeypatch.setattr(FastPrunedNetRegressor, "defer_batch_losses", defer)
        torch.manual_seed(0)
        net = _net(train_split=ValidSplit(4)).fit(X, y)
        histories.append(net.history)
    skorch_history, deferred = histories
    for key in ("train_loss", "valid_loss", "train_batch_count", "valid_batch_count"):
        assert deferred[:, key] == skorch_history[:, key]
    for epoch_a, epoch_b in zip(deferred, skorch_history):
        assert epoch_a["batches"] == epoch_b["batches"]
        assert all(type(b["train_loss"]) is float for b in epoch_a["batches"] if "train_loss" in b)


def test_dataset_follows_the_nets_device(reg_data):
    # The device comes from the net when the dataset is made (not from a stored option),
    # so a net moved to the CPU on unpickling keeps its data on the CPU as well.
    reg = PrunedMLPRegressor(**FAST, random_state=0).fit(*reg_data)
    assert "dataset__device" not in reg.net_.get_params()
    dataset = reg.net_.get_dataset(reg_data[0].astype(np.float32))
    assert isinstance(dataset, TensorDataset) and dataset.X.device.type == "cpu"
    explicit = _net(dataset__device="cpu").initialize().get_dataset(*_xy())
    assert explicit.X.device.type == "cpu"


@pytest.mark.parametrize(
    "optimizer, options",
    [
        (torch.optim.Adam, {"optimizer__fused": True}),
        (torch.optim.Adam, {"optimizer__amsgrad": True, "optimizer__weight_decay": 0.1}),
        (torch.optim.AdamW, {"optimizer__weight_decay": 0.1}),
    ],
)
def test_adam_steps_are_optimizer_step(optimizer, options, monkeypatch):
    # After the first step (which initialises the state through optimizer.step()), Adam's
    # update goes through torch's functional adam, called as Adam.step calls it; the train
    # step around it is ours, not skorch's, so the two agree up to rounding (an update
    # skipped or applied twice would move the weights by about lr = 1e-2).
    calls = []
    functional = internals._ADAM
    monkeypatch.setattr(
        internals, "_ADAM", lambda *a, **k: calls.append(1) or functional(*a, **k)
    )
    X, y = _xy()
    torch.manual_seed(0)
    ours = _net(optimizer=optimizer, **options).fit(X, y)
    torch.manual_seed(0)
    reference = NeuralNetRegressor(
        MLP,
        module__n_features=3,
        module__n_outputs=1,
        module__hidden_layer_sizes=(4,),
        max_epochs=2,
        batch_size=8,
        train_split=None,
        iterator_train__shuffle=True,
        verbose=0,
        optimizer=optimizer,
        **options,
    ).fit(X, y)
    assert len(calls) == 2 * 5 - 1
    for p, q in zip(ours.module_.parameters(), reference.module_.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)
    for key, value in reference.optimizer_.state_dict()["state"][0].items():
        torch.testing.assert_close(
            ours.optimizer_.state_dict()["state"][0][key], value, rtol=1e-5, atol=1e-9
        )


def test_adam_step_declines_what_it_cannot_reproduce():
    from sk_ecprune.estimators._skorch_internals import _adam_step

    module = torch.nn.Linear(3, 2)

    def backward():
        module.zero_grad()
        module(torch.ones(4, 3)).sum().backward()

    optimizer = torch.optim.Adam(module.parameters())
    backward()
    assert not _adam_step(optimizer)  # state not initialised yet
    optimizer.step()
    backward()
    assert _adam_step(optimizer)
    handle = optimizer.register_step_pre_hook(lambda *args: None)
    assert not _adam_step(optimizer)  # hooks need optimizer.step()
    handle.remove()
    assert not _adam_step(torch.optim.SGD(module.parameters(), lr=0.1))
    optimizer.param_groups[0]["differentiable"] = True  # (state is initialised)
    assert not _adam_step(optimizer)
