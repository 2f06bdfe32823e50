"""benchmarks/ablation_finetune.py: the ablation's methods, and the tiny run end to end."""

import copy

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from sk_ecprune.engine import Method, kept_masks, make_permanent, prune_model  # noqa: E402

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def ablation(load_script):
    return load_script("ablation_finetune")


def test_the_ablation_registers_no_method(load_script):
    """Its methods are instances passed as ``method=``: loading the script leaves the
    registry (README's table of methods, the parameter messages) as it was."""
    from sk_ecprune.engine import SCORERS

    before = set(SCORERS)
    ablation = load_script("ablation_finetune")
    assert set(SCORERS) == before
    methods = [spec[1]["method"] for spec in ablation.WEIGHT_VARIANTS.values()]
    assert all(method in SCORERS or isinstance(method, Method) for method in methods)


def _pruned(method, module, X, ratio=0.6):
    module = copy.deepcopy(module)
    prune_model(module, X, method=method, ratio=ratio, random_state=0)
    return make_permanent(module)  # plain weights (a masked layer's .weight is stale)


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    return module, torch.randn(200, 5)


def _linears(module):
    return [m for m in module if isinstance(m, torch.nn.Linear)]


def test_magnitude_choice_with_update_keeps_magnitude_mask_and_moves_the_rest(
        ablation, network):
    module, X = network
    magnitude = _pruned("magnitude", module, X)
    updated = _pruned(ablation.MagnitudeChoiceWithUpdate(), module, X)
    for a, b in zip(kept_masks(magnitude).values(), kept_masks(updated).values()):
        assert torch.equal(a, b)
    moved = [not torch.allclose(a.weight, b.weight) for a, b in
             zip(_linears(magnitude), _linears(updated))]
    assert all(moved)  # the kept weights were re-fitted
    # the update is a least-squares optimum: it leaves the outputs closer to the dense ones
    with torch.no_grad():
        dense = module(X)
        assert ((updated(X) - dense) ** 2).mean() < ((magnitude(X) - dense) ** 2).mean()


def test_ec_obs_choice_without_update_keeps_every_kept_parameter(ablation, network):
    module, X = network
    ec_obs = _pruned("ec_obs", module, X)
    plain = _pruned(ablation.ECOBSChoiceWithoutUpdate(), module, X)
    for before, a, b in zip(_linears(module), _linears(ec_obs), _linears(plain)):
        assert torch.equal(a.weight != 0, b.weight != 0)
        keep = b.weight != 0
        torch.testing.assert_close(b.weight[keep], before.weight[keep])
        torch.testing.assert_close(b.bias, before.bias)
        assert not torch.allclose(a.bias, before.bias)  # EC-OBS itself does move them


@pytest.fixture(scope="module")
def tiny_run(ablation, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    assert ablation.main(["--tiny", "--n-jobs", "1", "--out-dir", str(out)]) == 0
    return ablation, out


def test_every_variant_is_measured_through_fine_tuning(tiny_run):
    ablation, out = tiny_run
    results = pd.read_csv(out / "results.csv")
    curves = pd.read_csv(out / "curves.csv")
    assert set(results.variant) == {*ablation.WEIGHT_VARIANTS, *ablation.NEURON_VARIANTS}
    assert np.isfinite(results[["train_loss", "test_loss", "pruned_test_loss"]]).all().all()
    one_shot = curves[(curves.variant == "ecobs") & (curves.phase == "finetune")]
    assert list(one_shot.epoch) == [1, 2]  # the tiny run's two fine-tuning epochs
    pruned = curves[(curves.variant == "ecobs") & (curves.phase == "pruned")]
    assert list(pruned.epoch) == [0]
    lr = curves[curves.phase == "finetune"].groupby("variant").lr.first()
    assert lr["ecobs_lr0.1"] == pytest.approx(1e-4) and lr["ecobs"] == pytest.approx(1e-3)
    sparsity = results.set_index("variant").sparsity
    assert sparsity["ecobs_sel_nocomp"] == pytest.approx(sparsity["ecobs"], abs=0.01)


def test_figures_and_summary(tiny_run):
    _, out = tiny_run
    assert (out / "digits_r0.8_selection.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "breast_cancer_units_r0.8_finetune.png").exists()
    summary = (out / "summary.md").read_text()
    assert "test below magnitude's" in summary and "test below neuron_magnitude's" in summary
