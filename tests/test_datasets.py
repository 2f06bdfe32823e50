"""Tests of sk_ecprune.datasets: the diffusion-sorption solver and dataset, and the digits."""

import gzip

import numpy as np
import pytest
from scipy.special import erfc
from sklearn.datasets import load_digits

from sk_ecprune.datasets import (
    load_digits_28x28,
    load_mnist,
    make_diffusion_sorption,
    solve_diffusion_sorption,
)
from sk_ecprune.datasets.diffusion_sorption import _retardation

TIMES = np.array([100.0, 250.0, 500.0])
SMALL = dict(n_samples=3, n_times=2, n_points=8, n_cells=64)


def centers(n):
    return (np.arange(n) + 0.5) / n


def boundary_value_and_slope(x, u, at):
    """Quadratic through the three cells nearest the boundary, evaluated at it."""
    fit = np.polyfit(x, u, 2)
    return np.polyval(fit, at), np.polyval(np.polyder(fit), at)


# ------------------------------------------------------------------------------ solver


@pytest.mark.parametrize("boundary_value", [1.0, 0.6])
def test_solver_holds_left_dirichlet_value(boundary_value):
    n = 200
    u = solve_diffusion_sorption(np.full(n, 0.1), TIMES, boundary_value=boundary_value)
    for row in u:
        left, _ = boundary_value_and_slope(centers(n)[:3], row[:3], 0.0)
        assert left == pytest.approx(boundary_value, abs=1e-3)


def test_solver_holds_right_outflow_condition():
    # A large D makes -D u_x(1) clearly non-zero, so a zero-flux or a Dirichlet-zero
    # boundary, or the opposite sign, would all leave a residual of the size of u(1).
    n, D = 200, 0.02
    u = solve_diffusion_sorption(np.full(n, 0.1), TIMES, D=D)
    for row in u:
        right, slope = boundary_value_and_slope(centers(n)[-3:], row[-3:], 1.0)
        assert right > 1e-2
        assert abs(right + D * slope) < 1e-3 * right


@pytest.mark.parametrize(
    "u0", [np.zeros(64), np.full(64, 0.2), np.interp(centers(64), [0, 0.5, 1], [0.2, 0, 0.15])]
)
@pytest.mark.parametrize("D", [2.5e-4, 1e-3])
def test_solver_stays_in_physical_range(u0, D):
    u = solve_diffusion_sorption(u0, TIMES, D=D, k_f=7e-4)
    assert np.all(np.isfinite(u))
    assert u.min() >= -1e-8 and u.max() <= 1 + 1e-8
    # the front enters from x = 0: concentration decreases away from the source
    assert np.all(u[:, 0] > u[:, -1])


def test_retardation_is_freundlich_with_pdebench_epsilon():
    params = dict(k_f=3.5e-4, n_f=0.874, porosity=0.29, rho_s=2880.0)
    a = (1 - 0.29) / 0.29 * 2880.0 * 3.5e-4 * 0.874
    u = np.array([-1e-3, 0.0, 0.1, 1.0])
    expected = 1 + a * np.array([1e-6, 1e-6, 0.1 + 1e-6, 1 + 1e-6]) ** (0.874 - 1)
    np.testing.assert_allclose(_retardation(u, **params), expected, rtol=1e-12)


@pytest.mark.parametrize("k_f", [0.0, 3.5e-4])
def test_solver_matches_erfc_for_linear_sorption(k_f):
    # n_f = 1 makes R constant, so while the front is far from x = 1 the solution is the
    # semi-infinite one, erfc(x / (2 sqrt(D t / R))).
    n, D, t = 400, 1e-4, np.array([50.0, 100.0])
    R = 1 + (1 - 0.29) / 0.29 * 2880.0 * k_f
    u = solve_diffusion_sorption(np.zeros(n), t, D=D, k_f=k_f, n_f=1.0)
    exact = erfc(centers(n)[None, :] / (2 * np.sqrt(D * t[:, None] / R)))
    np.testing.assert_allclose(u, exact, atol=2e-3)


def test_solver_error_shrinks_under_grid_refinement():
    fine = 512
    reference = solve_diffusion_sorption(np.full(fine, 0.1), TIMES)

    def error(n):
        u = solve_diffusion_sorption(np.full(n, 0.1), TIMES)
        return max(
            np.abs(row - np.interp(centers(n), centers(fine), ref)).max()
            for row, ref in zip(u, reference)
        )

    coarse, medium = error(32), error(64)
    assert medium < coarse / 3  # second order: about 4
    assert medium < 1e-3


def test_solver_returns_initial_condition_at_time_zero():
    u0 = np.linspace(0.2, 0.0, 16)
    u = solve_diffusion_sorption(u0, [0.0, 10.0])
    np.testing.assert_allclose(u[0], u0)
    assert not np.allclose(u[1], u0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(u0=np.zeros(2)), "u0"),
        (dict(t_eval=[5.0, 1.0]), "t_eval"),
        (dict(D=0.0), "D"),
        (dict(porosity=1.5), "porosity"),
    ],
)
def test_solver_rejects_bad_arguments(kwargs, match):
    args = dict(u0=np.zeros(8), t_eval=[1.0]) | kwargs
    with pytest.raises(ValueError, match=match):
        solve_diffusion_sorption(args.pop("u0"), args.pop("t_eval"), **args)


# ----------------------------------------------------------------------------- dataset


def test_dataset_shapes_and_column_layout():
    X, y, groups = make_diffusion_sorption(
        n_samples=3, n_times=4, n_points=16, n_cells=64, return_groups=True, random_state=0
    )
    assert X.shape == (3 * 4 * 16, 16 + 4) and y.shape == (3 * 4 * 16,)
    np.testing.assert_array_equal(groups, np.repeat([0, 1, 2], 4 * 16))
    np.testing.assert_allclose(X[:64, 2], np.repeat([125.0, 250.0, 375.0, 500.0], 16))
    np.testing.assert_allclose(X[:16, 3], centers(16))
    assert np.all((X[:, 0] >= 2.5e-4) & (X[:, 0] <= 1e-3))
    assert np.all((X[:, 1] >= 1.75e-4) & (X[:, 1] <= 7e-4))
    for s in range(3):
        rows = X[groups == s]
        assert np.unique(rows[:, [0, 1]], axis=0).shape[0] == 1  # one (D, k_f) per sample
        assert np.ptp(rows[:, 4:]) == 0  # PDEBench's initial condition is constant
        assert 0 <= rows[0, 4] <= 0.2
    levels = X[:: 4 * 16, 4]
    assert np.unique(levels).size == 3  # drawn per sample


def test_default_input_width_is_68():
    X, _ = make_diffusion_sorption(n_samples=1, n_times=1, n_cells=64, random_state=0)
    assert X.shape == (64, 68)


def test_dataset_target_is_the_solver_solution():
    bunch = make_diffusion_sorption(**SMALL, return_X_y=False, random_state=1)
    s, k = 2, 1
    u0 = np.full(64, bunch.initial_conditions[s, 0])
    u = solve_diffusion_sorption(u0, bunch.times, D=bunch.D[s], k_f=bunch.k_f[s])
    expected = np.interp(bunch.x, centers(64), u[k])
    rows = (bunch.groups == s) & (bunch.data[:, 2] == bunch.times[k])
    np.testing.assert_allclose(bunch.target[rows], expected, rtol=1e-10)


def test_smooth_initial_condition_varies_in_space():
    bunch = make_diffusion_sorption(
        **SMALL, initial_condition="smooth", return_X_y=False, random_state=0
    )
    u0 = bunch.initial_conditions
    assert np.all(np.ptp(u0, axis=1) > 0)
    assert u0.min() >= 0 and u0.max() <= 0.2
    np.testing.assert_array_equal(bunch.data[: SMALL["n_points"], 4:][0], u0[0])


def test_dataset_is_reproducible_and_seed_dependent():
    X1, y1 = make_diffusion_sorption(**SMALL, random_state=0)
    X2, y2 = make_diffusion_sorption(**SMALL, random_state=0)
    X3, y3 = make_diffusion_sorption(**SMALL, random_state=1)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(X1, X3) and not np.allclose(y1, y3)


def test_noise_is_bounded_and_only_on_the_target():
    X0, y0 = make_diffusion_sorption(**SMALL, noise=0.0, random_state=0)
    X1, y1 = make_diffusion_sorption(**SMALL, noise=0.05, random_state=0)
    np.testing.assert_array_equal(X0, X1)
    difference = y1 - y0
    assert np.abs(difference).max() <= 0.05
    assert np.abs(difference).max() > 0.04  # the noise fills its interval
    assert abs(difference.mean()) < 0.01
    assert 0.0 <= y0.min() and y0.max() <= 1.0  # clean target is the physical solution


def test_bunch_and_frame_outputs():
    pd = pytest.importorskip("pandas")
    bunch = make_diffusion_sorption(**SMALL, return_X_y=False, as_frame=True, random_state=0)
    assert isinstance(bunch.data, pd.DataFrame) and isinstance(bunch.target, pd.Series)
    assert list(bunch.data.columns[:5]) == ["D", "k_f", "t", "x", "u0_0"]
    assert bunch.data.shape[1] == len(bunch.feature_names) == SMALL["n_points"] + 4
    assert bunch.frame.shape == (len(bunch.target), SMALL["n_points"] + 5)
    assert bunch.groups.shape == bunch.target.shape


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_samples=0), "n_samples"),
        (dict(n_times=1.5), "n_times"),
        (dict(n_points=2), "n_points"),
        (dict(noise=-0.1), "noise"),
        (dict(D_range=(1e-3, 1e-4)), "D_range"),
        (dict(k_f_range=0.1), "k_f_range"),
        (dict(initial_condition="random"), "initial_condition"),
        (dict(n_cells=4), "n_cells"),
        (dict(t_max=0), "t_max"),
    ],
)
def test_dataset_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_diffusion_sorption(**kwargs)


# ------------------------------------------------------------------------------ digits


def test_digits_28x28_layout():
    bunch = load_digits_28x28()
    X, y = bunch.data, bunch.target
    assert X.shape == (1797, 784) and X.dtype == np.float32
    assert X.min() == 0.0 and X.max() <= 1.0 and X.max() > 0.9
    np.testing.assert_array_equal(y, load_digits().target)
    images = bunch.images
    border = np.ones((28, 28), bool)
    border[4:24, 4:24] = False
    assert np.all(images[:, border] == 0)
    # bilinear zoom keeps the corner pixels of the 8x8 image at the corners of the 20x20 box
    original = load_digits().images / 16
    np.testing.assert_allclose(images[:, 4, 4], original[:, 0, 0], atol=1e-6)
    np.testing.assert_allclose(images[:, 23, 23], original[:, 7, 7], atol=1e-6)
    X2, y2 = load_digits_28x28(return_X_y=True)
    np.testing.assert_array_equal(X2, X)


# ------------------------------------------------------------------------------- MNIST


def fake_mnist(rng):
    return {
        "x_train": rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, size=5).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=3).astype(np.uint8),
    }


def idx_bytes(array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def test_load_mnist_npz(tmp_path):
    arrays = fake_mnist(np.random.default_rng(0))
    np.savez(tmp_path / "mnist.npz", **arrays)
    X, y = load_mnist(tmp_path / "mnist.npz", subset="test", return_X_y=True)
    assert X.shape == (3, 784) and X.dtype == np.float32
    np.testing.assert_allclose(X, arrays["x_test"].reshape(3, -1) / 255, rtol=1e-6)
    np.testing.assert_array_equal(y, arrays["y_test"])
    everything = load_mnist(str(tmp_path / "mnist.npz"), subset="all")
    assert everything.data.shape == (8, 784) and everything.image_shape == (28, 28)
    np.testing.assert_array_equal(everything.target[:5], arrays["y_train"])


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_idx(tmp_path, compress):
    arrays = fake_mnist(np.random.default_rng(1))
    names = {
        "x_train": "train-images-idx3-ubyte",
        "y_train": "train-labels-idx1-ubyte",
        "x_test": "t10k-images-idx3-ubyte",
        "y_test": "t10k-labels-idx1-ubyte",
    }
    for key, name in names.items():
        data = idx_bytes(arrays[key])
        if compress:
            (tmp_path / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (tmp_path / name).write_bytes(data)
    X, y = load_mnist(tmp_path, return_X_y=True)
    np.testing.assert_allclose(X, arrays["x_train"].reshape(5, -1) / 255, rtol=1e-6)
    np.testing.assert_array_equal(y, arrays["y_train"])


def test_load_mnist_missing_or_malformed(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        load_mnist(tmp_path / "nowhere.npz")
    with pytest.raises(FileNotFoundError, match="train-images"):
        load_mnist(tmp_path)  # an empty directory
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04garbage")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(2)))
    with pytest.raises(ValueError, match="magic"):
        load_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((2, 4, 4)))[:-3])
    with pytest.raises(ValueError, match="data bytes"):
        load_mnist(tmp_path)
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="y_train"):
        load_mnist(tmp_path / "partial.npz")
    np.savez(tmp_path / "mismatch.npz", x_train=np.zeros((2, 4, 4)), y_train=np.zeros(3, int))
    with pytest.raises(ValueError, match="do not match"):
        load_mnist(tmp_path / "mismatch.npz")
    with pytest.raises(ValueError, match="subset"):
        load_mnist(tmp_path / "mismatch.npz", subset="validation")
