"""The main job (``python -m sk_ecprune demo``) and the scripts in ``examples/`` run."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sk_ecprune.__main__ import format_table, main, run_demo

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _run(*args):
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_demo_command_quick_run():
    out = _run("-m", "sk_ecprune", "demo", "--quick")
    assert "right after pruning" in out and "after fine-tuning" in out
    for method in ("ec", "magnitude"):
        for ratio in ("0.50", "0.90"):
            assert re.search(rf"^{method}\s+{ratio}\s+\d+\.\d%\s+\|", out, re.M), out
    assert re.search(r"^dense\s+0.00", out, re.M)


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


def test_examples_exist():
    names = {path.name for path in EXAMPLES}
    assert {"quickstart.py", "grid_search.py", "regression.py"} <= names


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: path.name)
def test_example_runs(script):
    assert _run(str(script)).strip()
