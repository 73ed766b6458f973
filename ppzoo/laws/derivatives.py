"""Time derivatives (and smoothed states) from noisy trajectories.

Law discovery regresses ``dx/dt`` on candidate terms of ``x``; both come from noisy samples of a
trajectory. Three methods:

``"spline"`` (default)
    A cubic smoothing spline per state (``scipy.interpolate.make_smoothing_spline``), its roughness
    penalty chosen by generalized cross-validation (Craven & Wahba 1979), so there is nothing to tune.
    Works on unequally spaced times. The derivative is the spline's derivative; the smoothed states are
    the spline's values.
``"savgol"``
    Savitzky-Golay filter (local polynomial least squares, ``scipy.signal.savgol_filter``) with a given
    window and polynomial order; needs equally spaced times.
``"finite_difference"``
    Second-order central differences (``numpy.gradient``) of the raw states, for noise-free data.

Both smoothers are least accurate at the ends of the record, so ``trim`` points are dropped at each end
(default: 5 % of the record, at least 2 points, for the smoothers; none for finite differences).

References
----------
Craven, P. & Wahba, G. (1979). Smoothing noisy data with spline functions. Numerische Mathematik 31.
Savitzky, A. & Golay, M. J. E. (1964). Smoothing and differentiation of data by simplified least
squares procedures. Analytical Chemistry 36(8).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.interpolate import make_smoothing_spline
from scipy.signal import savgol_filter

__all__ = ["Smoothed", "smooth_derivatives", "check_trajectory", "METHODS"]

METHODS = ("spline", "savgol", "finite_difference")


class Smoothed(NamedTuple):
    """Smoothed trajectory and its time derivative, with the ends trimmed.

    Attributes
    ----------
    t : numpy.ndarray
        Times kept, ``(num_kept,)``.
    states : numpy.ndarray
        Smoothed states at those times, ``(num_kept, state_dim)``.
    derivatives : numpy.ndarray
        Estimated ``dx/dt`` at those times, ``(num_kept, state_dim)``.
    """

    t: np.ndarray
    states: np.ndarray
    derivatives: np.ndarray


def check_trajectory(t: ArrayLike, states: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert a trajectory.

    Parameters
    ----------
    t : ArrayLike
        Strictly increasing finite times, ``(num_times,)``.
    states : ArrayLike
        Finite states, ``(num_times, state_dim)``.

    Returns
    -------
    t, states : numpy.ndarray
        Float64 copies.

    Raises
    ------
    ValueError
        If shapes are wrong or unequal, values are not finite, or ``t`` is not strictly increasing.
    """
    t = np.asarray(t, dtype=np.float64)
    states = np.asarray(states, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"`t` must be 1-D of shape (num_times,); got shape {t.shape}. Pass `t.ravel()`.")
    if states.ndim != 2:
        raise ValueError(
            f"`states` must have shape (num_times, state_dim); got shape {states.shape}. "
            "For one state use `states.reshape(-1, 1)`."
        )
    if states.shape[0] != t.shape[0]:
        raise ValueError(
            f"`t` and `states` have unequal lengths: {t.shape[0]} times but {states.shape[0]} rows of states. "
            "Pass one row of `states` per time."
        )
    if t.shape[0] < 10:
        raise ValueError(f"`t` has {t.shape[0]} times; law discovery needs at least 10.")
    if not np.all(np.isfinite(t)):
        raise ValueError("`t` contains NaN or inf; pass finite times.")
    if not np.all(np.isfinite(states)):
        rows = np.flatnonzero(~np.all(np.isfinite(states), axis=1))
        raise ValueError(
            f"`states` contains NaN or inf (rows {rows[:5].tolist()}{'...' if rows.size > 5 else ''}); "
            "drop or interpolate those rows first."
        )
    steps = np.diff(t)
    if np.any(steps <= 0):
        k = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(
            f"`t` must be strictly increasing; t[{k + 1}] = {t[k + 1]} follows t[{k}] = {t[k]}. "
            "Sort the data by time and drop repeated times."
        )
    return t, states


def smooth_derivatives(
    t: ArrayLike,
    states: ArrayLike,
    *,
    method: Literal["spline", "savgol", "finite_difference"] = "spline",
    window: int = 11,
    polyorder: int = 3,
    trim: int | None = None,
) -> Smoothed:
    """Smooth a noisy trajectory and estimate its time derivative.

    Parameters
    ----------
    t : ArrayLike
        Strictly increasing times, ``(num_times,)``.
    states : ArrayLike
        Noisy states, ``(num_times, state_dim)``.
    method : {"spline", "savgol", "finite_difference"}, default "spline"
        See the module docstring.
    window : int, default 11
        Savitzky-Golay window length (odd, > ``polyorder``); only for ``"savgol"``.
    polyorder : int, default 3
        Savitzky-Golay polynomial order; only for ``"savgol"``.
    trim : int, optional
        Points dropped at each end. Default: ``max(2, num_times // 20)`` for the smoothers, 0 for
        finite differences.

    Returns
    -------
    Smoothed
        ``(t, states, derivatives)`` with the ends trimmed.

    Raises
    ------
    ValueError
        For an invalid trajectory (see :func:`check_trajectory`), an unknown method, a bad window, an
        unequally spaced grid with ``"savgol"``, or a ``trim`` that leaves fewer than 10 points.
    """
    t, states = check_trajectory(t, states)
    n = t.shape[0]
    if method not in METHODS:
        raise ValueError(f"Unknown derivative method {method!r}. Valid methods: {', '.join(METHODS)}.")
    if trim is None:
        trim = 0 if method == "finite_difference" else max(2, n // 20)
    if isinstance(trim, bool) or not isinstance(trim, (int, np.integer)) or trim < 0 or n - 2 * trim < 10:
        raise ValueError(
            f"`trim` must be an int >= 0 that leaves at least 10 of the {n} points; got {trim!r}."
        )
    if method == "spline":
        # One spline per state so that each gets its own GCV penalty. Time is measured in units of the
        # mean step: SciPy's GCV search for the penalty failed (returned a straight line) on a Lorenz
        # state with t in [0, 4] and worked with unit spacing.
        step = (t[-1] - t[0]) / (n - 1)
        u = (t - t[0]) / step
        splines = [make_smoothing_spline(u, states[:, k]) for k in range(states.shape[1])]
        smooth = np.stack([s(u) for s in splines], axis=1)
        deriv = np.stack([s.derivative()(u) for s in splines], axis=1) / step
    elif method == "savgol":
        steps = np.diff(t)
        if not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
            raise ValueError(
                "method='savgol' needs equally spaced times; use method='spline' for an uneven grid."
            )
        if (
            isinstance(window, bool)
            or not isinstance(window, (int, np.integer))
            or window % 2 == 0
            or not polyorder < window <= n
        ):
            raise ValueError(
                f"`window` must be an odd int with polyorder ({polyorder}) < window <= num_times ({n}); "
                f"got {window!r}."
            )
        smooth = savgol_filter(states, window, polyorder, axis=0, mode="interp")
        deriv = savgol_filter(states, window, polyorder, deriv=1, delta=steps[0], axis=0, mode="interp")
    else:
        smooth = states
        deriv = np.gradient(states, t, axis=0, edge_order=2)
    keep = slice(trim, n - trim)
    return Smoothed(t[keep], np.asarray(smooth[keep]), np.asarray(deriv[keep]))
