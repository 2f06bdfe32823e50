"""Independent reference computations for the engine's tests.

Nothing here uses the engine's hooks or its closed form: the paper's definition is evaluated
from per-sample Jacobians of the output with respect to every weight and bias, taken with
``torch.autograd.functional.jacobian`` one sample at a time, and the minimisation over the
bias shift is solved as the one-dimensional least-squares problem it is.
"""

import torch
from torch import nn
from torch.func import functional_call


class ResidualMLP(nn.Module):
    """A user's network that is not a Sequential: a skip connection around a hidden layer."""

    def __init__(self, n_in, width, n_out):
        super().__init__()
        self.inp = nn.Linear(n_in, width)
        self.hidden = nn.Linear(width, width)
        self.out = nn.Linear(width, n_out)
        self.act = nn.PReLU()

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        h = h + self.act(self.hidden(h))
        return self.out(h)


def random_mlp(sizes, activation, seed, dtype=torch.float64):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers).to(dtype)


def linear_names(module):
    return [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]


def per_sample_jacobians(module, X):
    """For each sample: output, and d y / d W, d y / d b for every linear layer."""
    names = linear_names(module)
    keys = [f"{n}.weight" for n in names] + [f"{n}.bias" for n in names]
    params = dict(module.named_parameters())
    values = tuple(params[k].detach() for k in keys)
    for n in range(X.shape[0]):

        def output(*p):
            return functional_call(module, dict(zip(keys, p)), (X[n : n + 1],)).reshape(-1)

        jac = torch.autograd.functional.jacobian(output, values)
        with torch.no_grad():
            y = output(*values)
        L = len(names)
        yield y, jac[:L], jac[L:]


def metric_matrix(y, metric):
    if metric == "euclidean":
        return torch.eye(y.numel(), dtype=y.dtype)
    p = torch.softmax(y, 0)
    return torch.diag(p) - torch.outer(p, p)


def reference_ec(module, X, metric="euclidean"):
    """The paper's I_ij = min_db E[dy^T M dy], dy = dy/dW_ij W_ij - dy/db_i db, and its argmin."""
    module = module.eval()
    weights = [m.weight.detach() for m in module.modules() if isinstance(m, nn.Linear)]
    sww = [torch.zeros_like(W) for W in weights]
    swb = [torch.zeros_like(W) for W in weights]
    sbb = [torch.zeros(W.shape[0], dtype=W.dtype) for W in weights]
    for y, jw, jb in per_sample_jacobians(module, X):
        M = metric_matrix(y, metric)
        for l, W in enumerate(weights):
            dw = jw[l] * W  # (K, U, in): output change per unit of each weight's removal
            Mdw = torch.einsum("km,muj->kuj", M, dw)
            sww[l] += (dw * Mdw).sum(0)
            swb[l] += torch.einsum("kuj,ku->uj", Mdw, jb[l])
            sbb[l] += torch.einsum("ku,km,mu->u", jb[l], M, jb[l])
    scores, shifts = [], []
    for l in range(len(weights)):
        safe = torch.where(sbb[l] > 0, sbb[l], torch.ones_like(sbb[l])).unsqueeze(1)
        shift = torch.where(sbb[l].unsqueeze(1) > 0, swb[l] / safe, 0.0)
        score = (sww[l] - swb[l] * shift) / X.shape[0]
        scores.append(score)
        shifts.append(shift)
    return scores, shifts


def literal_nonlinear(module, X):
    """Paper eq. 3 by a loop: zero one weight, shift its bias by W_ij E[z_j], forward."""
    import copy

    module = module.eval()
    names = linear_names(module)
    inputs = {}
    hooks = [
        dict(module.named_modules())[n].register_forward_hook(
            lambda m, a, o, n=n: inputs.__setitem__(n, a[0].detach())
        )
        for n in names
    ]
    with torch.no_grad():
        y0 = module(X)
    for h in hooks:
        h.remove()
    scores = []
    for n in names:
        W = dict(module.named_modules())[n].weight.detach()
        mean = inputs[n].mean(0)
        score = torch.zeros_like(W)
        for i in range(W.shape[0]):
            for j in range(W.shape[1]):
                pruned = copy.deepcopy(module)
                layer = dict(pruned.named_modules())[n]
                with torch.no_grad():
                    layer.weight[i, j] = 0
                    layer.bias[i] += W[i, j] * mean[j]
                    score[i, j] = (pruned(X) - y0).square().sum(1).mean()
        scores.append(score)
    return scores


def reference_unit_hessians(module, X, metric="euclidean"):
    """Per layer, per unit ``i``: ``H_i = E[J_i^T M J_i]`` of the augmented row ``(w_i, b_i)``,
    ``J_i`` the output's per-sample Jacobian with respect to that row (float64, all rows)."""
    module = module.eval()
    hessians = None
    for y, jw, jb in per_sample_jacobians(module, X):
        M = metric_matrix(y, metric)
        rows = [torch.cat([w, b.unsqueeze(2)], 2) for w, b in zip(jw, jb)]  # (K, U, in + 1)
        terms = [torch.einsum("kui,km,muj->uij", r, M, r) for r in rows]
        hessians = terms if hessians is None else [h + t for h, t in zip(hessians, terms)]
    return [h / X.shape[0] for h in hessians]


def obs_set_removal(H, row, removed):
    """OBS removal of the entries ``removed`` of an augmented ``row`` (its last entry, the
    bias, always kept) by a direct solve: the kept entries ``R`` move to
    ``argmin (delta^T H delta)`` with ``delta_S = -row_S``; returns ``(cost, new_row)``."""
    S = torch.as_tensor(sorted(removed))
    R = torch.as_tensor([k for k in range(len(row)) if k not in set(S.tolist())])
    new = row.clone()
    new[R] = row[R] + torch.linalg.solve(H[R][:, R], H[R][:, S] @ row[S])
    new[S] = 0
    delta = new - row
    return delta @ H @ delta, new


def trained_sine_mlp(seed):
    """``(net, X, y)``: a 6-24-24-1 tanh MLP fitted 200 Adam steps to ``sin(x1 + x2 + x3)``
    on 1,000 Gaussian rows, from ``torch.manual_seed(seed)`` (the fixed-seed claims)."""
    torch.manual_seed(seed)
    X = torch.randn(1000, 6)
    y = torch.sin(X[:, :3].sum(1, keepdim=True))
    net = nn.Sequential(nn.Linear(6, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(),
                        nn.Linear(24, 1))
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(200):
        optimizer.zero_grad()
        ((net(X) - y) ** 2).mean().backward()
        optimizer.step()
    return net, X, y
