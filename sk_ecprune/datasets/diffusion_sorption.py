"""The 1-D diffusion-sorption problem of PDEBench: its solver and the regression data set.

:func:`make_diffusion_sorption` generates the scientific-regression task of the
elimination-compensation paper (a surrogate of the PDE solver), solved here on the fly so
that nothing has to be downloaded; :func:`solve_diffusion_sorption` is its solver.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import sparse
from scipy.integrate import solve_ivp
from sklearn.utils import Bunch, check_random_state

__all__ = ["make_diffusion_sorption", "solve_diffusion_sorption"]

# PDEBench diffusion-sorption values (pdebench/data_gen/configs/diff-sorp.yaml and
# pdebench/data_gen/src/sim_diff_sorp.py in github.com/pdebench/PDEBench).
PDEBENCH_D = 5e-4
PDEBENCH_POROSITY = 0.29
PDEBENCH_RHO_S = 2880.0
PDEBENCH_K_F = 3.5e-4
PDEBENCH_N_F = 0.874
PDEBENCH_T_MAX = 500.0
PDEBENCH_N_CELLS = 1024
_U_EPS = 1e-6  # PDEBench's shift that keeps u**(n_f - 1) finite at u = 0
_U0_MAX = 0.2  # PDEBench draws the initial level from U(0, 0.2)
_SMOOTH_KNOTS = 5



# --------------------------------------------------------------------------- validation


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_positive(name, value, *, allow_zero=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}.")
    return float(value)


def _check_range(name, value):
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}.") from None
    if not (0 < low <= high < np.inf):
        raise ValueError(f"{name} must satisfy 0 < low <= high, got {value!r}.")
    return low, high


# ------------------------------------------------------------------------------ solver


def _cell_centers(n_cells):
    """Centres of ``n_cells`` equal finite-volume cells on [0, 1] (PDEBench's grid)."""
    return (np.arange(n_cells) + 0.5) / n_cells


def _retardation(u, *, k_f, n_f, porosity, rho_s):
    """Freundlich retardation R(u) = 1 + (1 - phi)/phi * rho_s * k_f * n_f * u**(n_f - 1)."""
    # Clipping at 0 only guards against a tiny negative overshoot of the integrator, which
    # a fractional power would turn into NaN; the shift is PDEBench's own.
    u = np.maximum(u, 0.0) + _U_EPS
    return 1.0 + (1.0 - porosity) / porosity * rho_s * k_f * n_f * u ** (n_f - 1.0)


def _sorption_rhs(n_cells, *, D, boundary_value, **retardation_params):
    """Finite-volume right-hand side du/dt of the method-of-lines system."""
    dx = 1.0 / n_cells
    # Robin value on the right face, from u_b = -D (u_b - u_N) / (dx / 2).
    right_weight = (2.0 * D / dx) / (1.0 + 2.0 * D / dx)
    flux = np.empty(n_cells + 1)  # D * du/dx on the n_cells + 1 faces

    def rhs(t, u):
        flux[0] = D * (u[0] - boundary_value) / (0.5 * dx)
        flux[1:-1] = D * np.diff(u) / dx
        flux[-1] = -right_weight * u[-1]  # D u_x = -u_b on the right face
        return np.diff(flux) / (dx * _retardation(u, **retardation_params))

    return rhs


def solve_diffusion_sorption(
    u0,
    t_eval,
    *,
    D=PDEBENCH_D,
    k_f=PDEBENCH_K_F,
    n_f=PDEBENCH_N_F,
    porosity=PDEBENCH_POROSITY,
    rho_s=PDEBENCH_RHO_S,
    boundary_value=1.0,
    rtol=1e-6,
    atol=1e-8,
):
    """Solve the 1-D diffusion-sorption equation of PDEBench on a finite-volume grid.

    Solves ``du/dt = D / R(u) * d2u/dx2`` on ``x in [0, 1]`` with the Freundlich retardation
    ``R(u) = 1 + (1 - porosity) / porosity * rho_s * k_f * n_f * u**(n_f - 1)``, the Dirichlet
    condition ``u(0, t) = boundary_value`` and the outflow (Cauchy) condition
    ``u(1, t) = -D du/dx(1, t)``, by the method of lines: cell-centred finite volumes in ``x``
    (second order) and the stiff BDF integrator of :func:`scipy.integrate.solve_ivp` with a
    tridiagonal Jacobian sparsity pattern.

    Parameters
    ----------
    u0 : array-like of shape (n_cells,)
        Initial values at the cell centres ``x_i = (i + 1/2) / n_cells``; their number sets the
        grid. At least 3 cells.
    t_eval : array-like of shape (n_times,)
        Non-negative, increasing times at which the solution is returned.
    D : float, default=5e-4
        Diffusion coefficient.
    k_f : float, default=3.5e-4
        Freundlich coefficient (``k_f = 0`` gives plain diffusion).
    n_f : float, default=0.874
        Freundlich exponent.
    porosity : float, default=0.29
        Porosity ``phi``, in (0, 1).
    rho_s : float, default=2880.0
        Bulk density of the solid.
    boundary_value : float, default=1.0
        Concentration held at ``x = 0`` (PDEBench's solubility).
    rtol, atol : float, default=1e-6, 1e-8
        Tolerances of the time integrator.

    Returns
    -------
    u : ndarray of shape (n_times, n_cells)
        Solution at the cell centres, one row per time of ``t_eval``.

    Notes
    -----
    Defaults are PDEBench's (Takamoto et al., "PDEBench: An Extensive Benchmark for
    Scientific Machine Learning", NeurIPS 2022 Datasets and Benchmarks; values from
    ``pdebench/data_gen/configs/diff-sorp.yaml``). As in PDEBench's generator,
    ``u**(n_f - 1)``, singular at ``u = 0`` since ``n_f < 1``, is evaluated as
    ``(u + 1e-6)**(n_f - 1)``. Two deliberate differences from PDEBench's generator:

    - the paper prints the right condition as ``u(1, t) = D du/dx``; the generator code sets
      the right ghost value to ``D (u_{N-1} - u_N) / dx``, i.e. ``-D du/dx``, an outflow
      condition (diffusive flux leaving at ``x = 1`` equals ``u`` there). We follow the code.
    - PDEBench places both boundary values a full cell away from the last cell centre and
      integrates with explicit RK45; here the boundary faces lie half a cell away (the
      scheme is second order up to the boundaries) and the stiff system is integrated with BDF.
    """
    u0 = np.asarray(u0, dtype=float)
    if u0.ndim != 1 or u0.size < 3 or not np.all(np.isfinite(u0)):
        raise ValueError(
            f"u0 must be a finite 1-D array of at least 3 values, got shape {u0.shape}."
        )
    t_eval = np.atleast_1d(np.asarray(t_eval, dtype=float))
    if t_eval.ndim != 1 or t_eval.size == 0 or t_eval[0] < 0 or np.any(np.diff(t_eval) <= 0):
        raise ValueError("t_eval must be a non-empty 1-D array of increasing times >= 0.")
    if not 0.0 < porosity < 1.0:
        raise ValueError(f"porosity must lie in (0, 1), got {porosity!r}.")
    params = dict(
        D=_check_positive("D", D),
        k_f=_check_positive("k_f", k_f, allow_zero=True),
        n_f=_check_positive("n_f", n_f),
        porosity=float(porosity),
        rho_s=_check_positive("rho_s", rho_s),
        boundary_value=float(boundary_value),
    )
    if t_eval[-1] == 0.0:
        return u0[np.newaxis, :].copy()
    n_cells = u0.size
    pattern = sparse.diags_array([1.0, 1.0, 1.0], offsets=[-1, 0, 1], shape=(n_cells, n_cells))
    solution = solve_ivp(
        _sorption_rhs(n_cells, **params),
        (0.0, t_eval[-1]),
        u0,
        method="BDF",
        t_eval=t_eval,
        jac_sparsity=pattern,
        rtol=rtol,
        atol=atol,
    )
    if not solution.success:
        raise RuntimeError(f"The diffusion-sorption solver failed: {solution.message}")
    return solution.y.T


# ----------------------------------------------------------------------------- dataset


def _check_initial_condition(initial_condition):
    if initial_condition not in ("constant", "smooth"):
        raise ValueError(
            f"initial_condition must be 'constant' or 'smooth', got {initial_condition!r}."
        )


def _as_frame(X, y, feature_names):
    """``X`` as a DataFrame, ``y`` as a Series named ``u``, and both side by side."""
    try:
        import pandas as pd
    except ImportError as error:
        raise ImportError("as_frame=True needs pandas: pip install pandas") from error
    X = pd.DataFrame(X, columns=feature_names)
    y = pd.Series(y, name="u")
    return X, y, pd.concat([X, y], axis=1)


def _sample_log_uniform(rng, low, high, size):
    return np.exp(rng.uniform(np.log(low), np.log(high), size=size))


def _initial_profiles(rng, kind, n_samples):
    """Per-sample initial condition as a function of x (vectorised over x)."""
    if kind == "constant":
        levels = rng.uniform(0.0, _U0_MAX, size=n_samples)
        return [lambda x, c=c: np.full_like(x, c) for c in levels]
    knots_x = np.linspace(0.0, 1.0, _SMOOTH_KNOTS)
    knots_u = rng.uniform(0.0, _U0_MAX, size=(n_samples, _SMOOTH_KNOTS))
    return [lambda x, k=k: np.interp(x, knots_x, k) for k in knots_u]


def _rows(D, k_f, times, x, u0, u):
    """Stack per-sample fields into rows [D, k_f, t, x, u0(x_1..x_n)] ordered (sample, t, x)."""
    n_samples, n_times, n_points = u.shape
    per_sample = n_times * n_points
    X = np.empty((n_samples * per_sample, n_points + 4))
    X[:, 0] = np.repeat(D, per_sample)
    X[:, 1] = np.repeat(k_f, per_sample)
    X[:, 2] = np.tile(np.repeat(times, n_points), n_samples)
    X[:, 3] = np.tile(x, n_samples * n_times)
    X[:, 4:] = np.repeat(u0, per_sample, axis=0)
    groups = np.repeat(np.arange(n_samples), per_sample)
    return X, u.reshape(-1), groups


def make_diffusion_sorption(
    n_samples=100,
    n_times=10,
    n_points=64,
    *,
    noise=0.0,
    D_range=(PDEBENCH_D / 2, PDEBENCH_D * 2),
    k_f_range=(PDEBENCH_K_F / 2, PDEBENCH_K_F * 2),
    initial_condition="constant",
    t_max=PDEBENCH_T_MAX,
    n_cells=None,
    return_groups=False,
    return_X_y=True,
    as_frame=False,
    random_state=None,
):
    """Generate the PDEBench 1-D diffusion-sorption problem as a tabular regression.

    Each sample is one simulation of :func:`solve_diffusion_sorption` with its own diffusion
    coefficient ``D``, Freundlich coefficient ``k_f`` and initial condition ``u0``; each row is
    one point ``(t, x)`` of one simulation, with target ``u(t, x)``. The inputs of a row are::

        [D, k_f, t, x, u0(x_1), ..., u0(x_n_points)]

    so ``X.shape[1] == n_points + 4`` (68 for the default 64 points, the input width of the
    68-32-32-32-1 networks of Ballini et al., "Elimination-compensation pruning for
    fully-connected neural networks", arXiv:2602.20467, 2026). Rows are ordered by sample,
    then time, then position; split by ``groups`` (the sample index), not by row, so that no
    simulation is in both the training and the test set.

    Parameters
    ----------
    n_samples : int, default=100
        Number of simulations.
    n_times : int, default=10
        Times per simulation, ``t_k = k * t_max / n_times`` for ``k = 1..n_times`` (``t = 0``
        is left out: its target is already an input).
    n_points : int, default=64
        Output positions, the cell centres ``(j + 1/2) / n_points`` of [0, 1]; at least 3.
    noise : float, default=0.0
        Half-width ``a`` of the uniform noise ``U(-a, a)`` added to the target (not to ``X``).
    D_range : (float, float), default=(2.5e-4, 1e-3)
        Range of the diffusion coefficient, drawn log-uniformly: PDEBench's 5e-4 times or
        divided by up to 2. ``D`` sets how far the front has travelled; pass equal bounds
        to fix it.
    k_f_range : (float, float), default=(1.75e-4, 7e-4)
        Range of the Freundlich coefficient, drawn log-uniformly around PDEBench's 3.5e-4;
        it sets how strongly sorption retards the front (the nonlinear part of the problem).
    initial_condition : {"constant", "smooth"}, default="constant"
        ``"constant"``: PDEBench's, a spatially uniform level drawn from ``U(0, 0.2)``, so the
        ``u0`` columns of a row are all equal. ``"smooth"``: piecewise-linear through values
        drawn from ``U(0, 0.2)`` at 5 equally spaced knots, for a problem where the whole
        ``u0`` profile matters.
    t_max : float, default=500.0
        Final time (PDEBench's).
    n_cells : int, default=None
        Cells of the solver grid; the solution is interpolated linearly to the output
        positions. ``None`` uses ``max(1024, n_points)``, PDEBench's resolution.
    return_groups : bool, default=False
        With ``return_X_y=True``, also return the sample index of every row.
    return_X_y : bool, default=True
        Return ``(X, y)`` (or ``(X, y, groups)``), as scikit-learn's ``make_*`` functions do.
        If False, return a :class:`~sklearn.utils.Bunch`.
    as_frame : bool, default=False
        Return ``X`` as a pandas DataFrame with named columns and ``y`` as a Series.
    random_state : int, RandomState instance or None, default=None
        Seed of the parameters, initial conditions and noise.

    Returns
    -------
    X : ndarray of shape (n_samples * n_times * n_points, n_points + 4)
        Inputs ``[D, k_f, t, x, u0 on the output positions]``, unscaled (physical units:
        put a scaler in front of a network).
    y : ndarray of shape (n_samples * n_times * n_points,)
        ``u(t, x)``, plus the noise if any.
    groups : ndarray of shape (n_samples * n_times * n_points,)
        Sample index of each row; only with ``return_groups=True``.
    bunch : :class:`~sklearn.utils.Bunch`
        Only with ``return_X_y=False``: ``data``, ``target``, ``groups``, ``feature_names``,
        ``target_names``, ``D`` and ``k_f`` (per sample), ``initial_conditions`` (per sample,
        on the output positions), ``times``, ``x``, ``frame`` and ``DESCR``.

    Notes
    -----
    Equation, constants (porosity 0.29, rho_s 2880, n_f 0.874, Dirichlet value 1 at ``x = 0``,
    outflow condition at ``x = 1``, ``t`` in [0, 500]) and initial condition follow PDEBench
    (Takamoto et al., NeurIPS 2022; ``pdebench/data_gen`` config ``diff-sorp.yaml`` and
    ``sim_diff_sorp.py``); see :func:`solve_diffusion_sorption`. PDEBench fixes ``D`` and
    ``k_f``; varying them here makes the problem parametric, as a surrogate of the solver.
    The default set (64,000 rows) takes a few seconds.

    Examples
    --------
    >>> from sklearn.model_selection import GroupShuffleSplit
    >>> X, y, groups = make_diffusion_sorption(n_samples=4, n_times=2, n_points=8,
    ...                                        return_groups=True, random_state=0)
    >>> X.shape, y.shape
    ((64, 12), (64,))
    >>> train, test = next(GroupShuffleSplit(random_state=0).split(X, y, groups))
    """
    n_samples = _check_int("n_samples", n_samples, 1)
    n_times = _check_int("n_times", n_times, 1)
    n_points = _check_int("n_points", n_points, 3)
    n_cells = max(PDEBENCH_N_CELLS, n_points) if n_cells is None else n_cells
    n_cells = _check_int("n_cells", n_cells, n_points)
    noise = _check_positive("noise", noise, allow_zero=True)
    t_max = _check_positive("t_max", t_max)
    D_low, D_high = _check_range("D_range", D_range)
    k_f_low, k_f_high = _check_range("k_f_range", k_f_range)
    _check_initial_condition(initial_condition)

    # Draw order is fixed (parameters, initial conditions, noise) so that changing `noise`
    # alone leaves X and the clean target unchanged for a given seed.
    rng = check_random_state(random_state)
    D = _sample_log_uniform(rng, D_low, D_high, n_samples)
    k_f = _sample_log_uniform(rng, k_f_low, k_f_high, n_samples)
    profiles = _initial_profiles(rng, initial_condition, n_samples)

    times = t_max * np.arange(1, n_times + 1) / n_times
    x, x_solver = _cell_centers(n_points), _cell_centers(n_cells)
    u0 = np.stack([profile(x) for profile in profiles])
    u = np.empty((n_samples, n_times, n_points))
    for s, profile in enumerate(profiles):
        fine = solve_diffusion_sorption(profile(x_solver), times, D=D[s], k_f=k_f[s])
        u[s] = [np.interp(x, x_solver, row) for row in fine]

    X, y, groups = _rows(D, k_f, times, x, u0, u)
    if noise > 0:
        y = y + rng.uniform(-noise, noise, size=y.shape)
    feature_names = ["D", "k_f", "t", "x"] + [f"u0_{j}" for j in range(n_points)]
    frame = None
    if as_frame:
        X, y, frame = _as_frame(X, y, feature_names)

    if return_X_y:
        return (X, y, groups) if return_groups else (X, y)
    return Bunch(
        data=X,
        target=y,
        groups=groups,
        feature_names=feature_names,
        target_names=["u"],
        D=D,
        k_f=k_f,
        initial_conditions=u0,
        times=times,
        x=x,
        frame=frame,
        DESCR=(
            "PDEBench 1-D diffusion-sorption (Takamoto et al. 2022), one row per "
            "(sample, t, x): inputs [D, k_f, t, x, u0 on the grid], target u(t, x)."
        ),
    )
