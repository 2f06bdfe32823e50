"""Predict latency and model size: dense, masked, sparse formats, compacted, ONNX.

Run from the repository root (timing runs take the shared lock)::

    flock /tmp/sk_ecprune_bench.lock python benchmarks/bench_inference.py          # README
    flock /tmp/sk_ecprune_bench.lock python benchmarks/bench_inference.py --quick  # print only

For three networks -- 64-32-32-10 (digits), 784-256-256-10 (MNIST-sized) and a
(1024, 1024) regressor with 100 inputs -- and pruning ratios 0.5-0.95, in one process:

- ``dense``: the network before pruning;
- ``masked``: weight (unstructured) magnitude pruning, zeros inside the dense matrices (what
  ``net_.module_`` is after a ``granularity="weight"`` fit);
- ``scipy_csr``, ``torch_csr``, ``torch_bsr``: the masked network with every weight matrix in
  that sparse format (``y = x W^T + b`` computed as ``(W x^T)^T``);
- ``compacted``: whole units removed (structured magnitude pruning to the same weight
  budget), then :func:`sk_ecprune.compact` (what ``to_torch()`` returns after a
  ``granularity="neuron"`` fit);
- ``onnxruntime``: the compacted and the masked networks exported to ONNX, run by
  onnxruntime (if installed).

Latency: the median of repeated calls (1 row: 200 calls; 10,000 rows: 15 calls), interleaved
per configuration, with one torch thread (``--threads``) so that numbers do not depend on
the other load of the machine as much; ratios are to the dense network in the same run.
Size: bytes of ``torch.save`` of the state dict, and of the pickled estimator after a short
fit of each granularity.

The weights are random (an untrained network): speed and size do not depend on the values,
only on the shapes and the zeros; which weights the magnitude pruner removes changes only
which entries are zero.
"""

from __future__ import annotations

import argparse
import copy
import io
import pickle
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _common import environment_line, write_section

README = Path(__file__).with_name("README.md")
RESULTS = Path(__file__).with_name("results") / "inference"
MARK = "bench_inference"
NETWORKS = {
    "64-32-32-10": (64, (32, 32), 10),
    "784-256-256-10": (784, (256, 256), 10),
    "100-1024-1024-1": (100, (1024, 1024), 1),
}
RATIOS = (0.5, 0.7, 0.8, 0.9, 0.95)
BATCHES = {1: 200, 10_000: 15}


# ----------------------------------------------------------------------------- models
def dense_network(n_in, hidden, n_out, seed=0):
    from sk_ecprune.engine import MLP

    return MLP(n_in, n_out, hidden, "relu", random_state=seed).eval()


def pruned(network, ratio, granularity, X):
    """A copy of ``network`` pruned by magnitude to ``ratio`` (plain weights, zeros)."""
    from sk_ecprune import make_permanent, prune_model

    module = copy.deepcopy(network)
    prune_model(module, X, ratio=ratio, method="magnitude", granularity=granularity)
    return make_permanent(module).eval()


class SparseLinear(torch.nn.Module):
    """``y = x W^T + b`` with ``W`` held in a sparse format."""

    def __init__(self, linear, layout):
        super().__init__()
        weight = linear.weight.detach()
        self.layout = layout
        if layout == "scipy_csr":
            import scipy.sparse

            self.weight = scipy.sparse.csr_matrix(weight.numpy())
        elif layout == "torch_csr":
            self.weight = weight.to_sparse_csr()
        else:  # torch_bsr: 4x4 blocks where the shape allows, else 1x1
            block = (4, 4) if weight.shape[0] % 4 == 0 and weight.shape[1] % 4 == 0 else (1, 1)
            self.weight = weight.to_sparse_bsr(block)
        self.bias = linear.bias.detach()

    def forward(self, x):
        if self.layout == "scipy_csr":
            return torch.from_numpy(np.asarray(self.weight @ x.numpy().T).T) + self.bias
        return (self.weight @ x.T).T + self.bias


def sparse_network(masked, layout):
    layers = [SparseLinear(m, layout) if isinstance(m, torch.nn.Linear) else m
              for m in masked.layers]
    return torch.nn.Sequential(*layers).eval()


def onnx_session(module, n_in):
    """An onnxruntime session of ``module`` (via a fitted-estimator-free export), or None."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    buffer = io.BytesIO()
    torch.onnx.export(module, torch.zeros(1, n_in), buffer, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "n"}}, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x.numpy()})[0]


# ----------------------------------------------------------------------------- timing
def latency(models, n_in, rows, calls, rounds=5):
    """Median seconds per call of each model on ``rows`` rows, interleaved over rounds."""
    x = torch.randn(rows, n_in)
    times = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model(x)  # warm-up
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                for _ in range(calls // rounds):
                    model(x)
                times[name].append((time.perf_counter() - start) / (calls // rounds))
    return {name: statistics.median(t) for name, t in times.items()}


def state_dict_bytes(module):
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.tell()


def estimator_bytes(n_in, hidden, n_out, ratio, granularity):
    """Bytes of a pickled estimator fitted for one epoch of each stage on random data."""
    from sk_ecprune import PrunedMLPRegressor

    rng = np.random.RandomState(0)
    X, y = rng.randn(512, n_in).astype(np.float32), rng.randn(512, n_out).astype(np.float32)
    est = PrunedMLPRegressor(hidden_layer_sizes=hidden, activation="relu", prune_ratio=ratio,
                             method="magnitude", granularity=granularity, max_epochs=1,
                             finetune_epochs=1, prune_steps=1, batch_size=256,
                             random_state=0).fit(X, y)
    return len(pickle.dumps(est))


def measure(name, n_in, hidden, n_out, ratios, log):
    """One table row per ratio: latencies (1 row, 10,000 rows) and sizes."""
    dense = dense_network(n_in, hidden, n_out)
    X = torch.randn(2048, n_in)
    rows = []
    for ratio in ratios:
        masked = pruned(dense, ratio, "weight", X)
        compacted = __import__("sk_ecprune").compact(pruned(dense, ratio, "neuron", X)).eval()
        models = {"dense": dense, "masked": masked, "compacted": compacted}
        models.update({layout: sparse_network(masked, layout)
                       for layout in ("scipy_csr", "torch_csr", "torch_bsr")})
        for label, module in (("onnx_compacted", compacted), ("onnx_masked", masked)):
            session = onnx_session(module, n_in)
            if session is not None:
                models[label] = session
        row = dict(network=name, ratio=ratio,
                   widths="-".join(str(m.out_features) for m in compacted
                                   if isinstance(m, torch.nn.Linear)),
                   dense_bytes=state_dict_bytes(dense), masked_bytes=state_dict_bytes(masked),
                   compacted_bytes=state_dict_bytes(compacted))
        for batch, calls in BATCHES.items():
            for model, seconds in latency(models, n_in, batch, calls).items():
                row[f"{model}_{batch}"] = seconds
        rows.append(row)
        log(_row_text(row))
    return rows


def _row_text(row):
    parts = [f"{row['network']} r={row['ratio']:g} ({row['widths']})"]
    for batch in BATCHES:
        dense = row[f"dense_{batch}"]
        speedups = ", ".join(f"{k.rsplit('_', 1)[0]} {dense / v:.2f}x"
                             for k, v in row.items()
                             if k.endswith(f"_{batch}") and not k.startswith("dense"))
        parts.append(f"{batch} rows: dense {dense * 1e3:.3f} ms; {speedups}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- output
def tables(rows):
    """Markdown: speed-up over dense (1 row and 10,000 rows) and size ratios."""
    formats = ["masked", "scipy_csr", "torch_csr", "torch_bsr", "compacted",
               "onnx_masked", "onnx_compacted"]
    formats = [f for f in formats if f"{f}_1" in rows[0]]
    lines = []
    for batch in BATCHES:
        lines += [f"**Predict speed-up over the dense network, {batch:,} row(s)** (dense: "
                  "median ms per call)", "",
                  "| network | r | compacted widths | dense ms | " + " | ".join(formats) + " |",
                  "|---|---|---|---:|" + "---:|" * len(formats)]
        for row in rows:
            dense = row[f"dense_{batch}"]
            lines.append(f"| {row['network']} | {row['ratio']:g} | {row['widths']} | "
                         f"{dense * 1e3:.3f} | " + " | ".join(
                             f"{dense / row[f'{f}_{batch}']:.2f}x" for f in formats) + " |")
        lines.append("")
    lines += ["**Saved state dict** (`torch.save`), bytes and ratio to dense", "",
              "| network | r | dense | masked | compacted |", "|---|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['network']} | {row['ratio']:g} | {row['dense_bytes']:,} | "
                     f"{row['masked_bytes'] / row['dense_bytes']:.2f} | "
                     f"{row['compacted_bytes'] / row['dense_bytes']:.2f} |")
    return lines


def main(argv=None):
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--quick", action="store_true", help="two networks, two ratios; print only")
    cli.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = cli.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines = []

    def log(message):
        print(message, flush=True)
        lines.append(message)

    log(f"{environment_line()}; torch threads {torch.get_num_threads()}")
    networks = dict(list(NETWORKS.items())[:2]) if args.quick else NETWORKS
    ratios = (0.5, 0.9) if args.quick else RATIOS
    rows = []
    for name, (n_in, hidden, n_out) in networks.items():
        rows += measure(name, n_in, hidden, n_out, ratios, log)
    sizes = []
    for name, (n_in, hidden, n_out) in networks.items():
        dense = estimator_bytes(n_in, hidden, n_out, 0.0, "weight")
        for ratio in (0.8,):
            weight = estimator_bytes(n_in, hidden, n_out, ratio, "weight")
            neuron = estimator_bytes(n_in, hidden, n_out, ratio, "neuron")
            sizes.append(f"| {name} | {dense:,} | {weight / dense:.2f} | {neuron / dense:.2f} |")
    table = tables(rows) + ["", "**Pickled estimator** at r = 0.8 (a regressor fitted one epoch "
                            "per stage), bytes and ratio to the dense estimator", "",
                            "| network | dense | weight-pruned | neuron-pruned |",
                            "|---|---:|---:|---:|", *sizes]
    print("\n".join(table))
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        import pandas as pd

        pd.DataFrame(rows).to_csv(RESULTS / "results.csv", index=False)
        command = "flock /tmp/sk_ecprune_bench.lock python benchmarks/bench_inference.py"
        write_section(MARK, [f"## bench_inference (`{command}`)", "", *lines, "", *table])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
