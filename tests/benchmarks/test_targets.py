"""benchmarks/_targets.py (issue #22's target, point by point) and the converged protocol of
bench_structured.py, on hand-made results: no training."""

import numpy as np
import pytest

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def targets(load_script):
    load_script("_common")  # puts benchmarks/ on sys.path for _targets' own import
    return load_script("_targets")


def frame_of(losses, dense=1.0):
    """CSV rows: a dense network per seed, then ``losses[config][ratio]``, one loss per seed
    (the training loss is half the test loss)."""
    rows = []
    for seed in range(5):
        rows.append(dict(task="t", architecture="a", seed=seed, config="dense", ratio=0.0,
                         stage="dense", loss=dense, train_loss=dense / 2))
    for config, by_ratio in losses.items():
        for ratio, per_seed in by_ratio.items():
            for seed, loss in enumerate(per_seed):
                rows.append(dict(task="t", architecture="a", seed=seed, config=config,
                                 ratio=ratio, stage="finetuned", loss=loss, train_loss=loss / 2))
    return pd.DataFrame(rows)


def test_a_tie_counts_near_the_dense_loss_and_only_a_win_far_from_it(targets):
    # 0.5: the default 1% above the best baseline in every seed: a tie (5% from dense: met)
    # 0.9: the same 1%, but the baseline is 30% from the dense loss: only a win counts
    # 0.95: far from dense, default below in 4 of 5 seeds: a win
    default = {0.5: [1.06] * 5, 0.9: [1.313] * 5, 0.95: [1.2, 1.2, 1.2, 1.2, 1.4]}
    best = {0.5: [1.05] * 5, 0.9: [1.3] * 5, 0.95: [1.3] * 5}
    worse = {0.5: [1.08] * 5, 0.9: [1.4] * 5, 0.95: [1.5] * 5}  # the narrow network
    frame = frame_of({"weight_ec_obs_gradual5": default, "weight_magnitude": best,
                      "narrow_dense": worse})
    points = {p["ratio"]: p for p in targets.target_points(frame)
              if p["granularity"] == "weight"}
    assert [points[r]["best"] for r in (0.5, 0.9, 0.95)] == ["weight_magnitude"] * 3
    assert points[0.5]["median_ratio"] == pytest.approx(1.06 / 1.05)
    assert (points[0.5]["wins"], points[0.5]["far"], points[0.5]["met"]) == (0, [], True)
    assert (points[0.9]["far"], points[0.9]["met"]) == (
        ["weight_ec_obs_gradual5", "weight_magnitude", "narrow_dense"], False)
    assert (points[0.95]["wins"], points[0.95]["met"]) == (4, True)
    assert points[0.95]["ours"] == (1.2, 0.6)  # medians, test and training loss
    # far *below* the dense loss (retraining regularised) is not far: a tie counts there
    below = frame_of({"weight_ec_obs_gradual5": {0.5: [0.71] * 5},
                      "weight_magnitude": {0.5: [0.7] * 5}})
    (point,) = targets.target_points(below)
    assert (point["far"], point["met"]) == ([], True)
    # the narrow network is a baseline of both granularities; no unit default: no unit row
    assert {p["granularity"] for p in targets.target_points(frame)} == {"weight"}


def test_the_best_baseline_is_the_lowest_median_at_each_ratio(targets):
    frame = frame_of({"neuron_ec_obs_gradual5": {0.8: [1.0] * 5},
                      "tp_magnitude": {0.8: [0.9, 0.9, 0.9, 2.0, 2.0]},
                      "narrow_dense": {0.8: [1.1] * 5}})
    (point,) = targets.target_points(frame)
    assert point["best"] == "tp_magnitude" and point["wins"] == 2
    assert point["median_ratio"] == pytest.approx(1.0 / 0.9) and not point["met"]
    table = targets.target_tables(frame)
    assert "| unit | 0.8 |" in table and "missed" in table and "tp_magnitude: 0.9" in table
    assert "| t | unit | missed 2/5 (1.11) |" in targets.target_overview(frame)


def test_the_converged_protocol_reaches_every_fit(load_script):
    common = load_script("_common")
    bench = load_script("bench_structured")
    tasks = {t["name"]: t for t in bench.converged_tasks([0])}
    digits = common.make_estimator(tasks["digits"], prune_ratio=0.5)
    assert (digits.max_epochs, digits.finetune_epochs) == (100, 15)
    stopped = common.make_estimator(tasks["breast_cancer_es"], max_epochs=3)
    assert stopped.early_stopping and stopped.max_epochs == 3  # a fit's own word is the last
    X_train, X_test, *_ = common.load_task_data(tasks["breast_cancer"])
    np.testing.assert_allclose(X_train.mean(0), 0, atol=1e-5)  # standardised on its split
    np.testing.assert_allclose(X_train.std(0), 1, atol=1e-4)
    assert X_test.shape[1] == 30 and abs(X_test.mean()) > 1e-4
