"""The main job (``python -m sk_ecprune demo``) and the scripts in ``examples/`` run.

By default each runs in its fast mode (``--quick`` for the demo, ``SK_ECPRUNE_QUICK=1`` for
the examples: 2 epochs), and the tests check the structure of what it prints: every row
of its table, numbers in their range. The full-length runs, with the quality a user should
see, are marked ``slow`` (``python -m pytest -m slow``).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sk_ecprune.__main__ import format_table, main, run_demo

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"(-?\d+\.\d+)"


def _run(*args, quick=True):
    env = dict(os.environ)
    env.pop("SK_ECPRUNE_QUICK", None)
    if quick:
        env["SK_ECPRUNE_QUICK"] = "1"
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# ----------------------------------------------------------------------------------- demo
def _demo_rows(out):
    """{(method, ratio): (loss after pruning, acc, loss after fine-tuning, acc)}."""
    rows = {}
    pattern = (rf"^(\w+)\s+(\d\.\d\d)\s+(\d+\.\d)%\s+\|\s+{NUMBER} ±\s*{NUMBER}\s+{NUMBER}%\s+\|"
               rf"\s+{NUMBER} ±\s*{NUMBER}\s+{NUMBER}%")
    for m in re.finditer(pattern, out, re.M):
        rows[m[1], float(m[2])] = (float(m[4]), float(m[6]), float(m[7]), float(m[9]))
    return rows


def _check_demo(out, seeds):
    assert "right after pruning" in out and "after fine-tuning" in out
    assert re.search(r"^dense\s+0.00\s+0.0%\s+\|\s+\d+\.\d+", out, re.M), out
    rows = _demo_rows(out)
    assert set(rows) == {(m, r) for m in ("ec_obs", "ec", "magnitude") for r in (0.5, 0.9)}, out
    for loss, acc, tuned_loss, tuned_acc in rows.values():
        assert loss > 0 and tuned_loss > 0 and 0 <= acc <= 100 and 0 <= tuned_acc <= 100
    assert f"over {seeds} seed(s)" in out
    return rows


def test_demo_command_quick_run():
    _check_demo(_run("-m", "sk_ecprune", "demo", "--quick"), seeds=1)


@pytest.mark.slow
def test_demo_command_full_run():
    rows = _check_demo(_run("-m", "sk_ecprune", "demo", "--ratios", "0.5", "0.9",
                            quick=False), seeds=5)
    # 15 + 15 epochs on digits: the pruned networks classify well after fine-tuning, and
    # the default method better than magnitude pruning at r = 0.9 (measured: 93.2% against
    # 88.0%, mean of 5 seeds; at r = 0.5 they tie at 96%)
    assert all(tuned_acc > 85 for *_, tuned_acc in rows.values()), rows
    assert all(rows["ec_obs", r][3] > 90 for r in (0.5, 0.9)), rows
    assert rows["ec_obs", 0.9][3] > rows["magnitude", 0.9][3] + 2, rows


def test_demo_rows_reuse_one_dense_network_per_seed():
    rows = run_demo(seeds=[0, 1], ratios=[0.6], methods=["ec"], epochs=1,
                    hidden_layer_sizes=(8,))
    assert [(r["seed"], r["method"], r["ratio"]) for r in rows] == [(0, "ec", 0.6),
                                                                    (1, "ec", 0.6)]
    for row in rows:
        assert row["sparsity"] == pytest.approx(0.6, abs=0.01)
        assert 0 <= row["pruned_acc"] <= 1 and row["tuned_loss"] > 0
    table = format_table(rows, 2)
    assert "over 2 seed(s)" in table and "60.0%" in table


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


# ------------------------------------------------------------------------------- examples
def _check_quickstart(out):
    dense = float(re.search(rf"dense network : test accuracy {NUMBER}", out)[1])
    pruned, sparsity = re.search(rf"80% pruned    : test accuracy {NUMBER}, sparsity "
                                 rf"{NUMBER}%", out).groups()
    assert 0 <= dense <= 1 and 0 <= float(pruned) <= 1 and float(sparsity) == 80.0
    layers = re.search(r"zero weights per layer: \{(.*)\}", out)[1]
    assert len(re.findall(r"'layers\.\d': '\d+%'", layers)) == 3
    assert "removed 2714 of 3392 weights (80.0%)" in out  # round(0.8 * 3392)
    return dense, float(pruned)


def _check_regression(out):
    rows = re.findall(rf"^(ec|magnitude)\s+(\d\.\d)\s+{NUMBER}\s+{NUMBER}$", out, re.M)
    assert {(m, r) for m, r, _, _ in rows} == {
        (m, r) for m in ("ec", "magnitude") for r in ("0.0", "0.5", "0.8", "0.9")
    }, out
    return {(m, float(r)): (float(a), float(b)) for m, r, a, b in rows}


def _check_grid_search(out):
    rows = re.findall(rf"^\s*(ec|magnitude)\s+(\d\.\d+)\s+{NUMBER}\s+{NUMBER}$", out, re.M)
    assert len(rows) == 8, out
    assert all(0 <= float(acc) <= 1 for *_, acc, _ in rows)
    assert re.search(r"^best: \{'prunedmlpclassifier__method': '(ec|magnitude)', "
                     r"'prunedmlpclassifier__prune_ratio': 0\.\d+\}", out, re.M), out
    return float(re.search(rf"best pipeline: {NUMBER}", out)[1])


def test_quickstart_runs():
    _check_quickstart(_run("examples/quickstart.py"))


def test_regression_example_runs():
    rows = _check_regression(_run("examples/regression.py"))
    # dense rows: the same network for both methods, so the same R^2
    assert rows["ec", 0.0] == rows["magnitude", 0.0]


def test_grid_search_example_runs():
    assert 0 <= _check_grid_search(_run("examples/grid_search.py")) <= 1


def _check_own_network(out):
    dense = float(re.search(rf"dense network trained elsewhere: test R2 {NUMBER}", out)[1])
    rows = re.findall(rf"^\s*(\d\.\d\d)\s+{NUMBER}\s+{NUMBER}$", out, re.M)
    assert [r for r, _, _ in rows] == ["0.50", "0.80", "0.90"], out
    return dense, {float(r): (float(a), float(b)) for r, a, b in rows}


def test_own_network_example_runs():
    dense, rows = _check_own_network(_run("examples/own_network.py"))
    assert dense <= 1 and all(a <= 1 and b <= 1 for a, b in rows.values())


def test_every_example_is_tested():
    tested = {"quickstart.py", "regression.py", "grid_search.py", "own_network.py"}
    assert {path.name for path in (ROOT / "examples").glob("*.py")} == tested


@pytest.mark.slow
def test_full_length_examples_reach_their_quality():
    dense, pruned = _check_quickstart(_run("examples/quickstart.py", quick=False))
    assert dense > 0.9 and pruned > 0.85
    rows = _check_regression(_run("examples/regression.py", quick=False))
    assert rows["ec", 0.5][1] > 0.8  # R^2 after fine-tuning at half the weights
    assert _check_grid_search(_run("examples/grid_search.py", quick=False)) > 0.9
    dense, rows = _check_own_network(_run("examples/own_network.py", quick=False))
    assert dense > 0.9 and rows[0.5][0] > 0.9  # half the weights removed, no fine-tuning
