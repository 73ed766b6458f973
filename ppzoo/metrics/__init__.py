"""Metrics of how well a fitted model recovered the true mechanism.

Identifiability (any model with per-datum latents ``z``): :func:`mcc`, :func:`amari_distance`.
Disentanglement (disentanglement_lib's definitions and settings): :func:`mig`, :func:`dci`, :func:`sap`,
:func:`modularity_explicitness`, :func:`gaussian_total_correlation`, and the oracle-based
:func:`beta_vae_score` and :func:`factor_vae_score`.
Two-sample distance (SciPy has the 1-D ones): :func:`energy_distance`. Reading known factors off images
to score generated ones: :class:`FactorReader`.
"""

from ppzoo.metrics.disentanglement import (
    METRICS_SKLEARN_VERSION,
    beta_vae_score,
    dci,
    factor_vae_score,
    gaussian_total_correlation,
    metric_versions,
    mig,
    modularity_explicitness,
    sap,
)
from ppzoo.metrics.distances import energy_distance
from ppzoo.metrics.identifiability import amari_distance, match_components, mcc
from ppzoo.metrics.readout import FactorReader

__all__ = [
    "mcc",
    "amari_distance",
    "match_components",
    "mig",
    "dci",
    "sap",
    "modularity_explicitness",
    "gaussian_total_correlation",
    "beta_vae_score",
    "factor_vae_score",
    "metric_versions",
    "METRICS_SKLEARN_VERSION",
    "energy_distance",
    "FactorReader",
]
