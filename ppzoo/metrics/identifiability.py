"""Recovery metrics for identifiable models: mean correlation coefficient and Amari distance.

Both are invariant to the ambiguities of (non)linear ICA: any permutation of the sources, any sign
flip, and (for the Amari distance) any rescaling of the mixing columns.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

__all__ = ["mcc", "amari_distance", "match_components"]


def _as_2d(name: str, value: ArrayLike) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array of shape (num_data, dim); got shape {array.shape}. "
            "Reshape it, e.g. `z.reshape(-1, dim)` or pass a posterior mean over draws."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` contains NaN or inf; pass finite values.")
    return array


def _abs_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(0)
    b = b - b.mean(0)
    sa = np.linalg.norm(a, axis=0)
    sb = np.linalg.norm(b, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (a.T @ b) / np.outer(sa, sb)
    # A constant column carries no information about any source: correlation 0, not NaN.
    return np.abs(np.nan_to_num(corr, nan=0.0))


def match_components(estimated: ArrayLike, true: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Match estimated components to true ones by maximal absolute Pearson correlation.

    Parameters
    ----------
    estimated, true : ArrayLike
        Arrays of shape ``(num_data, dim_estimated)`` and ``(num_data, dim_true)``.

    Returns
    -------
    order : numpy.ndarray
        ``order[k]`` is the estimated column matched to true column ``k`` (Hungarian matching).
    signs : numpy.ndarray
        The sign (+1 or -1) of the correlation of each matched pair.
    """
    est = _as_2d("estimated", estimated)
    tru = _as_2d("true", true)
    a = est - est.mean(0)
    b = tru - tru.mean(0)
    corr = a.T @ b
    rows, cols = linear_sum_assignment(-np.abs(corr))
    order = np.empty(tru.shape[1], dtype=int)
    order[cols] = rows
    signs = np.sign(corr[order, np.arange(tru.shape[1])])
    signs[signs == 0] = 1.0
    return order, signs


def mcc(
    estimated: ArrayLike,
    true: ArrayLike,
    *,
    method: Literal["pearson", "spearman"] = "pearson",
) -> float:
    """Mean correlation coefficient between estimated and true sources.

    The absolute correlation matrix between every estimated and every true component is computed,
    components are paired by the Hungarian algorithm to maximise the total, and the mean over the
    pairs is returned (Hyvarinen & Morioka 2016; Khemakhem et al. 2020, Sec. 6). Invariant to
    permutation and sign flips; with ``method="spearman"`` also to any monotone elementwise transform.

    Parameters
    ----------
    estimated, true : ArrayLike
        Shape ``(num_data, dim)``; the two dims may differ (the smaller is matched).
    method : {"pearson", "spearman"}
        Correlation used.

    Returns
    -------
    float
        In [0, 1]; 1 for a perfect recovery up to the ambiguities.

    Raises
    ------
    ValueError
        If an input is not 2-D, the numbers of rows differ, or ``method`` is unknown.

    Examples
    --------
    >>> z = np.random.default_rng(0).laplace(size=(500, 3))
    >>> round(mcc(-z[:, ::-1], z), 6)
    1.0
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"`method` must be 'pearson' or 'spearman'; got {method!r}.")
    est = _as_2d("estimated", estimated)
    tru = _as_2d("true", true)
    if est.shape[0] != tru.shape[0]:
        raise ValueError(
            f"`estimated` has {est.shape[0]} rows but `true` has {tru.shape[0]}; both must be "
            "(num_data, dim) over the same data points."
        )
    if method == "spearman":
        est = np.apply_along_axis(rankdata, 0, est)
        tru = np.apply_along_axis(rankdata, 0, tru)
    corr = _abs_correlation(est, tru)
    rows, cols = linear_sum_assignment(-corr)
    return float(corr[rows, cols].mean())


def amari_distance(estimated_mixing: ArrayLike, true_mixing: ArrayLike) -> float:
    """Amari distance between two square mixing matrices, normalised to [0, 1].

    With ``P = pinv(estimated) @ true`` (the identity up to permutation and scaling for a perfect
    estimate), the Amari index (Amari, Cichocki & Yang 1996) is

    .. math:: \\frac{1}{2K(K-1)} \\Big[\\sum_i \\Big(\\frac{\\sum_j |P_{ij}|}{\\max_j |P_{ij}|} - 1\\Big)
              + \\sum_j \\Big(\\frac{\\sum_i |P_{ij}|}{\\max_i |P_{ij}|} - 1\\Big)\\Big],

    which is 0 exactly when the estimate equals the truth up to permutation, sign and scale, and 1 at
    worst. Rectangular ``(num_observed, K)`` mixing matrices are handled through the pseudo-inverse.

    Parameters
    ----------
    estimated_mixing, true_mixing : ArrayLike
        Shape ``(num_observed, num_sources)``, the same for both.

    Returns
    -------
    float
        In [0, 1].

    Raises
    ------
    ValueError
        If the shapes differ or a matrix is not 2-D.
    """
    est = _as_2d("estimated_mixing", estimated_mixing)
    tru = _as_2d("true_mixing", true_mixing)
    if est.shape != tru.shape:
        raise ValueError(
            f"`estimated_mixing` has shape {est.shape} but `true_mixing` has {tru.shape}; "
            "both must be (num_observed, num_sources)."
        )
    k = tru.shape[1]
    if k < 2:
        return 0.0
    p = np.abs(np.linalg.pinv(est) @ tru)
    rows = (p.sum(1) / p.max(1) - 1.0).sum()
    cols = (p.sum(0) / p.max(0) - 1.0).sum()
    return float((rows + cols) / (2.0 * k * (k - 1)))
