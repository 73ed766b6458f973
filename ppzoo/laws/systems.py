"""Dynamical systems with known governing equations, for testing law discovery.

Each simulator integrates its ODE with SciPy's ``solve_ivp`` (tolerances far below the added noise),
adds Gaussian noise with standard deviation ``noise`` times each state's standard deviation over the
trajectory, and returns a :class:`ppzoo.data.Dataset`:

- ``ds.data = {"t": (num_times,), "states": (num_times, state_dim)}``, so that
  ``ppzoo.laws.discover(**ds.data, library=...)`` works;
- ``ds.truth = {"coefficients": pandas.DataFrame, "states": (num_times, state_dim)}``: the true
  coefficient table (rows ``"dx0/dt", ...``, columns the true terms in :mod:`ppzoo.laws.library` names,
  e.g. ``"sin(x0)"``, ``"x0 x1"``) and the noise-free states;
- ``ds.info``: the settings and the physical parameters.

The tables list only the true terms; :func:`ppzoo.laws.support_metrics` treats absent terms as zero.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.integrate import solve_ivp

from ppzoo.data import Dataset

__all__ = ["damped_pendulum", "lotka_volterra", "lorenz", "equation_names"]


def equation_names(state_dim: int) -> list[str]:
    """Row labels of coefficient tables: ``["dx0/dt", "dx1/dt", ...]``."""
    return [f"dx{k}/dt" for k in range(state_dim)]


def _check(num_times: int, t_max: float, noise: float) -> None:
    if isinstance(num_times, bool) or not isinstance(num_times, (int, np.integer)) or num_times < 10:
        raise ValueError(f"`num_times` must be an int >= 10; got {num_times!r}.")
    if not np.isfinite(t_max) or t_max <= 0:
        raise ValueError(f"`t_max` must be a positive number; got {t_max!r}.")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(
            f"`noise` is a fraction of each state's standard deviation and must be >= 0; got {noise!r}. "
            "Example: noise=0.01 for 1%."
        )


def _simulate(
    name: str,
    rhs: Callable,
    initial_state: np.ndarray,
    truth: dict[str, dict[str, float]],
    *,
    num_times: int,
    t_max: float,
    noise: float,
    seed: int,
    params: dict[str, float],
) -> Dataset:
    _check(num_times, t_max, noise)
    t = np.linspace(0.0, float(t_max), int(num_times))
    sol = solve_ivp(rhs, (0.0, t[-1]), initial_state, t_eval=t, method="DOP853", rtol=1e-10, atol=1e-12)
    if not sol.success:  # pragma: no cover - the built-in systems integrate fine
        raise RuntimeError(f"Simulating {name} failed: {sol.message}")
    clean = sol.y.T
    rng = np.random.default_rng(seed)
    states = clean + noise * clean.std(axis=0) * rng.standard_normal(clean.shape)
    table = pd.DataFrame(truth).T.reindex(equation_names(clean.shape[1])).fillna(0.0)
    table.index.name = "equation"
    table.columns.name = "term"
    return Dataset(
        name=name,
        data={"t": t, "states": states},
        truth={"coefficients": table, "states": clean},
        info={
            "num_times": int(num_times),
            "t_max": float(t_max),
            "noise": float(noise),
            "seed": seed,
            "initial_state": initial_state.tolist(),
            **params,
            "source": "simulated with scipy.integrate.solve_ivp (DOP853, rtol 1e-10)",
        },
    )


def damped_pendulum(
    *,
    num_times: int = 400,
    t_max: float = 10.0,
    noise: float = 0.01,
    gravity_over_length: float = 9.81,
    damping: float = 0.3,
    initial_state: tuple[float, float] = (2.8, 0.0),
    seed: int = 0,
) -> Dataset:
    """Nonlinear damped pendulum as a first-order system.

    ``theta'' = -(g/L) sin(theta) - c theta'`` with ``x0 = theta``, ``x1 = theta'``::

        dx0/dt = x1
        dx1/dt = -(g/L) sin(x0) - c x1

    The default release from 2.8 rad (160 degrees) swings far enough that ``sin(x0)`` is not
    confused with ``x0``.

    Parameters
    ----------
    num_times : int, default 400
        Number of equally spaced times in ``[0, t_max]``.
    t_max : float, default 10
        Length of the record.
    noise : float, default 0.01
        Noise standard deviation as a fraction of each state's standard deviation.
    gravity_over_length : float, default 9.81
        ``g/L``.
    damping : float, default 0.3
        ``c``.
    initial_state : tuple of float, default (2.8, 0.0)
        ``(theta, theta')`` at time 0.
    seed : int, default 0
        Seed of the noise.

    Returns
    -------
    Dataset
        See the module docstring.
    """
    g, c = float(gravity_over_length), float(damping)

    def rhs(_, x):
        return [x[1], -g * np.sin(x[0]) - c * x[1]]

    truth = {"dx0/dt": {"x1": 1.0}, "dx1/dt": {"sin(x0)": -g, "x1": -c}}
    return _simulate(
        "damped_pendulum",
        rhs,
        np.asarray(initial_state, dtype=float),
        truth,
        num_times=num_times,
        t_max=t_max,
        noise=noise,
        seed=seed,
        params={"gravity_over_length": g, "damping": c},
    )


def lotka_volterra(
    *,
    num_times: int = 400,
    t_max: float = 30.0,
    noise: float = 0.01,
    prey_growth: float = 1.0,
    predation: float = 0.5,
    predator_death: float = 1.0,
    conversion: float = 0.25,
    initial_state: tuple[float, float] = (6.0, 1.0),
    seed: int = 0,
) -> Dataset:
    """Lotka-Volterra predator-prey model (``x0`` prey, ``x1`` predator)::

        dx0/dt =  a x0 - b x0 x1
        dx1/dt = -c x1 + d x0 x1

    Parameters
    ----------
    num_times, t_max, noise, seed
        As in :func:`damped_pendulum` (defaults 400 times over 30 time units, about five cycles).
    prey_growth, predation, predator_death, conversion : float
        ``a``, ``b``, ``c``, ``d``.
    initial_state : tuple of float, default (6, 1)
        Prey and predator at time 0.

    Returns
    -------
    Dataset
        See the module docstring.
    """
    a, b, c, d = map(float, (prey_growth, predation, predator_death, conversion))

    def rhs(_, x):
        return [a * x[0] - b * x[0] * x[1], -c * x[1] + d * x[0] * x[1]]

    truth = {"dx0/dt": {"x0": a, "x0 x1": -b}, "dx1/dt": {"x1": -c, "x0 x1": d}}
    return _simulate(
        "lotka_volterra",
        rhs,
        np.asarray(initial_state, dtype=float),
        truth,
        num_times=num_times,
        t_max=t_max,
        noise=noise,
        seed=seed,
        params={"prey_growth": a, "predation": b, "predator_death": c, "conversion": d},
    )


def lorenz(
    *,
    num_times: int = 800,
    t_max: float = 8.0,
    noise: float = 0.01,
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
    initial_state: tuple[float, float, float] = (-8.0, 8.0, 27.0),
    seed: int = 0,
) -> Dataset:
    """Lorenz system::

        dx0/dt = sigma (x1 - x0)
        dx1/dt = x0 (rho - x2) - x1
        dx2/dt = x0 x1 - beta x2

    Parameters
    ----------
    num_times, t_max, noise, seed
        As in :func:`damped_pendulum` (defaults 800 times over 8 time units, several turns of each wing).
    sigma, rho, beta : float
        The classic chaotic values by default.
    initial_state : tuple of float, default (-8, 8, 27)
        State at time 0 (Brunton et al. 2016).

    Returns
    -------
    Dataset
        See the module docstring.
    """
    s, r, b = float(sigma), float(rho), float(beta)

    def rhs(_, x):
        return [s * (x[1] - x[0]), x[0] * (r - x[2]) - x[1], x[0] * x[1] - b * x[2]]

    truth = {
        "dx0/dt": {"x0": -s, "x1": s},
        "dx1/dt": {"x0": r, "x1": -1.0, "x0 x2": -1.0},
        "dx2/dt": {"x2": -b, "x0 x1": 1.0},
    }
    return _simulate(
        "lorenz",
        rhs,
        np.asarray(initial_state, dtype=float),
        truth,
        num_times=num_times,
        t_max=t_max,
        noise=noise,
        seed=seed,
        params={"sigma": s, "rho": r, "beta": b},
    )
