r"""The amortization gap: how far an amortized Gaussian encoder is from the exact posterior, point by point.

An amortized encoder :math:`q(z \mid x) = \mathcal{N}(m(x), \operatorname{diag} s(x)^2)` is one network for
every data point; the exact posterior :math:`p(z \mid x)` of the same model (decoder and prior held at the
same values) can be drawn by MCMC for a few points. :func:`amortization_gap` compares the two on those
points: means, spreads, central intervals and a distance between the distributions, and, when the true
latents are known, how well each posterior mean recovers them (MCC). It knows nothing about the model, so
every VAE-family model in the zoo can use it.

Distances (both are 2-Wasserstein distances, in the units of the latents):

``w2_gaussian``
    Per point, between the encoder's Gaussian and a Gaussian with the mean and *full* covariance of the MCMC
    draws of that point (closed form, Dowson & Landau 1982):
    :math:`W_2^2 = \lVert m_q - m_p \rVert^2 + \operatorname{tr}\big(S_q + \Sigma_p - 2 (S_q^{1/2} \Sigma_p S_q^{1/2})^{1/2}\big)`.
    It sees correlations between latents that a mean-field encoder cannot express.
``w2_marginal``
    Per point and latent, between the encoder's 1-D Gaussian marginal and the *empirical* distribution of the
    MCMC draws (no Gaussian assumption on the exact posterior): with the draws sorted,
    :math:`W_2^2 \approx \frac{1}{S} \sum_i \big(z_{(i)} - m_q - s_q \Phi^{-1}(\tfrac{i - 1/2}{S})\big)^2`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import ndtri

from ppzoo.metrics import mcc

__all__ = ["amortization_gap", "encoder_pareto_k", "gaussian_w2", "marginal_w2", "INTERVAL"]

#: Central interval used for the interval comparisons.
INTERVAL = 0.9


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square roots of a stack of positive semi-definite matrices."""
    values, vectors = np.linalg.eigh(matrix)
    values = np.clip(values, 0.0, None)
    return (vectors * np.sqrt(values)[..., None, :]) @ np.swapaxes(vectors, -1, -2)


def gaussian_w2(mean_q: ArrayLike, sd_q: ArrayLike, mean_p: ArrayLike, cov_p: ArrayLike) -> np.ndarray:
    """2-Wasserstein distance between diagonal Gaussians ``q`` and full-covariance Gaussians ``p``.

    Parameters
    ----------
    mean_q, sd_q : array_like, shape (n, k)
        Means and standard deviations of the diagonal Gaussians.
    mean_p : array_like, shape (n, k)
        Means of the other Gaussians.
    cov_p : array_like, shape (n, k, k)
        Their covariances.

    Returns
    -------
    numpy.ndarray, shape (n,)
        One distance per row.
    """
    mean_q, sd_q, mean_p, cov_p = (np.asarray(a, dtype=np.float64) for a in (mean_q, sd_q, mean_p, cov_p))
    root_q = sd_q[..., :, None] * np.eye(sd_q.shape[-1])
    cross = _sqrtm_psd(root_q @ cov_p @ root_q)
    trace = (sd_q**2).sum(-1) + np.trace(cov_p, axis1=-2, axis2=-1) - 2.0 * np.trace(cross, axis1=-2, axis2=-1)
    squared = ((mean_q - mean_p) ** 2).sum(-1) + np.clip(trace, 0.0, None)
    return np.sqrt(squared)


def marginal_w2(mean_q: ArrayLike, sd_q: ArrayLike, draws: ArrayLike) -> np.ndarray:
    """1-D 2-Wasserstein distances between Gaussians and the empirical distributions of draws.

    Parameters
    ----------
    mean_q, sd_q : array_like, shape (n, k)
        Means and standard deviations of the Gaussians.
    draws : array_like, shape (s, n, k)
        ``s`` draws for each of the ``n x k`` marginals.

    Returns
    -------
    numpy.ndarray, shape (n, k)
        The distance of each marginal, computed against the Gaussian's quantiles at ``(i - 1/2) / s``.
    """
    draws = np.sort(np.asarray(draws, dtype=np.float64), axis=0)
    s = draws.shape[0]
    quantiles = ndtri((np.arange(s) + 0.5) / s)[:, None, None]
    gaussian = np.asarray(mean_q)[None] + np.asarray(sd_q)[None] * quantiles
    return np.sqrt(((draws - gaussian) ** 2).mean(0))


def _check(encoder_mean, encoder_sd, mcmc_draws, true) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    mean = np.asarray(encoder_mean, dtype=np.float64)
    sd = np.asarray(encoder_sd, dtype=np.float64)
    draws = np.asarray(mcmc_draws, dtype=np.float64)
    if mean.ndim != 2:
        raise ValueError(f"`encoder_mean` must be 2-D (num_points, num_latents); got shape {mean.shape}.")
    if sd.shape != mean.shape:
        raise ValueError(f"`encoder_sd` must have the shape of `encoder_mean` {mean.shape}; got {sd.shape}.")
    if not np.all(sd > 0):
        raise ValueError("`encoder_sd` must be positive everywhere (standard deviations, not log-scales).")
    if draws.ndim == 4:
        draws = draws.reshape((-1,) + draws.shape[2:])
    if draws.ndim != 3 or draws.shape[1:] != mean.shape:
        raise ValueError(
            f"`mcmc_draws` must be (chain, draw, {mean.shape[0]}, {mean.shape[1]}) or (draw, {mean.shape[0]}, "
            f"{mean.shape[1]}), matching `encoder_mean`; got shape {np.shape(mcmc_draws)}. Pass fit.samples['z']."
        )
    if draws.shape[0] < 2:
        raise ValueError(f"`mcmc_draws` needs at least 2 draws per point; got {draws.shape[0]}.")
    for name, array in (("encoder_mean", mean), ("encoder_sd", sd), ("mcmc_draws", draws)):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"`{name}` contains NaN or inf.")
    if true is not None:
        true = np.asarray(true, dtype=np.float64)
        if true.ndim != 2 or true.shape[0] != mean.shape[0]:
            raise ValueError(
                f"`true` must be 2-D with one row per point ({mean.shape[0]}); got shape {true.shape}."
            )
    return mean, sd, draws, true


def amortization_gap(
    encoder_mean: ArrayLike,
    encoder_sd: ArrayLike,
    mcmc_draws: ArrayLike,
    true: ArrayLike | None = None,
) -> dict[str, Any]:
    """Compare an amortized Gaussian encoder with MCMC draws of the exact posterior on the same points.

    Parameters
    ----------
    encoder_mean, encoder_sd : array_like, shape (n, k)
        The encoder's mean and standard deviation for each of ``n`` points and ``k`` latents.
    mcmc_draws : array_like, shape (chain, draw, n, k) or (draw, n, k)
        Draws of the exact posterior of the same latents (e.g. ``fit.samples["z"]`` of a NUTS fit with the
        decoder held at the values the encoder was trained with).
    true : array_like, shape (n, k_true), optional
        True latents of the points; adds the MCC of each posterior mean to them.

    Returns
    -------
    dict
        Scalars (means over points, and over latents where per-latent values exist):

        - ``w2_gaussian``: mean over points of the 2-Wasserstein distance between the encoder and a
          full-covariance Gaussian fitted to the draws (module docstring); ``w2_gaussian_median``.
        - ``w2_marginal``: mean over points and latents of the 1-D 2-Wasserstein distance between the
          encoder's marginal and the empirical marginal of the draws.
        - ``mean_shift``: mean over points and latents of ``|m_q - m_p| / sd_p``, the encoder's error in
          units of the exact posterior sd.
        - ``sd_ratio``: median over points and latents of ``s_q / sd_p`` (< 1: the encoder is overconfident).
        - ``interval_coverage``: share of MCMC draws inside the encoder's central 90% interval (0.9 if they
          agree), averaged over points and latents.
        - ``max_abs_correlation``: mean over points of the largest absolute posterior correlation between two
          latents (what a mean-field encoder cannot represent; 0 for one latent).
        - With ``true``: ``mcc_encoder``, ``mcc_mcmc`` (Pearson) and ``mcc_encoder_spearman``,
          ``mcc_mcmc_spearman``.

        Arrays: ``per_latent``, a dict of length-``k`` arrays (``w2_marginal``, ``mean_shift``, ``sd_ratio``,
        ``interval_coverage``, ``encoder_sd``, ``mcmc_sd``); ``w2_gaussian_per_point`` (length ``n``);
        ``mcmc_mean`` and ``mcmc_sd`` (``(n, k)``), and the encoder's and the MCMC central 90% intervals
        ``encoder_interval`` and ``mcmc_interval`` (``(2, n, k)``).

    Raises
    ------
    ValueError
        If the shapes do not match, an sd is not positive, or an input is not finite.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> draws = rng.normal(size=(4000, 3, 2))
    >>> gap = amortization_gap(np.zeros((3, 2)), np.ones((3, 2)), draws)
    >>> gap["w2_gaussian"] < 0.1
    True
    """
    mean, sd, draws, true = _check(encoder_mean, encoder_sd, mcmc_draws, true)
    n, k = mean.shape
    mcmc_mean = draws.mean(0)
    centred = draws - mcmc_mean
    cov = np.einsum("sni,snj->nij", centred, centred) / (draws.shape[0] - 1)
    mcmc_sd = np.sqrt(np.clip(np.diagonal(cov, axis1=-2, axis2=-1), 1e-300, None))
    w2_gauss = gaussian_w2(mean, sd, mcmc_mean, cov)
    w2_marg = marginal_w2(mean, sd, draws)
    shift = np.abs(mean - mcmc_mean) / mcmc_sd
    ratio = sd / mcmc_sd
    half = ndtri(0.5 + INTERVAL / 2)
    low, high = mean - half * sd, mean + half * sd
    coverage = ((draws >= low) & (draws <= high)).mean(0)
    tail = (1 - INTERVAL) / 2
    mcmc_interval = np.quantile(draws, [tail, 1 - tail], axis=0)
    if k > 1:
        corr = cov / (mcmc_sd[:, :, None] * mcmc_sd[:, None, :])
        off = np.abs(corr[:, ~np.eye(k, dtype=bool)])
        max_corr = float(off.max(-1).mean())
    else:
        max_corr = 0.0
    out: dict[str, Any] = {
        "num_points": n,
        "num_draws": int(draws.shape[0]),
        "w2_gaussian": float(w2_gauss.mean()),
        "w2_gaussian_median": float(np.median(w2_gauss)),
        "w2_marginal": float(w2_marg.mean()),
        "mean_shift": float(shift.mean()),
        "sd_ratio": float(np.median(ratio)),
        "interval_coverage": float(coverage.mean()),
        "max_abs_correlation": max_corr,
        "per_latent": {
            "w2_marginal": w2_marg.mean(0),
            "mean_shift": shift.mean(0),
            "sd_ratio": np.median(ratio, axis=0),
            "interval_coverage": coverage.mean(0),
            "encoder_sd": np.median(sd, axis=0),
            "mcmc_sd": np.median(mcmc_sd, axis=0),
        },
        "w2_gaussian_per_point": w2_gauss,
        "mcmc_mean": mcmc_mean,
        "mcmc_sd": mcmc_sd,
        "encoder_interval": np.stack([low, high]),
        "mcmc_interval": mcmc_interval,
    }
    if true is not None:
        for method, suffix in (("pearson", ""), ("spearman", "_spearman")):
            out[f"mcc_encoder{suffix}"] = mcc(mean, true, method=method)
            out[f"mcc_mcmc{suffix}"] = mcc(mcmc_mean, true, method=method)
    return out


def encoder_pareto_k(model: Any, params: Any, data: dict[str, Any], *, seed: int = 0, num_draws: int = 1000,
                     num_items: int = 256) -> dict[str, Any]:
    r"""Per-datum PSIS :math:`\hat k` of a zoo model's own amortized guide (its encoder) on ``data``.

    For each data point, ``num_draws`` draws from the encoder :math:`q(z \mid x)` are importance-weighted by
    :math:`p(x, z) / q(z \mid x)` under ``model`` (pass the plain generative model, e.g.
    ``ppzoo.models.vae.posterior_model(m)``, to diagnose against the exact posterior rather than a tempered one)
    and their :math:`\hat k` estimated (``ppzoo.inference.psis.diagnose``, per-datum mode; Yao et al. 2018:
    above 0.7 the encoder is an unreliable proposal for that point). It complements :func:`amortization_gap`:
    needs no MCMC, so it runs on ``num_items`` points where NUTS runs on a few.

    Returns
    -------
    dict
        ``pareto_k_median``, ``share_k_above_0_7`` (the share of the diagnosed points above 0.7),
        ``num_items`` and ``item_k`` (each point's :math:`\hat k`).
    """
    import jax

    from ppzoo.inference.psis import diagnose

    guide = model.make_guide() if callable(getattr(model, "make_guide", None)) else None
    if guide is None:
        raise ValueError(f"encoder_pareto_k needs a zoo model with its own amortized guide (model.make_guide()); "
                         f"got {type(model).__name__}.")
    result = diagnose(model, guide, params, jax.random.key(seed), data, num_draws=num_draws, num_items=num_items)
    if result.item_k is None:
        raise ValueError("encoder_pareto_k: the guide's latents are not per data point (no plate 'data'), so there "
                         "is no per-datum k-hat; use ppzoo.fit(..., engine='svi') and fit.diagnostics['psis'].")
    return {"pareto_k_median": float(result.pareto_k), "share_k_above_0_7": float(result.share_above),
            "num_items": int(result.item_k.size), "item_k": np.asarray(result.item_k)}
