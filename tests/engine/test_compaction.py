"""Compaction (issue #14): equivalence, exact shapes, refusals, pruning masks.

The expected shapes come from an independent characterisation: a hidden unit survives iff
it lies on a path of non-zero weights from an input feature to an output (computed by
forward reachability and backward co-reachability), cross-checked against a naive
one-unit-at-a-time removal loop.
"""

import math
import zlib

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from sk_ecprune.engine import compact, hidden_widths
from sk_ecprune.engine.chain import ELEMENTWISE
from sk_ecprune.engine import MLP


# --- activations -----------------------------------------------------------------------


def _prelu_per_unit(width):
    act = nn.PReLU(num_parameters=width)
    with torch.no_grad():
        act.weight.uniform_(-1.0, 1.0)  # distinct slopes, so wrong slicing shows
    return act


def _prelu_one(width):
    act = nn.PReLU()
    with torch.no_grad():
        act.weight.fill_(-0.3)
    return act


ACTIVATIONS = {
    "identity": lambda w: nn.Identity(),
    "sigmoid": lambda w: nn.Sigmoid(),
    "tanh": lambda w: nn.Tanh(),
    "relu": lambda w: nn.ReLU(),
    "relu_inplace": lambda w: nn.ReLU(inplace=True),
    "prelu_one": _prelu_one,
    "prelu_per_unit": _prelu_per_unit,
    "gelu": lambda w: nn.GELU(),
    "gelu_tanh": lambda w: nn.GELU(approximate="tanh"),
    "silu": lambda w: nn.SiLU(),
    "leaky_relu": lambda w: nn.LeakyReLU(0.1),
    "elu": lambda w: nn.ELU(alpha=0.7),
    "softplus": lambda w: nn.Softplus(beta=2.0, threshold=5.0),
    "dropout": lambda w: nn.Dropout(0.3),
    "stack": lambda w: nn.Sequential(_prelu_per_unit(w), nn.Dropout(0.1), nn.Tanh()),
}


# --- networks --------------------------------------------------------------------------


def make_net(widths, activation, dtype=torch.float64, seed=0, bias=True):
    """``Linear, act, ..., Linear`` with biases away from zero (so folds matter)."""
    torch.manual_seed(seed)
    blocks = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        linear = nn.Linear(n_in, n_out, bias=bias)
        with torch.no_grad():
            if bias:
                linear.bias.uniform_(-1.5, 1.5)
        blocks.append(linear)
        if i < len(widths) - 2:
            blocks.append(ACTIVATIONS[activation](n_out))
    return nn.Sequential(*blocks).to(dtype).eval()


def linears(module):
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def weight_of(linear):
    return linear.weight_orig * linear.weight_mask if hasattr(linear, "weight_orig") else linear.weight


def random_zeros(net, generator, p_row=0.2, p_col=0.2, p_entry=0.3, p_layer=0.0):
    """Zero random rows (dead units), columns (unused units), entries and whole layers."""
    layers = linears(net)
    with torch.no_grad():
        for index, layer in enumerate(layers):
            w = layer.weight
            w[torch.rand(w.shape, generator=generator) < p_entry] = 0.0
            if index < len(layers) - 1:  # hidden units only: rows here, columns next layer
                w[torch.rand(w.shape[0], generator=generator) < p_row] = 0.0
                nxt = layers[index + 1].weight
                nxt[:, torch.rand(nxt.shape[1], generator=generator) < p_col] = 0.0
            if torch.rand(1, generator=generator).item() < p_layer:
                w.zero_()


def expected_units(weights, atol=0.0):
    """Kept hidden units per hidden layer: those on a non-zero input-to-output path."""
    nonzero = [w.detach().abs() > atol for w in weights]
    reach = [torch.ones(nonzero[0].shape[1], dtype=torch.bool)]
    for nz in nonzero:
        reach.append(nz[:, reach[-1]].any(dim=1))
    co = [torch.ones(nonzero[-1].shape[0], dtype=torch.bool)]
    for nz in reversed(nonzero):
        co.insert(0, nz[co[0], :].any(dim=0))
    return [torch.nonzero(r & c).flatten().tolist() for r, c in zip(reach[1:-1], co[1:-1])]


def naive_units(weights, atol=0.0):
    """The same by removing one offending unit at a time until none is left."""
    nonzero = [w.detach().abs() > atol for w in weights]
    alive = [set(range(w.shape[0])) for w in weights[:-1]]
    changed = True
    while changed:
        changed = False
        for layer, units in enumerate(alive):
            sources = range(weights[0].shape[1]) if layer == 0 else alive[layer - 1]
            targets = alive[layer + 1] if layer + 1 < len(alive) else range(weights[-1].shape[0])
            for j in sorted(units):
                has_in = any(nonzero[layer][j, i] for i in sources)
                has_out = any(nonzero[layer + 1][k, j] for k in targets)
                if not (has_in and has_out):
                    units.discard(j)
                    changed = True
                    break
    return [sorted(units) for units in alive]


def check_equivalent(original, compacted, n_features, dtype, seed=1):
    torch.manual_seed(seed)
    x = 3 * torch.randn(64, n_features, dtype=dtype)
    with torch.no_grad():
        expected, got = original(x), compacted(x)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got, expected, **tol)


def check_shapes(original, compacted, atol=0.0):
    """Layer shapes, kept weight entries and per-unit slopes match the expected units."""
    weights = [weight_of(layer) for layer in linears(original)]
    units = expected_units(weights, atol)
    assert units == naive_units(weights, atol)
    new = linears(compacted)
    assert [tuple(layer.weight.shape) for layer in new] == expected_shapes(weights, units)
    rows = units + [list(range(weights[-1].shape[0]))]
    cols = [list(range(weights[0].shape[1]))] + units
    for w, layer, r, c in zip(weights, new, rows, cols):
        # kept entries are copied, never recomputed
        assert torch.equal(layer.weight.detach(), w.detach()[r][:, c])
    return units


def expected_shapes(weights, units):
    widths = [weights[0].shape[1], *(len(u) for u in units), weights[-1].shape[0]]
    if any(len(u) == 0 for u in units):  # constant output: every hidden layer is empty
        widths = [widths[0], *(0 for _ in units), widths[-1]]
    return [(n_out, n_in) for n_in, n_out in zip(widths[:-1], widths[1:])]


def state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_state(before, module):
    after = module.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key


def assert_plain(module):
    """No hooks, no masks or other buffers, only plain Parameters."""
    assert not list(module.buffers())
    for sub in module.modules():
        assert not (sub._forward_hooks or sub._forward_pre_hooks or sub._backward_hooks)
        assert not prune.is_pruned(sub)
        assert all(type(p) is nn.Parameter for p in sub.parameters(recurse=False))
        assert type(sub) in (nn.Sequential, nn.Linear, *ELEMENTWISE)


# --- equivalence and shapes -------------------------------------------------------------


DEPTHS = [(5, 7, 3), (6, 8, 7, 2), (4, 9, 6, 8, 3), (3, 5, 5, 5, 5, 4)]


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("widths", DEPTHS, ids=lambda w: "-".join(map(str, w)))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_random_networks(activation, widths, dtype):
    generator = torch.Generator().manual_seed(zlib.crc32(repr((activation, widths)).encode()))
    for trial in range(6):
        net = make_net(widths, activation, dtype, seed=trial)
        random_zeros(net, generator, p_layer=0.1 if trial >= 3 else 0.0)
        before = state(net)
        compacted = compact(net)
        assert_same_state(before, net)
        check_shapes(net, compacted)
        check_equivalent(net, compacted, widths[0], dtype)
        assert_plain(compacted)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_units_with_both_zero_rows_and_columns(activation):
    net = make_net((4, 6, 6, 3), activation)
    with torch.no_grad():
        net[0].weight[[1, 4]] = 0.0
        net[2].weight[:, [1, 2]] = 0.0  # unit 1 of layer 1 is dead and unused
        net[2].weight[5] = 0.0
        net[4].weight[:, [0, 5]] = 0.0
    compacted = compact(net)
    assert hidden_widths(compacted) == (3, 4)
    check_shapes(net, compacted)
    check_equivalent(net, compacted, 4, torch.float64)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_cascade_needs_iteration(activation):
    """Folding a dead unit empties a row downstream; dropping a unit empties a column."""
    net = make_net((3, 4, 4, 4, 2), activation)
    with torch.no_grad():
        net[0].weight[0] = 0.0  # layer-1 unit 0 dead ...
        net[2].weight[1] = 0.0
        net[2].weight[1, 0] = 2.0  # ... so layer-2 unit 1, fed only by it, becomes dead
        net[6].weight[:, 3] = 0.0  # layer-3 unit 3 unused ...
        net[4].weight[:, 2] = 0.0
        net[4].weight[3, 2] = 1.0  # ... so layer-2 unit 2, read only by it, becomes unused
    compacted = compact(net)
    assert hidden_widths(compacted) == (3, 2, 3)
    check_shapes(net, compacted)
    check_equivalent(net, compacted, 3, torch.float64)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("where", ["first_weight", "middle_weight", "last_weight"])
def test_constant_output_collapses_to_zero_width(activation, where):
    net = make_net((5, 6, 4, 3), activation)
    with torch.no_grad():
        {"first_weight": net[0], "middle_weight": net[2], "last_weight": net[4]}[where].weight.zero_()
    compacted = compact(net)
    assert hidden_widths(compacted) == (0, 0)
    assert [tuple(layer.weight.shape) for layer in linears(compacted)] == [(0, 5), (0, 0), (3, 0)]
    check_equivalent(net, compacted, 5, torch.float64)
    x = torch.randn(7, 5, dtype=torch.float64)
    with torch.no_grad():
        out = compacted(x)
    assert out.shape == (7, 3) and torch.equal(out, out[:1].expand(7, 3))
    torch.testing.assert_close(out[0], linears(compacted)[-1].bias.detach(), rtol=0, atol=0)
    compacted(x).sum().backward()  # a zero-width network still trains its final bias


def test_no_hidden_layer_and_untouched_network_are_copies():
    net = make_net((4, 3), "relu")
    compacted = compact(net)
    assert hidden_widths(compacted) == ()
    assert compacted[0].weight.data_ptr() != net[0].weight.data_ptr()
    dense = make_net((4, 5, 3), "tanh")
    compacted = compact(dense)
    assert hidden_widths(compacted) == (5,)
    with torch.no_grad():
        compacted[0].weight.add_(1.0)
    assert not torch.equal(compacted[0].weight, dense[0].weight)


def test_activations_before_first_and_after_last_layer_are_kept():
    torch.manual_seed(0)
    net = nn.Sequential(
        _prelu_per_unit(4), nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3), _prelu_per_unit(3)
    ).double()
    with torch.no_grad():
        net[1].weight[2] = 0.0
    compacted = compact(net)
    assert [type(m) for m in compacted] == [nn.PReLU, nn.Linear, nn.Tanh, nn.Linear, nn.PReLU]
    assert compacted[0].num_parameters == 4 and compacted[4].num_parameters == 3
    check_equivalent(net, compacted, 4, torch.float64)


def test_nested_sequential_and_consecutive_linears():
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Linear(6, 5), nn.Sequential(nn.Linear(5, 4), nn.ELU()))
    net = nn.Sequential(nn.Linear(3, 6), nn.GELU(), inner, nn.Linear(4, 2)).double()
    with torch.no_grad():
        net[0].weight[0] = 0.0
        inner[0].weight[:, 3] = 0.0
    compacted = compact(net)
    assert hidden_widths(net) == (6, 5, 4)
    assert hidden_widths(compacted) == (4, 5, 4)
    assert all(not isinstance(m, nn.Sequential) for m in compacted)
    check_shapes(net, compacted)
    check_equivalent(net, compacted, 3, torch.float64)


def test_layer_without_bias_gets_one_only_when_a_constant_is_folded():
    net = make_net((4, 5, 5, 2), "sigmoid", bias=False)  # sigmoid(0) = 0.5 is folded
    with torch.no_grad():
        net[0].weight[1] = 0.0
    compacted = compact(net)
    assert compacted[2].bias is not None and compacted[4].bias is None
    assert compacted[2].bias.requires_grad
    check_equivalent(net, compacted, 4, torch.float64)
    relu = make_net((4, 5, 2), "relu", bias=False)  # relu(0) = 0: nothing to fold
    with torch.no_grad():
        relu[0].weight[1] = 0.0
    assert compact(relu)[2].bias is None


def test_inplace_activation_does_not_clobber_kept_biases():
    net = make_net((3, 4, 2), "relu_inplace")
    with torch.no_grad():
        net[0].bias.copy_(torch.tensor([-1.0, -2.0, 0.5, -0.5], dtype=torch.float64))
        net[0].weight[1] = 0.0
    compacted = compact(net)
    torch.testing.assert_close(compacted[0].bias, net[0].bias[[0, 2, 3]], rtol=0, atol=0)
    check_equivalent(net, compacted, 3, torch.float64)


def test_atol_drops_small_weights():
    net = make_net((4, 6, 3), "tanh")
    with torch.no_grad():
        net[0].weight[2] = 1e-9
        net[2].weight[:, 4] = -1e-9
    assert hidden_widths(compact(net)) == (6,)
    compacted = compact(net, atol=1e-8)
    assert hidden_widths(compacted) == (4,)
    check_shapes(net, compacted, atol=1e-8)
    x = torch.randn(16, 4, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(compacted(x), net(x), rtol=0, atol=1e-7)


@pytest.mark.parametrize("atol", [-1.0, math.nan, math.inf])
def test_bad_atol(atol):
    with pytest.raises(ValueError, match="atol"):
        compact(make_net((3, 4, 2), "relu"), atol=atol)


# --- dtype, device, grad flags, training mode ---------------------------------------------


def test_requires_grad_dtype_and_training_flag_are_kept():
    net = make_net((4, 6, 5, 2), "prelu_per_unit", dtype=torch.float32)
    net[0].weight.requires_grad_(False)
    net[1].weight.requires_grad_(False)
    net[2].bias.requires_grad_(False)
    net.train()
    net[3].eval()
    with torch.no_grad():
        net[0].weight[0] = 0.0
    compacted = compact(net)
    assert [p.requires_grad for p in compacted.parameters()] == [False, True, False, True, False, True, True, True]
    assert all(p.dtype == torch.float32 for p in compacted.parameters())
    assert compacted.training and compacted[0].training and not compacted[3].training


def test_dropout_network_in_training_mode_is_equivalent_in_eval_mode():
    net = make_net((4, 8, 3), "dropout").train()
    with torch.no_grad():
        net[0].weight[[0, 3]] = 0.0
    compacted = compact(net)
    assert compacted.training and compacted[1].training and compacted[1].p == 0.3
    check_equivalent(net.eval(), compacted.eval(), 4, torch.float64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device_is_kept():
    net = make_net((4, 6, 5, 2), "prelu_per_unit").cuda()
    with torch.no_grad():
        net[0].weight[1] = 0.0
        net[2].weight[:, 2] = 0.0
    compacted = compact(net)
    assert all(p.is_cuda for p in compacted.parameters())
    x = torch.randn(8, 4, dtype=torch.float64, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(compacted(x), net(x), rtol=1e-12, atol=1e-12)


# --- torch.nn.utils.prune ---------------------------------------------------------------------


def test_prune_masks_are_honoured_and_left_in_place():
    net = make_net((6, 10, 8, 3), "prelu_per_unit")
    prune.ln_structured(net[0], "weight", amount=0.4, n=1, dim=0)  # dead units
    prune.ln_structured(net[2], "weight", amount=0.3, n=1, dim=1)  # unused units
    prune.l1_unstructured(net[2], "weight", amount=0.5)  # a PruningContainer now
    prune.l1_unstructured(net[4], "bias", amount=0.5)
    prune.l1_unstructured(net[1], "weight", amount=0.5)  # a pruned PReLU slope
    before = state(net)
    hooks = {name: dict(m._forward_pre_hooks) for name, m in net.named_children()}
    compacted = compact(net)
    assert_same_state(before, net)
    assert {name: dict(m._forward_pre_hooks) for name, m in net.named_children()} == hooks
    assert prune.is_pruned(net) and not prune.is_pruned(compacted)
    assert_plain(compacted)
    check_shapes(net, compacted)
    check_equivalent(net, compacted, 6, torch.float64)


def test_stale_pruned_weight_attribute_is_not_used():
    """weight is only refreshed at the next forward; weight_orig * weight_mask is the truth."""
    net = make_net((4, 6, 2), "tanh")
    prune.random_unstructured(net[0], "weight", amount=0.5)
    with torch.no_grad():
        net[0].weight_orig[3] = 0.0  # net[0].weight still shows the old row 3
    compacted = compact(net)
    units = check_shapes(net, compacted)
    assert 3 not in units[0]
    check_equivalent(net, compacted, 4, torch.float64)


def test_parametrized_mask():
    class Mask(nn.Module):
        def __init__(self, mask):
            super().__init__()
            self.register_buffer("mask", mask)

        def forward(self, w):
            return w * self.mask

    net = make_net((4, 6, 2), "silu")
    mask = torch.ones(6, 4, dtype=torch.float64)
    mask[[1, 5]] = 0.0
    parametrize.register_parametrization(net[0], "weight", Mask(mask))
    compacted = compact(net)
    assert hidden_widths(compacted) == (4,)
    assert_plain(compacted)
    check_equivalent(net, compacted, 4, torch.float64)


def test_eighty_percent_of_neurons_pruned_parameter_count():
    widths = (20, 50, 50, 50, 5)
    net = make_net(widths, "relu", seed=3)
    generator = torch.Generator().manual_seed(0)
    layers = linears(net)
    with torch.no_grad():
        for index, layer in enumerate(layers[:-1]):
            removed = torch.randperm(layer.out_features, generator=generator)[:40]
            rows = torch.rand(40, generator=generator) < 0.5
            layer.weight[removed[rows]] = 0.0  # half of them dead (zero row) ...
            layers[index + 1].weight[:, removed[~rows]] = 0.0  # ... half unused (zero column)
    compacted = compact(net)
    assert hidden_widths(compacted) == (10, 10, 10)
    kept = (20 * 10 + 10) + (10 * 10 + 10) * 2 + (10 * 5 + 5)
    dense = sum(p.numel() for p in net.parameters())
    assert dense == (20 * 50 + 50) + (50 * 50 + 50) * 2 + (50 * 5 + 5)
    assert sum(p.numel() for p in compacted.parameters()) == kept
    print(f"\nparameters: dense {dense}, compacted {kept} ({1 - kept / dense:.1%} fewer)")
    check_equivalent(net, compacted, 20, torch.float64)


def test_eighty_percent_of_wide_hidden_units_removed_shrinks_the_layers():
    # (the speed of the result is measured in benchmarks/bench_inference.py)
    net = make_net((784, 256, 256, 10), "relu", dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for index in (0, 2):
            removed = torch.randperm(256, generator=generator)[: int(0.8 * 256)]
            net[index].weight[removed] = 0.0
    compacted = compact(net)
    assert hidden_widths(compacted) == (52, 52)
    check_equivalent(net, compacted, 784, torch.float32)


# --- modules exposing sequential_chain() --------------------------------------------------------


class ChainMLP(nn.Module):
    """Mirror of sk_ecprune's MLP: forward and sequential_chain from one class."""

    def __init__(self, widths, activation="prelu_one"):
        super().__init__()
        self.layers = make_net(widths, activation)

    def sequential_chain(self):
        return self.layers

    def forward(self, x):
        return self.layers(x)


class ChainSubclass(ChainMLP):
    """Inherits both methods: still the chain."""


class ForwardOverride(ChainMLP):
    def forward(self, x):
        return 2 * self.layers(x)


class BadChain(ChainMLP):
    def sequential_chain(self):
        return [self.layers]

    def forward(self, x):
        return self.layers(x)


@pytest.mark.parametrize("cls", [ChainMLP, ChainSubclass])
def test_module_with_sequential_chain(cls):
    model = cls((5, 8, 6, 2))
    with torch.no_grad():
        model.layers[0].weight[[0, 1]] = 0.0
    before = state(model)
    compacted = compact(model)
    assert_same_state(before, model)
    assert isinstance(compacted, nn.Sequential)
    assert hidden_widths(model) == (8, 6) and hidden_widths(compacted) == (6, 6)
    check_equivalent(model, compacted, 5, torch.float64)


@pytest.mark.parametrize("activation", ["prelu", "relu", "logistic"])
def test_package_mlp_roundtrip(activation):
    """The compacted chain loads into the package's MLP built with hidden_widths()."""
    mlp = MLP(6, 3, (16, 12), activation, random_state=0).double().eval()
    generator = torch.Generator().manual_seed(1)
    random_zeros(mlp, generator, p_row=0.3, p_col=0.3, p_entry=0.2)
    compacted = compact(mlp)
    check_shapes(mlp, compacted)
    rebuilt = MLP(6, 3, hidden_widths(compacted), activation).double().eval()
    rebuilt.layers.load_state_dict(compacted.state_dict())
    check_equivalent(mlp, rebuilt, 6, torch.float64)


# --- refusals ------------------------------------------------------------------------------


def _hooked_activation():
    net = make_net((3, 4, 2), "relu")
    net[1].register_forward_hook(lambda module, inputs, output: output * 2)
    return net


def _hooked_linear():
    net = make_net((3, 4, 2), "relu")
    net[0].register_forward_pre_hook(lambda module, inputs: (inputs[0] + 1,))
    return net


class SequentialWithForward(nn.Sequential):
    def forward(self, x):
        return super().forward(x) + 1


REFUSALS = {
    "forward_override": (lambda: ForwardOverride((3, 4, 2)), r"forward is defined by ForwardOverride"),
    "chain_not_sequential": (lambda: BadChain((3, 4, 2)), r"returned a list, not an nn.Sequential"),
    "plain_module": (lambda: nn.Module(), r"no sequential_chain"),
    "linear_alone": (lambda: nn.Linear(3, 2), r"no sequential_chain"),
    "not_a_module": (lambda: [nn.Linear(3, 2)], r"Expected a torch.nn.Module"),
    "sequential_subclass": (lambda: SequentialWithForward(nn.Linear(3, 2)), r"overriding forward"),
    "nested_subclass": (lambda: nn.Sequential(SequentialWithForward(nn.Linear(3, 2))),
                        r"overrides nn.Sequential.forward"),
    "layer_norm": (lambda: nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2)),
                   r"1 is a LayerNorm, not supported"),
    "softmax": (lambda: nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=1), nn.Linear(4, 2)),
                r"Softmax, not supported"),
    "conv": (lambda: nn.Sequential(nn.Conv1d(1, 1, 3)), r"Conv1d, not supported"),
    "hooked_activation": (_hooked_activation, r"1 \(ReLU\) has forward hooks"),
    "hooked_linear": (_hooked_linear, r"0 \(Linear\) has forward hooks"),
    "shape_mismatch": (lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(5, 2)),
                       r"2 takes 5 inputs but 0 produces 4"),
    "prelu_slopes": (lambda: nn.Sequential(nn.Linear(3, 4), nn.PReLU(3), nn.Linear(4, 2)),
                     r"PReLU after 0 has 3 slopes; expected 1 or one per unit \(4\)"),
    "lazy": (lambda: nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.Linear(4, 2)), r"lazy"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals(case):
    build, message = REFUSALS[case]
    module = build()
    with pytest.raises(ValueError, match=message) as info:
        compact(module)
    if case not in ("shape_mismatch", "prelu_slopes", "lazy"):
        assert "Supported: an nn.Sequential" in str(info.value)  # says what is supported
    if case not in ("shape_mismatch", "prelu_slopes", "lazy"):
        with pytest.raises(ValueError):
            hidden_widths(module)
