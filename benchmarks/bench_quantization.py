"""Quantisation (issue #20): every quantiser at several bit widths, on the dense and on the
80%-pruned networks (weight and neuron granularity); test loss against the ONNX file's size.

Per task and seed, the estimators fit three networks once (the dense stage shared through
``memory``): dense (``prune_ratio=0``), 80% weight-pruned and 80% neuron-pruned (the
package's defaults: ``method="ec_obs"``, 5 gradual steps, fine-tuning). Each fitted network
is then quantised by every quantiser at every bit width, each on its own copy of the
fitted estimator, through the estimators' own quantisation stage (the one ``fit`` runs for
``quantize_bits``, on the same rows and seed), so one dense fit serves the whole sweep. A
row records the test loss, the output distortion against the float network (MSE of the
predictions; for a classifier the mean KL divergence of the probabilities), ``model_bytes_``
and the gzip size of that ONNX file, and the quantisation time in dense epochs (the dense
training's mean epoch time). Headline rows (``network="estimator_*"``) refit the dense and
the neuron-pruned network with ``quantize_bits=4`` through ``fit`` itself, as a check that
the sweep is what a user gets.

The speed part (seed 0, under the benchmark lock): onnxruntime predict time for 10,000
rows and for one row, one thread, for the float export, the int8 and int4 exports with and
without ``session.disable_quant_qdq=1``, and onnxruntime's own ``quantize_dynamic`` (int8
weights, uncompensated) applied to the float export; plus the cost of quantising every
layer of a dense 784-256-256-10 network (digits upsampled to 28x28) in dense epochs.

Run from the repository root::

    python benchmarks/bench_quantization.py              # the run of benchmarks/RESULTS.md
    python benchmarks/bench_quantization.py --tiny --out-dir /tmp/x   # seconds (the tests)
    python benchmarks/bench_quantization.py --plot-only
"""

from __future__ import annotations

import copy
import gzip
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from _common import (
    PDE_SMALL,
    RESULTS_DIR,
    Log,
    architecture,
    classification_task,
    environment_line,
    fit_and_score,
    fmt,
    load_task_data,
    parser,
    pde_task,
    score_fitted,
    select_tasks,
    shown,
    write_rows,
)

OUT_DIR = RESULTS_DIR / "quantization"
QUANTIZERS = ("rtn", "ec", "gptq", "ec_obs")
PRUNE_RATIO = 0.8
#: Network -> estimator parameters on top of the dense ones (the package's defaults).
NETWORKS = {
    "dense": dict(prune_ratio=0.0, finetune_epochs=0),
    "weight": dict(prune_ratio=PRUNE_RATIO, granularity="weight"),
    "neuron": dict(prune_ratio=PRUNE_RATIO, granularity="neuron"),
}
#: The package's pruning defaults, where make_estimator has the paper's one-shot EC.
DEFAULTS = dict(method="ec_obs", prune_steps=5, gradual=True, output_metric="auto")
CSV_COLUMNS = ["task", "architecture", "seed", "network", "method", "bits", "loss",
               "accuracy", "distortion", "model_bytes", "gzip_bytes", "quantize_epochs",
               "quantize_s", "hidden_layer_sizes"]


def configuration(mode):
    if mode == "run":
        seeds = range(3)
        return dict(
            tasks=[pde_task(PDE_SMALL, 0.0, n_simulations=40, seeds=seeds, ratios=[],
                            epochs=30),
                   classification_task("digits", "digits", seeds=seeds, ratios=[]),
                   classification_task("digits_wide", "digits", seeds=seeds, ratios=[],
                                       hidden=(256, 256))],
            bits=(8, 4, 3, 2), cost=dict(hidden=(256, 256), epochs=1, tile_to=60_000),
            speed_repeats=200)
    if mode == "tiny":
        return dict(tasks=[classification_task("digits", "digits", seeds=[0], ratios=[],
                                               epochs=1, n_rows=300)],
                    bits=(8, 2), cost=dict(hidden=(16,), epochs=1, n_rows=100),
                    speed_repeats=3)
    raise ValueError(f"Unknown mode {mode!r}.")


# ------------------------------------------------------------------------------- fits
def _final(estimator):
    return estimator[-1] if hasattr(estimator, "steps") else estimator


def _fit(task, data, network, seed, memory, **extra):
    params = dict(DEFAULTS, **NETWORKS[network], random_state=int(seed), memory=memory)
    estimator, scores = fit_and_score(task, data, dict(params, **extra), keep_pipeline=True)
    return estimator, scores


def _fit_data(estimator, data, seed):
    """What ``fit`` hands its quantisation stage: the (scaled) training rows and its seed."""
    import torch
    from sklearn.utils import check_random_state

    X = data[0] if not hasattr(estimator, "steps") else estimator[:-1].transform(data[0])
    fit_seed = int(check_random_state(int(seed)).randint(np.iinfo(np.int32).max))
    return SimpleNamespace(X=torch.as_tensor(np.asarray(X, dtype=np.float32)),
                           sample_weight=None, seed=fit_seed)


def _outputs(task, estimator, X):
    if task["kind"] == "classification":
        return estimator.predict_proba(X)
    return np.asarray(estimator.predict(X), dtype=np.float64)


def _distortion(task, reference, outputs):
    if task["kind"] == "classification":  # mean KL(float || quantised) of the probabilities
        eps = 1e-12
        return float(np.mean(np.sum(reference * (np.log(reference + eps)
                                                 - np.log(outputs + eps)), axis=1)))
    return float(np.mean((reference - outputs) ** 2))


def onnx_bytes(final):
    """The ONNX file of a fitted estimator (what ``model_bytes_`` measures)."""
    from skl2onnx import to_onnx

    import sk_ecprune.onnx  # noqa: F401

    X = np.zeros((1, final.n_features_in_), dtype=np.float32)
    return to_onnx(final, X).SerializeToString()


def _row(task, data, seed, network, method, bits, estimator, reference, epoch_s):
    final = _final(estimator)
    scores = score_fitted(task, data, estimator)
    blob = onnx_bytes(final)
    assert len(blob) == final.model_bytes_
    q_s = getattr(final, "quantization_time_", 0.0)
    return dict(task=task["name"], architecture=architecture(data, task), seed=seed,
                network=network, method=method, bits=bits, loss=scores["loss"],
                accuracy=scores["accuracy"],
                distortion=_distortion(task, reference, _outputs(task, estimator, data[1])),
                model_bytes=len(blob), gzip_bytes=len(gzip.compress(blob)),
                quantize_epochs=q_s / epoch_s, quantize_s=q_s,
                hidden_layer_sizes="-".join(map(str, final.hidden_layer_sizes_)))


def sweep(task, data, seed, bits_list, memory, log):
    """Every network x quantiser x bit width of one seed; returns the CSV rows and the
    fitted float estimators (for the speed part)."""
    from sk_ecprune.estimators._quantize import quantize_network

    rows, fitted = [], {}
    for network in NETWORKS:
        estimator, _ = _fit(task, data, network, seed, memory)
        final = _final(estimator)
        epoch_s = float(np.mean(final.history_dense_[:, "dur"]))
        reference = _outputs(task, estimator, data[1])
        fitted[network] = estimator
        rows.append(_row(task, data, seed, network, "float", 32, estimator, reference, epoch_s))
        fit_data = _fit_data(estimator, data, seed)
        for method in QUANTIZERS:
            for bits in bits_list:
                copy_ = copy.deepcopy(estimator)
                _final(copy_).set_params(quantize_bits=bits, quantize_method=method)
                quantize_network(_final(copy_), fit_data, 8192)
                rows.append(_row(task, data, seed, network, method, bits, copy_, reference,
                                 epoch_s))
        log(f"[{task['name']} seed {seed}] {network}: float loss {fmt(rows[-1 - len(QUANTIZERS) * len(bits_list)]['loss'])}")
    for network in ("dense", "neuron"):  # the headline rows, through fit itself
        estimator, _ = _fit(task, data, network, seed, memory, quantize_bits=4)
        final = _final(estimator)
        epoch_s = float(np.mean(final.history_dense_[:, "dur"]))
        reference = _outputs(task, fitted[network], data[1])
        rows.append(_row(task, data, seed, f"estimator_{network}", "ec_obs", 4, estimator,
                         reference, epoch_s))
    return rows, fitted


# ------------------------------------------------------------------------------ speed
SPEED_COLUMNS = ["task", "network", "variant", "disable_quant_qdq", "bytes", "loss",
                 "batch_ms", "row_us"]


def _tensor_onnx(final, quantized=None):
    """The export with plain tensor outputs (no ZipMap), float or quantised ``final``."""
    from skl2onnx import to_onnx

    import sk_ecprune.onnx  # noqa: F401

    model = final if quantized is None else quantized
    options = {"zipmap": False} if hasattr(final, "classes_") else None
    X = np.zeros((1, final.n_features_in_), dtype=np.float32)
    return to_onnx(model, X, options=options).SerializeToString()


def _dynamic(blob, workdir):
    """onnxruntime's ``quantize_dynamic`` (int8 weights, defaults) of a float export."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(workdir) / "float.onnx", Path(workdir) / "dynamic.onnx"
    src.write_bytes(blob)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return dst.read_bytes()


def _time_session(blob, disable, X_batch, repeats):
    """(ms per 10,000-row call, microseconds per one-row call), medians, one thread."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.add_session_config_entry("session.disable_quant_qdq", disable)
    session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def median_s(X, n):
        session.run(None, {name: X})  # warm-up
        times = []
        for _ in range(n):
            start = time.perf_counter()
            session.run(None, {name: X})
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    outputs = session.run(None, {name: X_batch})
    return (median_s(X_batch, max(3, repeats // 20)) * 1e3,
            median_s(X_batch[:1], repeats) * 1e6, outputs[-1])


def _onnx_loss(task, data, outputs):
    from sklearn.metrics import log_loss, mean_squared_error

    n = len(data[1])
    if task["kind"] == "classification":
        return log_loss(data[3], outputs[:n], labels=np.unique(data[2]))
    return mean_squared_error(data[3], outputs[:n].ravel())


def speed(task, data, fitted, seed, repeats):
    """onnxruntime timings of the float, int8, int4 and quantize_dynamic exports."""
    from sk_ecprune.estimators._quantize import quantize_network

    rows = []
    for network in ("dense", "neuron"):
        estimator = fitted[network]
        final = _final(estimator)
        X_test = data[1] if final is estimator else estimator[:-1].transform(data[1])
        X_batch = np.resize(np.asarray(X_test, dtype=np.float32), (10_000, X_test.shape[1]))
        X_batch[: len(X_test)] = X_test
        blobs = {"float": _tensor_onnx(final)}
        for bits in (8, 4):
            quantized = copy.deepcopy(final).set_params(quantize_bits=bits)
            quantize_network(quantized, _fit_data(estimator, data, seed), 8192)
            blobs[f"int{bits}"] = _tensor_onnx(final, quantized)
        with tempfile.TemporaryDirectory() as workdir:
            blobs["quantize_dynamic"] = _dynamic(blobs["float"], workdir)
        for variant, blob in blobs.items():
            for disable in (("0", "1") if variant.startswith("int") else ("0",)):
                batch_ms, row_us, out = _time_session(blob, disable, X_batch, repeats)
                rows.append(dict(task=task["name"], network=network, variant=variant,
                                 disable_quant_qdq=disable, bytes=len(blob),
                                 loss=_onnx_loss(task, data, out), batch_ms=batch_ms,
                                 row_us=row_us))
    return rows


def quantization_cost(cost):
    """Seconds of quantising every layer of a dense 784-h-h-10 network (digits 28x28,
    tiled to ``tile_to`` rows), per dense epoch (batch 32), scored on the default
    ``scoring_samples=8192`` rows."""
    import torch

    from sk_ecprune import PrunedMLPClassifier
    from sk_ecprune.datasets import load_digits_28x28
    from sk_ecprune.estimators._quantize import quantize_network

    torch.set_num_threads(1)
    X, y = load_digits_28x28(return_X_y=True)
    X, y = X[: cost.get("n_rows")], y[: cost.get("n_rows")]
    if cost.get("tile_to"):  # MNIST's size: the digits repeated, with a little noise
        reps = -(-cost["tile_to"] // len(X))
        noise = np.random.RandomState(0).normal(0, 0.05, (reps * len(X), X.shape[1]))
        X = (np.tile(X, (reps, 1)) + noise)[: cost["tile_to"]].astype(np.float32)
        y = np.tile(y, reps)[: cost["tile_to"]]
    clf = PrunedMLPClassifier(hidden_layer_sizes=cost["hidden"], max_epochs=cost["epochs"],
                              prune_ratio=0.0, finetune_epochs=0, random_state=0,
                              activation="prelu", batch_size=32, n_iter_no_change=None,
                              weight_decay=0.0).fit(X, y)
    epoch_s = float(np.mean(clf.history_dense_[:, "dur"]))
    data = SimpleNamespace(X=torch.as_tensor(np.asarray(X, dtype=np.float32)),
                           sample_weight=None, seed=0)
    rows = []
    for method in QUANTIZERS:
        quantized = copy.deepcopy(clf).set_params(quantize_bits=4, quantize_method=method)
        quantize_network(quantized, data, 8192)  # as fit: scoring_samples=8192 rows
        rows.append(dict(method=method, n_rows=len(X), epoch_s=epoch_s,
                         quantize_s=quantized.quantization_time_,
                         epochs=quantized.quantization_time_ / epoch_s))
    return rows


# ------------------------------------------------------------------- figures, tables
#: (network, method, label, style) of the figure's lines, the issue's four families.
FAMILIES = [
    ("dense", "float", "dense float", dict(color="black", marker="*", ms=12)),
    ("dense", "ec_obs", "dense int-b (ec_obs)", dict(color="C0", marker="o")),
    ("dense", "rtn", "dense int-b (rtn)", dict(color="C0", marker="x", ls=":")),
    ("weight", "float", "80% weight-pruned float", dict(color="C1", marker="s", ms=9)),
    ("weight", "ec_obs", "80% weight-pruned + int-b (ec_obs)", dict(color="C1", marker="o")),
    ("neuron", "float", "80% neuron-pruned float", dict(color="C2", marker="D", ms=9)),
    ("neuron", "ec_obs", "80% neuron-pruned + int-b (ec_obs)", dict(color="C2", marker="o")),
    ("neuron", "rtn", "80% neuron-pruned + int-b (rtn)", dict(color="C2", marker="x", ls=":")),
]


def _medians(frame):
    keys = ["task", "network", "method", "bits"]
    return frame.groupby(keys, sort=False)[["loss", "model_bytes", "gzip_bytes",
                                            "distortion", "quantize_epochs"]].median()


def plot(frame, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(frame.task.unique())
    med = _medians(frame).reset_index()
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.4), squeeze=False)
    for ax, task_name in zip(axes[0], tasks):
        rows = med[med.task == task_name]
        for network, method, label, style in FAMILIES:
            line = rows[(rows.network == network) & (rows.method == method)]
            line = line.sort_values("bits", ascending=False)
            if line.empty:
                continue
            ax.plot(line.model_bytes, line.loss, label=label, **style)
            if method != "float":
                for _, r in line.iterrows():
                    ax.annotate(f"{int(r.bits)}", (r.model_bytes, r.loss), fontsize=7,
                                xytext=(3, 3), textcoords="offset points")
        ax.set(xscale="log", yscale="log", xlabel="model_bytes_ (ONNX file, bytes)",
               ylabel="test loss", title=f"{task_name} ({frame[frame.task == task_name].architecture.iloc[0]})")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Test loss against model size, median over {frame.seed.nunique()} seeds "
                 "(numbers: bits)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def _loss(frame, task, network, method, bits):
    rows = frame[(frame.task == task) & (frame.network == network) & (frame.method == method)
                 & (frame.bits == bits)]
    return rows.set_index("seed").loss


def _wins(a, b):
    return int(sum(a[s] < b[s] for s in a.index if s in b.index)), len(a)


def targets(frame):
    """The issue's targets, met or missed, with the numbers (medians over seeds)."""
    out = []
    pde = next((t for t in frame.task.unique() if t.startswith("pde")), None)
    digits = "digits" if "digits" in set(frame.task) else None

    def verdict(ok):
        return "**met**" if ok else "**missed**"

    if pde:
        flt, q8 = _loss(frame, pde, "dense", "float", 32), _loss(frame, pde, "dense", "ec_obs", 8)
        ratio = (q8 / flt).median()
        out.append(f"- PDE int8 `ec_obs` within 5% of float: {ratio:.3f}x -> {verdict(ratio <= 1.05)}")
        q4, rtn4, gptq4 = (_loss(frame, pde, "dense", m, 4) for m in ("ec_obs", "rtn", "gptq"))
        ratio = (q4 / rtn4).median()
        wins, n = _wins(q4, gptq4)
        out.append(f"- PDE int4 `ec_obs` at most 0.3x `rtn`: {ratio:.3f}x -> {verdict(ratio <= 0.3)};"
                   f" below `gptq` in {wins}/{n} seeds -> {verdict(wins >= 2)}")
        dense_bytes = frame[(frame.task == pde) & (frame.network == "dense")
                            & (frame.method == "float")].model_bytes.median()
        for network in ("weight", "neuron"):
            q, r = (_loss(frame, pde, network, m, 4) for m in ("ec_obs", "rtn"))
            ratio = (q / r).median()
            size = frame[(frame.task == pde) & (frame.network == network)
                         & (frame.method == "ec_obs") & (frame.bits == 4)].model_bytes.median()
            line = (f"- PDE 80% {network}-pruned + int4 at most 0.25x `rtn`: {ratio:.3f}x -> "
                    f"{verdict(ratio <= 0.25)}")
            if network == "neuron":
                line += (f"; model_bytes_ {size / dense_bytes:.3f}x the dense float model's "
                         f"({size:.0f} / {dense_bytes:.0f}) -> {verdict(size <= 0.15 * dense_bytes)}")
            out.append(line)
    if digits:
        flt, q4 = _loss(frame, digits, "dense", "float", 32), _loss(frame, digits, "dense", "ec_obs", 4)
        ratio = (q4 / flt).median()
        out.append(f"- digits int4 `ec_obs` within 2% of float: {ratio:.3f}x -> {verdict(ratio <= 1.02)}")
        wins, n = _wins(_loss(frame, digits, "dense", "ec_obs", 2), _loss(frame, digits, "dense", "gptq", 2))
        out.append(f"- digits int2 `ec_obs` below `gptq` in {wins}/{n} seeds -> {verdict(wins >= 2)}")
    return out


def tables(frame, speed_frame=None, cost_frame=None):
    """summary.md: the targets, then per task the median test loss of every quantiser."""
    out = ["## Targets of the issue\n", *targets(frame), ""]
    med = _medians(frame)
    for task_name, rows in frame.groupby("task", sort=False):
        bits = sorted({int(b) for b in rows.bits if b < 32}, reverse=True)
        out.append(f"### {task_name} ({rows.architecture.iloc[0]}, {rows.seed.nunique()} seeds)\n")
        out.append("Median test loss (median model_bytes_ / gzip bytes) per network, "
                   "quantiser and bits; `float` is the unquantised network.\n")
        out += ["| network | method | float | " + " | ".join(f"int{b}" for b in bits) + " |",
                "|---|---|---|" + "---|" * len(bits)]
        for network in [n for n in (*NETWORKS, "estimator_dense", "estimator_neuron")
                        if n in set(rows.network)]:
            flt = med.loc[(task_name, network, "float", 32)] if (task_name, network, "float", 32) in med.index else None
            for method in [m for m in QUANTIZERS if m in set(rows[rows.network == network].method)]:
                cells = [fmt(flt.loss) + f" ({flt.model_bytes:.0f} / {flt.gzip_bytes:.0f})"
                         if flt is not None else "–"]
                for b in bits:
                    key = (task_name, network, method, b)
                    cells.append(f"{fmt(med.loc[key].loss)} ({med.loc[key].model_bytes:.0f} / "
                                 f"{med.loc[key].gzip_bytes:.0f})" if key in med.index else "–")
                out.append(f"| {network} | {method} | " + " | ".join(cells) + " |")
        out += ["", "Median output distortion against the float network (MSE of the "
                "predictions, or KL divergence of the probabilities) and quantisation time "
                "in dense epochs:\n",
                "| network | method | " + " | ".join(f"int{b}" for b in bits) + " |",
                "|---|---|" + "---|" * len(bits)]
        for network in [n for n in NETWORKS if n in set(rows.network)]:
            for method in QUANTIZERS:
                cells = [f"{fmt(med.loc[k].distortion)} / {med.loc[k].quantize_epochs:.2f}"
                         if (k := (task_name, network, method, b)) in med.index else "–"
                         for b in bits]
                out.append(f"| {network} | {method} | " + " | ".join(cells) + " |")
        out.append("")
    if speed_frame is not None and len(speed_frame):
        out += ["### onnxruntime, one thread (seed 0)\n",
                "| task | network | export | disable_quant_qdq | bytes | test loss | "
                "10,000 rows (ms) | 1 row (us) |", "|---|---|---|---|---|---|---|---|"]
        out += [f"| {r.task} | {r.network} | {r.variant} | {r.disable_quant_qdq} | {r.bytes} | "
                f"{fmt(r.loss)} | {r.batch_ms:.2f} | {r.row_us:.1f} |"
                for r in speed_frame.itertuples()]
        out.append("")
    if cost_frame is not None and len(cost_frame):
        out += ["### Cost of quantising every layer of 784-256-256-10 (4 bits)\n",
                "| method | rows | dense epoch (s) | quantisation (s) | in dense epochs |",
                "|---|---|---|---|---|"]
        out += [f"| {r.method} | {r.n_rows} | {r.epoch_s:.3f} | {r.quantize_s:.3f} | "
                f"{r.epochs:.2f} |" for r in cost_frame.itertuples()]
        out.append("")
    return "\n".join(out)


# ------------------------------------------------------------------------------- main
def _run(config, tasks, out_dir, log):
    rows, speed_rows = [], []
    with tempfile.TemporaryDirectory() as memory_dir:
        for task in tasks:
            data = load_task_data(task)
            log(f"[{task['name']}] n_train={len(data[0])} seeds={task['seeds']}")
            for seed in task["seeds"]:
                start = time.perf_counter()
                new, fitted = sweep(task, data, seed, config["bits"],
                                    str(Path(memory_dir) / task["name"]), log)
                rows += new
                log(f"[{task['name']} seed {seed}] {len(new)} rows in "
                    f"{time.perf_counter() - start:.0f} s")
                if seed == task["seeds"][0]:
                    speed_rows += speed(task, data, fitted, seed, config["speed_repeats"])
    write_rows(out_dir / "results.csv", rows, CSV_COLUMNS, append=False)
    write_rows(out_dir / "speed.csv", speed_rows, SPEED_COLUMNS, append=False)
    cost_rows = quantization_cost(config["cost"])
    write_rows(out_dir / "cost.csv", cost_rows, list(cost_rows[0]), append=False)


def main(argv=None):
    import pandas as pd

    cli = parser(__doc__.splitlines()[0], {"tiny": "seconds"})
    cli.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = cli.parse_args(argv)
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    log = Log()
    if not args.plot_only:
        config = configuration(args.mode)
        tasks = select_tasks(config["tasks"], args.tasks, cli)
        log(f"mode={args.mode} tasks={[t['name'] for t in tasks]} bits={config['bits']} "
            + environment_line())
        start = time.perf_counter()
        _run(config, tasks, out_dir, log)
        log(f"total wall time {time.perf_counter() - start:.0f} s")
    frame = pd.read_csv(out_dir / "results.csv")
    plot(frame, out_dir / "tradeoff.png")
    log(f"wrote {shown(out_dir / 'tradeoff.png')}")
    extra = [pd.read_csv(out_dir / name) if (out_dir / name).exists() else None
             for name in ("speed.csv", "cost.csv")]
    (out_dir / "summary.md").write_text(tables(frame, *extra))
    log(f"wrote {shown(out_dir / 'summary.md')}")
    if not args.plot_only:
        log.write(out_dir / "run.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
