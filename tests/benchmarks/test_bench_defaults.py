"""benchmarks/bench_defaults.py: the tiny configuration end to end."""

import numpy as np
import pytest

pd = pytest.importorskip("pandas")


def test_every_estimator_is_scored_on_the_same_folds(load_script, tmp_path):
    bench = load_script("bench_defaults")
    assert bench.main(["--tiny", "--configs", "defaults", "--out-dir", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "results.csv")
    runs = frame.groupby(["estimator", "config", "prune_ratio"]).fold.apply(sorted)
    assert len(runs) == 3 and all(folds == [0, 1, 2] for folds in runs)  # sklearn, r = 0, 0.8
    assert np.isfinite(frame[["score", "test_loss", "train_loss", "fit_time_s"]]).all().all()
    assert "scikit-learn's MLP: score" in (tmp_path / "summary.md").read_text()
