"""Fits side by side: which sites a page summarises, fits by label, draws mapped onto one mode, and the
convergence thresholds every page and check uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ppzoo.fit import Fit

__all__ = ["RHAT_MAX", "ESS_MIN", "MAX_SUMMARY_SCALARS", "global_sites", "label_fits", "comparable_samples"]

#: A summary row is flagged when r_hat exceeds this (Vehtari et al. 2021) ...
RHAT_MAX = 1.01
#: ... or when the bulk or tail ESS falls below this, all chains together (Vehtari et al. 2021: 400, i.e. 100 per
#: chain for four chains); the same thresholds give each MCMC fit's convergence verdict.
ESS_MIN = 400

#: Sites with more scalars than this are left out of summary tables and trace plots (per-datum latents).
MAX_SUMMARY_SCALARS = 60


def global_sites(fit: Fit) -> list[str]:
    """The sites a report summarises: the model's ``summary_sites``, else every site of at most
    ``MAX_SUMMARY_SCALARS`` scalars (per-datum latents of large data sets are left out by size)."""
    preferred = getattr(fit.model, "summary_sites", ())
    if preferred:
        return [s for s in preferred if s in fit.samples]
    return [k for k, v in fit.samples.items() if int(np.prod(v.shape[2:])) <= MAX_SUMMARY_SCALARS]


def label_fits(fits: Fit | Sequence[Fit] | Mapping[str, Fit]) -> dict[str, Fit]:
    """Fits by label: a mapping as given, else labelled by engine (``nuts``, ``nuts_2``, ...)."""
    if isinstance(fits, Fit):
        fits = [fits]
    if isinstance(fits, Mapping):
        labelled = dict(fits)
    else:
        labelled = {}
        for f in fits:
            label, k = f.engine, 2
            while label in labelled:
                label, k = f"{f.engine}_{k}", k + 1
            labelled[label] = f
    if not labelled:
        raise ValueError("`fits` is empty: pass at least one ppzoo.Fit.")
    for label, f in labelled.items():
        if not isinstance(f, Fit):
            raise TypeError(f"`fits[{label!r}]` is a {type(f).__name__}, not a ppzoo.Fit.")
    return labelled


def comparable_samples(labelled: Mapping[str, Fit], sites: Sequence[str],
                       reference: Mapping[str, Any] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Each fit's draws of ``sites``; for models with symmetric modes (a model with an ``align`` function),
    mapped onto one mode: that of ``reference`` (known true values by site, e.g. ``ds.truth``) where it gives
    every site the alignment matches on, else the first fit's."""
    fits = list(labelled.items())
    first_label, first = fits[0]
    align = getattr(first.model, "align", None)
    if align is None:
        return {label: {s: fit.samples[s] for s in sites} for label, fit in fits}
    anchor = {s: np.asarray(reference[s]) for s in sites
              if reference is not None and s in reference
              and np.shape(reference[s]) == first.samples[s].shape[2:]}
    # The mode to map onto: the truth where known, else the first fit's chain-0 mean (align matches chain means).
    target = {s: anchor[s] if s in anchor else first.samples[s][0].mean(0) for s in sites}
    use_truth = len(anchor) == len(sites)
    out = {}
    for index, (label, fit) in enumerate(fits):
        samples = {s: fit.samples[s] for s in sites}
        if index > 0 or use_truth:
            draws = fit.num_draws
            stacked = {s: np.concatenate([np.broadcast_to(target[s], (1, draws, *np.shape(target[s]))), samples[s]])
                       for s in sites}
            aligned, _ = align(stacked, first.model.config)
            samples = {s: aligned[s][1:] for s in sites}
        out[label] = samples
    return out
