"""The command line on the user's data: ``python -m sk_ecprune fit`` and ``curve``.

The fits run through ``subprocess`` on small CSV files written here, with a tiny network and
few epochs; each written model is loaded back and must reproduce the score the report
printed on the held-out split, recomputed here with scikit-learn's ``train_test_split``
from the documented arguments. Bad arguments are checked in-process (``main`` raises
``SystemExit(2)`` with argparse's message), and once through a subprocess (no traceback).
"""

import argparse
import csv
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split

import sk_ecprune
from sk_ecprune.cli import main
from sk_ecprune.cli._fit import sparsest_best

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"(-?\d+\.\d+)"
TINY = ["--hidden-layer-sizes", "8", "--epochs", "2", "--batch-size", "16"]
LABELS = np.array(["cat", "dog", "emu"])


def _write_csv(path, X, y, names):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
        writer.writerows([*row, target] for row, target in zip(X.tolist(), y.tolist()))
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    X, y = make_classification(n_samples=80, n_features=4, n_informative=3, n_redundant=0,
                               n_classes=3, n_clusters_per_class=1, random_state=0)
    _write_csv(root / "animals.csv", X, LABELS[y], ["a", "b", "c", "d", "label"])
    X, y = make_regression(n_samples=80, n_features=3, noise=1.0, random_state=0)
    _write_csv(root / "prices.csv", X, 1000 + 50 * y, ["a", "b", "c", "price"])  # unscaled y
    return root


def _read_csv(path, target):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    features = [name for name in rows[0] if name != target]
    X = np.array([[float(row[name]) for name in features] for row in rows])
    y = np.array([row[target] for row in rows])
    return X, y


def _cli(*args, cwd):
    result = subprocess.run([sys.executable, "-m", "sk_ecprune", *map(str, args)], cwd=cwd,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    return result


def _report(result):
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    metric = re.search(rf"^test (accuracy|R²): {NUMBER} pruned, {NUMBER} dense", out, re.M)
    sparsity = float(re.search(r"^sparsity: (\d+\.\d)%", out, re.M)[1]) / 100
    size = int(re.search(r"^model size: (\d+) bytes", out, re.M)[1])
    assert re.search(r"^time: \d+\.\d s$", out, re.M), out
    return float(metric[2]), float(metric[3]), sparsity, size


def test_fit_classification_writes_a_joblib_model_that_scores_as_reported(data_dir):
    out = data_dir / "animals.joblib"
    result = _cli("fit", "animals.csv", "--target", "label", *TINY, "--prune-ratio", "0.7",
                  "--random-state", "1", "--test-size", "0.3", "--out", out.name, cwd=data_dir)
    score, dense_score, sparsity, size = _report(result)
    assert "classification (inferred: its values are not numbers" in result.stdout
    assert size == out.stat().st_size
    model = joblib.load(out)
    mlp = model.named_steps["mlp"]
    assert mlp.prune_ratio == 0.7 and mlp.hidden_layer_sizes == (8,) and mlp.max_epochs == 2
    assert mlp.memory is None  # the temporary cache is not left in the model
    assert sparsity == pytest.approx(mlp.sparsity_, abs=5e-4)
    X, y = _read_csv(data_dir / "animals.csv", "label")
    _, X_test, _, y_test = train_test_split(X, y, test_size=0.3, random_state=1, stratify=y)
    assert accuracy_score(y_test, model.predict(X_test)) == pytest.approx(score, abs=1e-6)
    assert set(model.predict(X_test)) <= set(LABELS)
    assert 0 <= dense_score <= 1


def test_fit_regression_with_cv_writes_an_onnx_model_in_the_targets_units(data_dir):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("skl2onnx")
    out = data_dir / "prices.onnx"
    result = _cli("fit", "prices.csv", "--target", "price", *TINY, "--cv", "2", "--ratios",
                  "0.5", "0.8", "--method", "magnitude", "--out", out.name, cwd=data_dir)
    score, _, sparsity, size = _report(result)
    assert "regression (inferred" in result.stdout
    cv_rows = re.findall(rf"^  (0\.[58])\s+{NUMBER} ± {NUMBER}$", result.stdout, re.M)
    assert [r for r, *_ in cv_rows] == ["0.5", "0.8"], result.stdout
    top = max(float(mean) for _, mean, _ in cv_rows)  # (printed to 4 decimals)
    best = re.search(r"^chosen prune ratio: (0\.[58]) ", result.stdout, re.M)[1]
    assert best in {r for r, mean, _ in cv_rows if float(mean) == top}, result.stdout
    assert sparsity == pytest.approx(float(best), abs=0.01)
    X, y = _read_csv(data_dir / "prices.csv", "price")
    y = y.astype(float)
    _, X_test, _, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    session = ort.InferenceSession(out.read_bytes())
    (predicted,) = session.run(None, {"X": X_test.astype(np.float32)})
    assert size == out.stat().st_size and predicted.shape == (len(X_test), 1)
    # float32 graph against the float64 score of the report
    assert r2_score(y_test, predicted.ravel()) == pytest.approx(score, abs=1e-3)


def test_fit_skops_model_loads_with_its_trusted_types(data_dir, capsys):
    """In-process (``main``), to spare the suite one more interpreter start."""
    skops_io = pytest.importorskip("skops.io")
    out = data_dir / "animals.skops"
    status = main(["fit", str(data_dir / "animals.csv"), "--target", "label", *TINY,
                   "--out", str(out)])
    captured = capsys.readouterr()
    if status == 1 and "could not write" in captured.err:
        assert not out.exists()  # a failed write leaves no file
        pytest.xfail("this version's estimators do not dump with skops: " + captured.err)
    score, *_ = _report(subprocess.CompletedProcess([], status, captured.out, captured.err))
    model = skops_io.load(out, trusted=skops_io.get_untrusted_types(file=out))
    X, y = _read_csv(data_dir / "animals.csv", "label")
    _, X_test, _, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    assert accuracy_score(y_test, model.predict(X_test)) == pytest.approx(score, abs=1e-6)


def test_curve_draws_the_cross_validated_curve(data_dir):
    pytest.importorskip("matplotlib")
    result = _cli("curve", "animals.csv", "--target", "label", *TINY, "--ratios", "0.5",
                  "0.9", "--methods", "ec", "magnitude", "--cv", "2", "--out", "curve.png",
                  cwd=data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(rf"^  method=(ec|magnitude)\s+(0\.[59])\s+{NUMBER} ± {NUMBER}$",
                      result.stdout, re.M)
    assert sorted((m, r) for m, r, *_ in rows) == [("ec", "0.5"), ("ec", "0.9"),
                                                    ("magnitude", "0.5"), ("magnitude", "0.9")]
    assert all(0 <= float(mean) <= 1 for *_, mean, _ in rows)
    assert (data_dir / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------- bad arguments
def _usage_error(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["demo", "--methods", "foo"], "invalid choice: 'foo'"),
    (["demo", "--epochs", "0"], "--epochs: must be an integer >= 1, got 0"),
    (["demo", "--seeds", "0"], "--seeds: must be an integer >= 1, got 0"),
    (["demo", "--ratios", "0.5", "1"], "--ratios: a pruning ratio must be in [0, 1), got 1"),
    (["demo", "--ratios", "nan"], "--ratios: must be a finite number, got 'nan'"),
    (["demo", "--epochs", "two"], "--epochs: 'two' is not an integer"),
    (["fit", "missing.csv", "--target", "y"], "no such file: missing.csv"),
    (["fit", "{a}", "--target", "nope"], "has no column 'nope'; its columns are"),
    (["fit", "{a}", "--target", "label", "--drop", "zz"], "has no column 'zz'"),
    (["fit", "{a}", "--target", "label", "--method", "foo"], "invalid choice: 'foo'"),
    (["fit", "{a}", "--target", "label", "--prune-ratio", "1.5"], "in [0, 1), got 1.5"),
    (["fit", "{a}", "--target", "label", "--prune-ratio", "nan"], "finite number"),
    (["fit", "{a}", "--target", "label", "--epochs", "0"], "--epochs: must be an integer >= 1"),
    (["fit", "{a}", "--target", "label", "--random-state", "-1"], "must be an integer >= 0"),
    (["fit", "{a}", "--target", "label", "--test-size", "1"], "fraction in (0, 1)"),
    (["fit", "{a}", "--target", "label", "--out", "m.txt"], "'m.txt' has no known suffix"),
    (["fit", "{a}", "--target", "label", "--out", "no/dir/m.joblib"], "no such directory"),
    (["fit", "{a}", "--target", "label", "--cv", "1"], "needs at least 2 folds"),
    (["fit", "{a}", "--target", "label", "--cv", "500"], "--cv 500 needs at least 500"),
    (["fit", "{a}", "--target", "label", "--ratios", "0.5"], "--ratios needs --cv"),
    (["fit", "{a}", "--target", "label", "--cv", "2", "--prune-ratio", "0.5"],
     "give --ratios instead of --prune-ratio"),
    (["fit", "{a}", "--target", "label", "--granularity", "neuron", "--method", "obd"],
     "--granularity neuron removes whole units"),
    (["fit", "{a}", "--target", "label", "--task", "regression"], "needs a numeric target"),
    (["fit", "{a}", "--target", "a"], "feature columns ['label']"),  # text, not numbers
    (["fit", "{a}", "--target", "label", "--drop", "label"], "drops the target"),
    (["fit", "{a}", "--target", "label", "--quantize-bits", "1"], "from 2 to 8, got 1"),
    (["fit", "{a}", "--target", "label", "--quantize-bits", "9"], "from 2 to 8, got 9"),
    (["fit", "{a}", "--target", "label", "--quantize-method", "foo"], "invalid choice: 'foo'"),
    (["curve", "{a}", "--target", "label"], "the following arguments are required: --out"),
    (["curve", "{a}", "--target", "label", "--out", "c.png", "--cv", "40"],
     "--cv 40 needs at least 40 rows of every class"),
])
def test_bad_arguments_are_usage_errors(capsys, data_dir, argv, message):
    argv = [a.format(a=data_dir / "animals.csv") for a in argv]
    assert message in _usage_error(capsys, *argv)


def test_data_problems_name_the_column_and_the_line(capsys, tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("x,colour,y\n1.0,red,0\n2.0,blue,1\n,red,0\n4.0,blue,1\n")
    err = _usage_error(capsys, "fit", path, "--target", "y")
    assert "line 4: column 'x' has a missing value" in err
    path.write_text("x,colour,y\n1.0,red,0\n2.0,blue,1\n3.0,red,0\n4.0,blue,1\n")
    err = _usage_error(capsys, "fit", path, "--target", "y")
    assert "feature columns ['colour']" in err and "--drop colour" in err
    path.write_text("x,y\n1.0,0\n2.0\n")
    assert "line 3: 1 cells, the header has 2 columns" in _usage_error(capsys, "fit", path,
                                                                         "--target", "y")


def test_onnx_output_without_the_onnx_extra_is_a_usage_error(capsys, data_dir, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "skl2onnx" else find_spec(name, *a))
    err = _usage_error(capsys, "fit", data_dir / "animals.csv", "--target", "label", "--out",
                       "m.onnx")
    assert "writing .onnx files needs skl2onnx: pip install 'sk_ecprune[onnx]'" in err


def test_a_bad_argument_ends_without_a_traceback(data_dir):
    result = _cli("fit", "animals.csv", "--target", "nope", cwd=data_dir)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: python -m sk_ecprune fit"), result.stderr
    assert "error: animals.csv has no column 'nope'" in result.stderr


def test_a_failed_fit_is_a_message_and_status_1(capsys, data_dir):
    status = main(["fit", str(data_dir / "prices.csv"), "--target", "price", "--quick",
                   "--lr", "1e30", "--out", str(data_dir / "diverged.joblib")])
    err = capsys.readouterr().err
    assert status == 1 and "fit: error: the fit failed: Training diverged" in err
    assert "smaller lr" in err and not (data_dir / "diverged.joblib").exists()


def test_a_tie_in_the_search_goes_to_the_highest_ratio():
    results = {"mean_test_score": [0.9, 0.95, 0.95, 0.8],
               "params": [{"mlp__prune_ratio": r} for r in (0.5, 0.7, 0.8, 0.9)]}
    assert sparsest_best(results) == 2
    results["mean_test_score"] = [0.9, 0.97, 0.95, 0.8]
    assert sparsest_best(results) == 1


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"sk_ecprune {sk_ecprune.__version__}"


# ------------------------------------------------------------- --quick fills defaults
def test_quick_never_overrides_an_explicit_option(monkeypatch, data_dir):
    import sk_ecprune.cli._demo as demo
    import sk_ecprune.cli._fit as fit

    calls = []
    monkeypatch.setattr(demo, "run_demo", lambda **kw: calls.append(kw) or [])
    monkeypatch.setattr(demo, "format_table", lambda rows, n: "")
    assert main(["demo", "--quick", "--epochs", "3", "--ratios", "0.6"]) == 0
    assert calls[-1]["epochs"] == 3 and calls[-1]["ratios"] == [0.6]
    assert list(calls[-1]["seeds"]) == [0]  # --quick's, not given
    assert main(["demo", "--quick", "--seeds", "2", "--methods", "ec"]) == 0
    assert list(calls[-1]["seeds"]) == [0, 1] and calls[-1]["methods"] == ["ec"]
    assert calls[-1]["epochs"] == 2 and calls[-1]["ratios"] == [0.5, 0.9]
    monkeypatch.setattr(fit, "run_fit", lambda args: calls.append(vars(args)) or 0)
    assert main(["fit", str(data_dir / "animals.csv"), "--target", "label", "--quick",
                 "--epochs", "7", "--prune-ratio", "0.3"]) == 0
    assert calls[-1]["epochs"] == 7 and calls[-1]["prune_ratio"] == 0.3
    assert calls[-1]["finetune_epochs"] == 2 and calls[-1]["hidden_layer_sizes"] == [16]
    assert main(["fit", str(data_dir / "animals.csv"), "--target", "label", "--quick",
                 "--quantize-bits", "4", "--quantize-method", "gptq"]) == 0
    from sk_ecprune.cli._args import model_params

    params = model_params(argparse.Namespace(**calls[-1]))
    assert params["quantize_bits"] == 4 and params["quantize_method"] == "gptq"


# ------------------------------------------------- the defaults are the estimators'
def test_model_defaults_are_the_estimators_defaults():
    from sk_ecprune import PrunedMLPClassifier
    from sk_ecprune.cli._args import ESTIMATOR_PARAMS, MODEL_DEFAULTS

    estimator = PrunedMLPClassifier().get_params()
    for option, value in MODEL_DEFAULTS.items():
        param = ESTIMATOR_PARAMS.get(option)
        # the CLI prunes by default and seeds its split: those two are its own
        if param in estimator and param not in ("prune_ratio", "random_state"):
            expected = value if not isinstance(value, list) else tuple(value)
            assert estimator[param] == expected, option


def test_batch_size_takes_auto_or_a_positive_integer(monkeypatch, data_dir):
    import sk_ecprune.cli._fit as fit

    calls = []
    monkeypatch.setattr(fit, "run_fit", lambda args: calls.append(vars(args)) or 0)
    csv = str(data_dir / "animals.csv")
    assert main(["fit", csv, "--target", "label", "--batch-size", "AUTO"]) == 0
    assert calls[-1]["batch_size"] == "auto"
    assert main(["fit", csv, "--target", "label", "--batch-size", "16"]) == 0
    assert calls[-1]["batch_size"] == 16
    assert main(["fit", csv, "--target", "label"]) == 0
    assert calls[-1]["batch_size"] == "auto" and calls[-1]["epochs"] == 200
