"""The sweep's built-in metrics: ``function(fit, dataset) -> dict[str, float]``, by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["METRICS", "DEFAULT_METRICS"]


def _recovery(fit: Any, dataset: Any) -> dict[str, float]:
    from ppzoo.report import recovery_metrics

    return recovery_metrics(fit, dataset.truth)


def _identifiability(fit: Any, dataset: Any) -> dict[str, float]:
    out = _recovery(fit, dataset)
    return {k: v for k, v in out.items() if k in ("mcc_pearson", "mcc_spearman", "amari_distance")}


def _disentanglement(fit: Any, dataset: Any, *, max_points: int = 1000) -> dict[str, float]:
    from ppzoo.metrics import dci, gaussian_total_correlation, mig, sap
    from ppzoo.models.vae import encode

    truth = dataset.truth
    factors = np.asarray(truth["factor_indices"] if "factor_indices" in truth else truth["factors"])
    codes, _ = encode(fit.model, fit.params, dataset.data["x"])
    seed = fit.seed or 0
    rows = np.random.default_rng(seed).permutation(len(codes))[:max_points]
    d = dci(codes[rows], factors[rows], seed=seed)
    return {
        "mig": mig(codes, factors),
        "dci_disentanglement": d["disentanglement"],
        "dci_completeness": d["completeness"],
        "dci_informativeness": d["informativeness"],
        "sap": sap(codes[rows], factors[rows], seed=seed),
        "gaussian_tc": gaussian_total_correlation(codes),
    }


def _diagnostics(fit: Any, dataset: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    if "diverging" in fit.sample_stats:
        out["divergences"] = int(np.asarray(fit.sample_stats["diverging"]).sum())
    if fit.num_chains > 1:
        import arviz_stats

        from ppzoo.report import global_sites

        sites = global_sites(fit)
        if sites:
            summary = arviz_stats.summary(fit.datatree, var_names=sites, round_to="none")
            out["max_r_hat"] = float(summary["r_hat"].max())
            out["min_ess_bulk"] = float(summary["ess_bulk"].min())
    return out


#: Metric name -> ``function(fit, dataset) -> dict[str, float]``. Add your own, or name one in a study
#: file as ``"package.module:function"`` or ``"file.py:function"`` (relative to the study file).
METRICS: dict[str, Callable[[Any, Any], Mapping[str, float]]] = {
    "recovery": _recovery,
    "identifiability": _identifiability,
    "disentanglement": _disentanglement,
    "diagnostics": _diagnostics,
}

#: Metrics used when a study names none: by zoo model, else ``("recovery",)``.
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "ica": ("identifiability",),
    "vae": ("disentanglement",),
    "beta_vae": ("disentanglement",),
    "beta_tcvae": ("disentanglement",),
    "factor_vae": ("disentanglement",),
    "dip_vae_i": ("disentanglement",),
    "dip_vae_ii": ("disentanglement",),
    "ivae": ("identifiability",),
}

