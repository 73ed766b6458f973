"""The closed loop, measured: predictive checks, LOO, SBC and reference comparisons as verdict lines.

:func:`predictive_checks` judges one fit (prior predictive, posterior predictive, LOO with Pareto k,
LOO-PIT); :func:`closed_loop_section` turns those, plus an optional :class:`ppzoo.SBCResult` and an
optional reference comparison, into a report section with one verdict line per check.
``ppzoo check NAME`` (:mod:`ppzoo.cli`) runs all of them on a zoo model or a posteriordb reference and
writes the model's report with that section.
"""

from __future__ import annotations

import dataclasses
import html
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import pandas as pd

from ppzoo import inference
from ppzoo.fit import Fit
from ppzoo.page import Section, figure_or_error

__all__ = [
    "Check", "is_mcmc", "predictive_checks", "closed_loop_section", "sbc_check", "reference_check", "engines_agree",
    "image_ppc_figure", "zero_based",
    "ppc_figures",
    "convergence_diagnostics", "convergence_table", "convergence_check", "max_r_hat", "unconverged_note",
    "mark_unconverged", "posterior_collapse", "ACTIVE_VARIANCE", "psis_check",
]

#: Tail probability below which a check fails (two-sided where it applies).
ALPHA = 0.01

#: Fewest posterior draws for PSIS-LOO: its Pareto tail, min(0.2 S, 3 sqrt(S)) draws, needs 5 of them.
MIN_LOO_DRAWS = 25


@dataclasses.dataclass
class Check:
    """One closed-loop check: its verdict line and what backs it.

    Attributes
    ----------
    name : str
        What was checked ("LOO-PIT", "SBC (nuts)", ...).
    passed : bool or None
        ``None`` when the check does not apply to this model (the verdict says why).
    verdict : str
        One line in words, with the number it rests on.
    figures, tables : list
        ``(caption, figure)`` and ``(caption, DataFrame)`` pairs for the report.
    """

    name: str
    passed: bool | None
    verdict: str
    figures: list[tuple[str, Any]] = dataclasses.field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.passed is not None:
            self.passed = bool(self.passed)


def _observed_names(tree: Any) -> list[str]:
    return list(tree["observed_data"].data_vars) if "observed_data" in tree.children else []


def _is_binary(observed: np.ndarray, draws: np.ndarray) -> bool:
    """Whether a site holds 0/1 data: the observed values and (a sample of) the replicated ones are all 0 or 1."""
    return bool(np.isin(observed, (0, 1)).all() and np.isin(np.ravel(draws)[:100_000], (0, 1)).all())


def _prior_check(tree: Any, label: str) -> Check:
    if "prior_predictive" not in tree.children:
        return Check("prior predictive", None, "not applicable: the model has an improper (flat) prior, no prior draws.")
    inside, total = 0, 0
    binary = []  # (site, observed mean, low, high)
    for name in _observed_names(tree):
        observed = np.asarray(tree["observed_data"][name])
        draws = np.asarray(tree["prior_predictive"][name]).reshape((-1,) + observed.shape)
        if _is_binary(observed, draws):
            # Any 0/1 value lies inside the central 99% of 0/1 draws ([0, 1]), so the coverage below would pass
            # whatever the prior. A statistic that can fail instead: the observed share of ones inside the central
            # 99% of the replicated shares (a prior that draws half the pixels on fails on sparse digits).
            means = draws.reshape(len(draws), -1).mean(1)
            low, high = np.quantile(means, [0.005, 0.995])
            binary.append((name, float(observed.mean()), float(low), float(high)))
            continue
        lo, hi = np.quantile(draws, [0.005, 0.995], axis=0)
        inside += int(((observed >= lo) & (observed <= hi)).sum())
        total += observed.size
    parts, passed = [], True
    if total:
        fraction = inside / total
        # A prior predictive that covers the data puts nearly every point inside its central 99%; we ask for 90%
        # of them so that a handful of outliers do not fail a sensible prior.
        passed = fraction >= 0.9
        parts.append(f"{fraction:.1%} of observed values lie inside the prior predictive's central 99% "
                     "(pass: at least 90%)")
    for name, mean, low, high in binary:
        passed = passed and low <= mean <= high
        parts.append(f"binary `{name}`: observed share of ones {mean:.3f} "
                     f"{'inside' if low <= mean <= high else 'OUTSIDE'} the prior predictive's central 99% of "
                     f"replicated shares [{low:.3f}, {high:.3f}] (per-value coverage of 0/1 data is vacuous)")
    images = [n for n in _observed_names(tree) if np.asarray(tree["observed_data"][n]).ndim >= 3]
    if images:
        figures = [figure_or_error(f"{label}: prior predictive check of `{n}`: observed images (top row) and images "
                                   "generated from three prior draws",
                                   lambda n=n: image_ppc_figure(tree, n, group="prior_predictive")) for n in images]
    else:
        figures = ppc_figures(tree, f"{label}: prior predictive check (observed vs data simulated from the prior)",
                              group="prior_predictive")
    return Check("prior predictive", passed, "; ".join(parts) + ".", figures=figures)


def _observation_dims(ll: Any) -> list[str]:
    """The dimensions of a log-likelihood array that index observations (all but ``chain`` and ``draw``)."""
    return [d for d in ll.dims if d not in ("chain", "draw")]


def _per_datum_latents(tree: Any, obs_dims: Sequence[str], latent: Sequence[str] | None) -> list[str]:
    """Posterior sites with one value per observation: their dims include every observation dim of the
    log-likelihood (ICA's and the VAEs' ``z`` in plate ``data``). A site on only some of them (a per-feature
    rate when the data are ``data x feature``) is shared by many observations and stays identified when
    one is left out. ``latent`` restricts the search to sample sites; a deterministic site on the data plate
    (a per-datum mean) is a function of the others and identifies nothing on its own."""
    if "posterior" not in tree.children or not obs_dims:
        return []
    posterior = tree["posterior"]
    names = [n for n in (latent if latent is not None else posterior.data_vars) if n in posterior.data_vars]
    return [n for n in names if set(obs_dims) <= set(posterior[n].dims)]


def _loo(tree: Any, latent: Sequence[str] | None = None) -> tuple[Any, str | None]:
    """PSIS-LOO of the one observed site, or ``None`` and why it does not apply."""
    import arviz_stats

    names = list(tree["log_likelihood"].data_vars) if "log_likelihood" in tree.children else []
    if not names:
        return None, "the fit has no log-likelihood"
    if len(names) > 1:
        return None, f"several observed sites ({', '.join(names)}): LOO needs one; call arviz_stats.loo(tree, var_name=...)"
    ll = tree["log_likelihood"][names[0]]
    obs_dims = _observation_dims(ll)
    if int(np.prod([ll.sizes[d] for d in obs_dims], dtype=int)) == 1:
        # Eight schools' `y` is one 8-vector: its log-likelihood has one element per draw, so "leave one
        # out" would leave out all the data.
        return None, (f"one observation (`{names[0]}` is a single joint observation): leave-one-out has nothing "
                      "to leave out")
    own = _per_datum_latents(tree, obs_dims, latent)
    if own:
        # Leaving x_i out leaves z_i with its prior only; the importance ratio p(z_i)/p(z_i | x_i) then has
        # tails so heavy that PSIS cannot smooth them (k > 1 for nearly every point, p_loo > n on ICA).
        return None, (
            f"each observation has its own latent ({', '.join(f'`{n}`' for n in own)}): leaving an observation "
            "out leaves its latent unidentified, so PSIS-LOO does not apply (loo glossary, 'Interpreting p_loo', "
            "after Vehtari, Gelman & Gabry 2017: a parameter per observation makes the model too flexible for "
            "PSIS); use K-fold CV, or integrate the latent out (Vehtari et al. 2016, JMLR 17)"
        )
    draws = int(ll.sizes.get("chain", 1) * ll.sizes.get("draw", 1))
    if draws < MIN_LOO_DRAWS:
        return None, f"only {draws} posterior draws: PSIS-LOO needs at least {MIN_LOO_DRAWS} (a Pareto tail of 5 or more)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return arviz_stats.loo(tree, pointwise=True, var_name=names[0]), None
        except ValueError as error:  # e.g. a degenerate tail (all log-likelihoods equal)
            return None, f"arviz_stats.loo failed: {error}"


#: Above this share of observations with a bad Pareto k, refitting without them is no longer a fix: say
#: PSIS-LOO is unreliable for the model and point to K-fold CV.
MAX_REFIT_FRACTION = 0.1


def _loo_check(loo: Any, why_not: str | None) -> Check:
    if loo is None:
        return Check("LOO", None, f"not applicable: {why_not}.")
    k = np.asarray(loo.pareto_k).ravel()
    bad = int((k > loo.good_k).sum())
    n = int(loo.n_data_points)
    table = pd.DataFrame(
        {"elpd_loo": [loo.elpd], "se": [loo.se], "p_loo": [loo.p], "n_data": [n],
         "draws": [loo.n_samples], "k_threshold": [loo.good_k], "k_above": [bad], "k_max": [float(k.max())]}
    )
    passed = bad == 0
    head = (f"elpd_loo {loo.elpd:.1f} (se {loo.se:.1f}), p_loo {loo.p:.1f}; Pareto k above {loo.good_k:.2f} for "
            f"{bad} of {k.size} observations")
    if passed:
        advice = ""
    elif loo.p > n:
        # p_loo > n: more effective parameters than data points (loo glossary, 'Interpreting p_loo').
        advice = (f" (p_loo {loo.p:.0f} > n = {n}: the model is too flexible for PSIS-LOO, or badly misspecified; "
                  "use K-fold CV)")
    elif bad > MAX_REFIT_FRACTION * n:
        advice = (f" (PSIS-LOO unreliable for {bad} observations, more than {MAX_REFIT_FRACTION:.0%} of the data: "
                  "the model is too flexible for PSIS-LOO; use K-fold CV)")
    else:
        advice = " (PSIS-LOO unreliable there: refit without them, or use K-fold CV)"
    return Check("LOO", passed, head + advice + ".", tables=[("PSIS-LOO (arviz_stats.loo)", table)])


def _loo_pit_check(tree: Any, loo: Any, label: str, why_not: str | None = None) -> Check:
    import arviz_plots
    import arviz_stats

    if loo is None:
        reason = (why_not or "").split(":")[0]  # the LOO line has the rest
        return Check("LOO-PIT", None,
                     f"not applicable: no PSIS-LOO ({reason + '; ' if reason else ''}see the LOO line).")
    name = list(tree["log_likelihood"].data_vars)[0]
    pp = tree["posterior_predictive"][name]
    ll = tree["log_likelihood"][name]
    if pp.ndim != ll.ndim:
        return Check("LOO-PIT", None, f"not applicable: `{name}` has event dimensions (multivariate observations or images): LOO-PIT needs one value per observation.")
    draws = np.intersect1d(pp["draw"].values, ll["draw"].values)
    if draws.size < 50:
        return Check("LOO-PIT", None, f"not applicable: only {draws.size} draws shared by the predictive and log-likelihood.")
    sub = tree.copy()
    for group in ("posterior", "posterior_predictive", "log_likelihood", "sample_stats"):
        if group in sub.children:
            ds = sub[group].to_dataset()
            if "draw" in ds.dims:
                ds = ds.assign_coords(draw=np.arange(ds.sizes["draw"])) if group in ("posterior", "sample_stats") else ds
                sub[group] = ds.sel(draw=draws) if group not in ("posterior", "sample_stats") else ds.isel(draw=draws)
    # ArviZ's own LOO-PIT check (what plot_loo_pit draws): Pareto-smoothed LOO-PIT values and the POT-C
    # uniformity test (pointwise Beta tests of the order statistics, Cauchy-combined; Tesso et al. 2026),
    # which stays valid although LOO-PIT values are dependent, unlike a KS test that assumes independence.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pit = arviz_stats.loo_pit(sub, pareto_pit=True, var_names=[name])
        p_value, _, _ = pit.azstats.uniformity_test(dim=list(pit[name].dims), method="pot_c")
    p = float(p_value[name])
    n_pit = int(np.isfinite(np.asarray(pit[name])).sum())
    passed = p >= ALPHA
    def draw() -> Any:
        with warnings.catch_warnings():
            # plot_loo_pit recomputes the PIT values, with the same harmless divide warnings on tied draws
            # (count data) that the test above silences; the verdict does not depend on the plot.
            warnings.simplefilter("ignore", RuntimeWarning)
            return arviz_plots.plot_loo_pit(sub, var_names=[name], method="pot_c", envelope_prob=1 - ALPHA,
                                            backend="matplotlib")

    figure = figure_or_error(f"{label}: LOO-PIT ECDF minus the uniform CDF (flat = calibrated predictions; points "
                             "driving a POT-C failure are highlighted)", draw)
    return Check(
        "LOO-PIT",
        passed,
        f"POT-C uniformity test (arviz_stats) of {n_pit} Pareto-smoothed LOO-PIT values: p = {p:.3g} "
        f"(pass: p >= {ALPHA}).",
        figures=[figure],
    )


def _item_means(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1).mean(1)


def _feature_means(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1).mean(0)


def _ppc_statistics(observed: np.ndarray, binary: bool) -> list[tuple[str, Callable[[np.ndarray], float]]]:
    """Test statistics for one site, none a function of another on that site's data.

    Continuous data: mean and sd. Binary data: the sd of 0/1 values is sqrt(m (1 - m)) of their mean m, so
    the sd would repeat the mean's test; instead, when the data have items and features (images, rows of
    answers), the spread of per-item means (do items differ as much as observed?) and of per-feature means
    (do pixels/questions differ as much as observed?). Neither is a function of the overall mean or of the other.
    """
    if not binary:
        return [("mean", np.mean), ("sd", np.std)]
    stats: list[tuple[str, Callable[[np.ndarray], float]]] = [("mean", np.mean)]
    if observed.ndim >= 2 and observed.shape[0] > 1 and int(np.prod(observed.shape[1:])) > 1:
        stats += [("sd of item means", lambda a: np.std(_item_means(a))),
                  ("sd of feature means", lambda a: np.std(_feature_means(a)))]
    return stats


def _posterior_predictive_check(tree: Any, label: str) -> Check:
    # Posterior predictive p-values P(T(y_rep) > T(y)), ties split. ArviZ 1.x (arviz_stats 1.3) has no function
    # for them (arviz_plots.plot_ppc_tstat draws T's distribution, not the tail probability), so they are computed here.
    rows, binary_sites = [], []
    for name in _observed_names(tree):
        observed = np.asarray(tree["observed_data"][name], dtype=float)
        pp = np.asarray(tree["posterior_predictive"][name], dtype=float)
        pp = pp.reshape((-1,) + observed.shape)
        binary = _is_binary(observed, pp)
        if binary:
            binary_sites.append(name)
        for stat_name, fn in _ppc_statistics(observed, binary):
            t_obs = fn(observed)
            t_rep = np.array([fn(r) for r in pp])
            p = (np.sum(t_rep > t_obs) + 0.5 * np.sum(t_rep == t_obs)) / t_rep.size
            rows.append({"site": name, "statistic": stat_name, "observed": t_obs, "replicated_mean": t_rep.mean(),
                         "p_value": p})
    table = pd.DataFrame(rows)
    extreme = table[(table["p_value"] < ALPHA / 2) | (table["p_value"] > 1 - ALPHA / 2)]
    passed = extreme.empty
    what = "the mean and sd of each observed site" if not binary_sites else (
        "test statistics of each observed site (binary " + ", ".join(f"`{n}`" for n in binary_sites)
        + ": the share of ones, and the spreads of per-item and per-feature means where there are items and "
        "features; not the sd, a function of the mean on 0/1 data)")
    verdict = (
        f"posterior predictive p-values of {what}: "
        + ", ".join(f"{r.site} {r.statistic} {r.p_value:.2f}" for r in table.itertuples())
        + f" (pass: all in [{ALPHA / 2}, {1 - ALPHA / 2}])."
    )
    figures = []
    for name in _observed_names(tree):
        if np.asarray(tree["observed_data"][name]).ndim >= 3:
            figures.append(figure_or_error(f"{label}: posterior predictive check of `{name}`: observed images (top row) "
                                           "and replicated images from three posterior draws (rows below)",
                                           lambda name=name: image_ppc_figure(tree, name)))
    if not figures:
        figures = ppc_figures(tree, f"{label}: posterior predictive check (observed vs replicated data)")
    return Check("posterior predictive", passed, verdict, figures=figures,
                 tables=[("Posterior predictive test statistics", table)])


def _is_discrete(tree: Any, name: str, group: str) -> bool:
    """Whether an observed site holds counts: integer dtype, or integer values in the data and the draws."""
    observed = np.asarray(tree["observed_data"][name])
    draws = np.asarray(tree[group][name]).ravel()[:10_000]
    if observed.dtype.kind in "biu":
        return True
    return bool(np.all(observed == np.round(observed)) and np.all(draws == np.round(draws)))


def _as_counts(ds: Any, names: Sequence[str]) -> Any:
    """``ds`` with the ``names`` sites as integers on one axis of observations, the form ArviZ's rootogram
    reads: it takes integer-valued floats (0/1 pixels stored as float32) for continuous data, and counts
    values along a single observation axis."""
    import xarray as xr

    out = {}
    for name in names:
        da = ds[name]
        sample = [d for d in da.dims if d in ("chain", "draw")]
        values = np.asarray(da.transpose(*sample, ...)).astype(np.int64)
        flat = values.reshape(values.shape[: len(sample)] + (-1,))
        out[name] = xr.DataArray(flat, dims=sample + [f"{name}_obs"],
                                 coords={d: da[d].values for d in sample if d in da.coords})
    return ds.drop_vars(list(names)).assign(out)


def ppc_figures(tree: Any, caption: str, *, group: str = "posterior_predictive") -> list[tuple[str, Any]]:
    """Predictive check plots: ArviZ's rootogram for each count or binary site (a density of integers is a
    comb of spikes, and ArviZ warns that it looks discrete), one ``plot_ppc_dist`` for the continuous ones."""
    import arviz_plots

    names = [n for n in _observed_names(tree) if n in tree[group].data_vars]
    discrete = [n for n in names if _is_discrete(tree, n, group)]
    continuous = [n for n in names if n not in discrete]
    figures = []
    if continuous:
        # ArviZ leaves the observed data out of prior predictive plots; the check compares them, so draw it.
        observed = {"observed_dist": {}} if group == "prior_predictive" and "observed_data" in tree.children else {}
        figures.append(figure_or_error(
            caption + ("; observed data in black" if observed or group == "posterior_predictive" else ""),
            lambda: arviz_plots.plot_ppc_dist(tree, var_names=continuous, group=group, visuals=observed or None,
                                              backend="matplotlib")))
    if discrete:
        counts = tree.copy()
        for g in ("observed_data", group):
            counts[g] = _as_counts(counts[g].to_dataset(), discrete)
    def rootogram(name: str) -> Any:
        with warnings.catch_warnings():
            # On 0/1 data ArviZ suggests plot_ppc_pava, which takes one axis of observations only (it fails on
            # images); the rootogram of the two counts stays correct, and the PPC table tests the data.
            warnings.filterwarnings("ignore", message=".*look binary", category=UserWarning)
            # ArviZ's rootogram stores its (4 statistics x unique values) table under chain x draw names and
            # then warns about its own table when there are fewer than 4 distinct values (0/1 data).
            warnings.filterwarnings("ignore", message="Found chain dimension to be longer", category=UserWarning)
            return arviz_plots.plot_ppc_rootogram(counts, var_names=[name], group=group, backend="matplotlib")

    for name in discrete:
        figures.append(figure_or_error(f"{caption}: rootogram of the counts of `{name}` (square-root scale)",
                                       lambda name=name: rootogram(name)))
    return figures


def image_ppc_figure(tree: Any, name: str, *, group: str = "posterior_predictive", num_images: int = 8,
                     num_replicates: int = 3):
    """Observed images next to images replicated from ``group``'s draws (the image models' PPC)."""
    import matplotlib.pyplot as plt

    observed = np.asarray(tree["observed_data"][name])
    pp = np.asarray(tree[group][name])
    pp = pp.reshape((-1,) + observed.shape)
    n = min(num_images, observed.shape[0])
    rows = [observed[:n]] + [pp[i * (len(pp) - 1) // max(num_replicates - 1, 1), :n] for i in range(num_replicates)]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.15 * len(rows)), squeeze=False)
    for r, images in enumerate(rows):
        for c in range(n):
            image = np.asarray(images[c], dtype=float)
            if image.ndim == 3 and image.shape[-1] in (3, 4):  # colour images (the pendulum) keep their colours
                axes[r, c].imshow(image.clip(0, 1))
            else:
                axes[r, c].imshow(image if image.ndim == 2 else image[..., 0], cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel("observed" if r == 0 else f"draw {r}", fontsize=7)
    fig.tight_layout()
    return fig


def _data_sites(fit: Fit, tree: Any) -> tuple[list[str], dict[str, str], list[str]]:
    """Split the observed sites into those holding the user's data and those that do not.

    An observed site is checked only if its value is one of the arrays in ``fit.data`` (by name, or equal
    to one) and its log-likelihood is not identically 0. The rest are observed in NumPyro's sense only:
    a ``Delta`` site with ``obs`` set to a function of the latents (the causal VAEs' concept sites, there
    so that ``handlers.do`` can set them) has log density 0 and replicates itself exactly, so its predictive
    p-values would compare the model with itself.

    Returns
    -------
    checked : list of str
        Sites to check.
    left_out : dict
        Observed site left out -> why.
    unmodelled : list of str
        Data arrays that no checked site holds (covariates, or data that enter only through
        ``numpyro.factor`` terms, like the causal VAEs' labels ``u``).
    """
    arrays = {k: np.asarray(v) for k, v in fit.data.items() if isinstance(v, (np.ndarray, jax.Array))}
    loglik = tree["log_likelihood"] if "log_likelihood" in tree.children else None
    checked, left_out, held = [], {}, set()
    for name in _observed_names(tree):
        value = np.asarray(tree["observed_data"][name])
        source = name if name in arrays else next(
            (k for k, a in arrays.items() if a.shape == value.shape and np.array_equal(a, value)), None)
        if loglik is not None and name in loglik.data_vars and not np.any(np.asarray(loglik[name])):
            left_out[name] = "log density identically 0 (e.g. a Delta site computed from the latents)"
        elif source is None:
            left_out[name] = "its value is not one of the data arrays"
        else:
            checked.append(name)
            held.add(source)
    unmodelled = [k for k, a in arrays.items() if k not in held and a.ndim >= 1]
    return checked, left_out, unmodelled


def _keep_sites(tree: Any, drop: Sequence[str]) -> Any:
    """A shallow copy of ``tree`` without the ``drop`` sites in its data-side groups."""
    if not drop:
        return tree
    sub = tree.copy()
    for group in ("observed_data", "prior_predictive", "posterior_predictive", "log_likelihood"):
        if group in sub.children:
            ds = sub[group].to_dataset()
            sub[group] = ds.drop_vars([n for n in drop if n in ds.data_vars])
    return sub


def _scope_note(checked: Sequence[str], left_out: Mapping[str, str], unmodelled: Sequence[str]) -> str:
    """What the checks cover, in words ("" when they cover every observed site and every data array)."""
    if not left_out and not unmodelled:
        return ""
    parts = [f" Scope: checked {', '.join(f'`{n}`' for n in checked) or 'nothing'}"]
    if unmodelled:
        parts.append(f"; not checked: data {', '.join(f'`{n}`' for n in unmodelled)} (no likelihood of their own: "
                     "covariates, or terms that enter only through factors)")
    reasons: dict[str, list[str]] = {}
    for name, why in left_out.items():
        reasons.setdefault(why, []).append(f"`{name}`")
    for why, names in reasons.items():
        parts.append(f"; left out: observed sites {', '.join(names)} ({why}: their predictive checks would compare "
                     "the model with itself)")
    return "".join(parts) + "."


def predictive_checks(fit: Fit, tree: Any | None = None, *, label: str | None = None) -> list[Check]:
    """Prior predictive, posterior predictive, LOO (Pareto k) and LOO-PIT checks of one fit.

    Only observed sites that hold the user's data (an array of ``fit.data``) with a log-likelihood that is
    not identically 0 are checked: a Delta site computed from the latents (CausalVAE's and SCM-VAE's
    concepts) is observed for NumPyro but would be compared with itself. The first verdict names what was
    checked and the data that were not (arrays with no likelihood of their own, like labels that enter
    only through ``numpyro.factor``).

    Parameters
    ----------
    fit : Fit
        Any ``ppzoo.fit`` result.
    tree : DataTree, optional
        ``fit.to_arviz()`` if already computed.
    label : str, optional
        Name used in figure captions (default: the engine).

    Returns
    -------
    list of Check
        In the order prior predictive, posterior predictive, LOO, LOO-PIT. Checks that do not apply (an
        improper prior, no single data site, fewer than ``MIN_LOO_DRAWS`` draws for LOO, image data for
        LOO-PIT, no data site at all) have ``passed=None``.
    """
    label = label or fit.engine
    tree = fit.to_arviz() if tree is None else tree
    if not fit.sites.observed and fit.sites.factors:
        return _factor_likelihood_checks(fit.sites.factors)
    checked, left_out, unmodelled = _data_sites(fit, tree)
    note = _scope_note(checked, left_out, unmodelled)
    if not checked:
        why = "not applicable: no observed site holds the user's data."
        return [Check(name, None, why + (note if i == 0 else "")) for i, name in
                enumerate(("prior predictive", "posterior predictive", "LOO", "LOO-PIT"))]
    tree = _keep_sites(tree, list(left_out))
    loo, why_not = _loo(tree, fit.sites.latent)
    results = [_prior_check(tree, label), _posterior_predictive_check(tree, label), _loo_check(loo, why_not),
               _loo_pit_check(tree, loo, label, why_not)]
    results[0].verdict += note  # said once per fit: the four checks share their scope
    for check in results:  # a page with several fits shows each table once per fit: say whose it is
        check.tables = [(caption if caption.startswith(f"{label}:") else f"{label}: {caption}", table)
                        for caption, table in check.tables]
    return results


def _factor_likelihood_checks(factors: Sequence[str]) -> list[Check]:
    """The predictive checks of a model whose likelihood is a ``numpyro.factor``: n/a, each saying why.

    A factor is a term of the log density, not a distribution over data: NumPyro can neither draw data from
    it nor split it into one log-likelihood term per observation.
    """
    names = ", ".join(f"`{n}`" for n in factors)
    head = f"not applicable: the likelihood is the numpyro.factor {names}, not an observed site"
    fix = ("; to check it, write the likelihood as an observed site (e.g. a marginalised mixture as "
           "dist.MixtureSameFamily(...) with obs=x)")
    why = {
        "prior predictive": "a factor cannot simulate data from the prior",
        "posterior predictive": "a factor cannot replicate the data",
        "LOO": "a factor has no pointwise log-likelihood to leave one observation out of",
        "LOO-PIT": "a factor has no pointwise log-likelihood or replicated data for PIT values",
    }
    return [Check(name, None, f"{head}: {reason}{fix}.") for name, reason in why.items()]


def psis_check(fit: Fit, label: str | None = None) -> Check:
    """The PSIS verdict on a fit's guide (:mod:`ppzoo.inference.psis`): can the approximation be trusted?

    PASS when the Pareto :math:`\\hat k` of the importance ratios :math:`p(x, z) / q(z)` is at most 0.7
    (Yao et al. 2018; Vehtari et al. 2024); for a guide amortized per datum, when at most 10% of the diagnosed
    items have :math:`\\hat k` above 0.7, with their distribution drawn. n/a for MCMC (judged by its
    convergence instead) and for a fit without the diagnostic (a point-estimate guide, ``psis_draws=0``).

    Returns
    -------
    Check
        ``"PSIS k-hat (label)"``.
    """
    from ppzoo.inference import psis

    label = label or fit.engine
    name = f"PSIS k-hat ({label})"
    result = fit.diagnostics.get("psis")
    if is_mcmc(fit):
        return Check(name, None, "not applicable: Markov chains, not a fitted approximation; judged by their "
                                 "convergence (r_hat, ESS) instead.")
    if result is None:
        reason = fit.diagnostics.get("psis_skipped") or f"the {fit.engine} engine computes no PSIS diagnostic"
        return Check(name, None, f"not applicable: {reason}.")
    cite = f"threshold {psis.K_THRESHOLD}, Yao et al. 2018"
    if result.mode == "joint":
        resampled = bool(fit.options.get("importance_resample"))
        verdict = (f"Pareto k-hat {result.pareto_k:.2f} of log p(x, z) - log q(z) over {result.num_draws} guide draws, "
                   f"ESS of the smoothed weights {result.ess:.0f} ({cite})")
        if result.moment_k is not None:
            verdict += (f"; largest k-hat of the weighted means and variances {result.moment_k:.2f} "
                        f"({result.moment_at}; Vehtari et al. 2024)")
        if result.reliable:
            verdict += ("; the draws were importance-resampled by these weights." if resampled else
                        "; the guide is close enough to the posterior to be used, or importance-resampled.")
        elif result.pareto_k <= psis.K_THRESHOLD:
            verdict += (f"; the weights cannot confirm the mean and sd of {result.moment_at}, which may be off "
                        "(often an sd too small): compare with NUTS.")
        else:
            verdict += ("; the approximation is unreliable for this posterior" +
                        (" even after importance resampling" if resampled else "") + ": use NUTS" +
                        ("." if resampled else " or importance_resample."))
        return Check(name, result.reliable, verdict)
    k = result.item_k
    quantiles = ", ".join(f"{int(q * 100)}% {np.quantile(k, q, method='inverted_cdf'):.2f}" for q in (0.1, 0.5, 0.9))
    verdict = (f"amortized guide, one k-hat per item: {100 * result.share_above:.0f}% of {k.size} items above "
               f"{psis.K_THRESHOLD} (quantiles {quantiles}; {result.num_draws} draws per item; pass: at most "
               f"{100 * psis.ITEM_SHARE:.0f}% of items, {cite})")
    if result.left_out:
        verdict += f"; factor site(s) outside the plate left out: {', '.join(result.left_out)}"

    def draw() -> Any:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 2.6))
        ax.hist(np.clip(k, -0.5, 2.0), bins=40, color="#5b7fa6")
        for value, style in ((0.5, ":"), (psis.K_THRESHOLD, "--")):
            ax.axvline(value, color="black", linestyle=style, linewidth=1)
        ax.set_xlabel("Pareto k-hat of the item (clipped to [-0.5, 2])")
        ax.set_ylabel("items")
        fig.tight_layout()
        return fig

    figure = figure_or_error(f"{label}: per-item Pareto k-hat of the amortized guide on {k.size} items (dashed: "
                             f"{psis.K_THRESHOLD}, above it the item's approximation is unreliable; dotted: 0.5)", draw)
    return Check(name, result.reliable, verdict + ".", figures=[figure])


def sbc_check(result: Any) -> Check:
    """The verdict line of a :class:`ppzoo.SBCResult`."""
    import arviz_plots

    table = result.table
    failing = table.index[~table["passed"]].tolist()
    verdict = (
        f"{len(table)} parameters x {int(result.ranks[next(iter(result.ranks))].shape[0])} simulations, chi-square "
        f"on binned ranks, Bonferroni so that the table is a {ALPHA:.0%} test: "
        + ("all uniform." if not failing else f"NOT uniform for {', '.join(failing)} (min p = {table['p_value'].min():.2g}).")
    )
    # ArviZ's simultaneous-band ("envelope") method is deprecated and fails on these trees; its default test
    # (POT-C) prints a p-value in each panel and marks the ranks where the ECDF departs from uniform.
    caption = (f"SBC ({result.engine}): ECDF of each parameter's normalised ranks minus the uniform CDF (flat at 0 "
               "under calibration); in each panel, the p-value of ArviZ's pointwise-order uniformity test (POT-C) "
               "and, marked, the ranks where the ECDF departs from uniform. The verdict above is the chi-square "
               "test in the table")
    figure = figure_or_error(caption, lambda: arviz_plots.plot_ecdf_pit(result.to_arviz(), group="prior_sbc",
                                                                        backend="matplotlib"))
    return Check(f"SBC ({result.engine})", not failing, verdict, figures=[figure],
                 tables=[(f"SBC ({result.engine})", table)])


def zero_based(name: str) -> str:
    """A Stan scalar name in ArviZ's 0-based indexing, as the rest of a report page: ``"theta[1]"`` ->
    ``"theta[0]"``, ``"L[2,3]"`` -> ``"L[1, 2]"``; names without an index are returned as they are."""
    match = re.fullmatch(r"(.*)\[([0-9,\s]+)\]", str(name))
    if not match:
        return str(name)
    return f"{match.group(1)}[{', '.join(str(int(i) - 1) for i in match.group(2).split(','))}]"


def reference_check(table: pd.DataFrame, engine: str) -> Check:
    """The verdict line of a :func:`ppzoo.reference.compare_to_reference` table, its rows named 0-based."""
    table = table.copy()
    table.index = pd.Index([zero_based(n) for n in table.index], name=table.index.name)
    failing = table.index[~table["passed"]].tolist()
    verdict = (
        f"{len(table)} scalars against Stan's reference draws (|z| of mean and sd < 4, W1 within its "
        "ESS-scaled bound): " + ("all within tolerance." if not failing else f"outside for {', '.join(map(str, failing))}.")
    )
    caption = (f"{engine}: comparison with Stan's reference draws (indices 0-based as in ArviZ: Stan's theta[1] is "
               "theta[0] here)")
    return Check(f"reference posterior ({engine})", not failing, verdict, tables=[(caption, table)])


#: MCMC vs MCMC: a difference of posterior means above this many Monte Carlo standard errors fails. Both
#: means are estimates of one posterior mean, so z is ~N(0, 1) when the chains mix: 4 MCSEs is a two-sided
#: tail of 6e-5 (~1e-4) per parameter, so a page of ten-odd parameters fails by chance less than 0.1% of the time.
AGREE_MAX_Z = 4.0
#: Posterior sd ratio (fit / reference) outside this range fails, for every engine. The range is +-0.36 on
#: the log scale (1.43 = 1 / 0.7); an sd estimated from ESS draws has se(log sd) ~ 1 / sqrt(2 ESS), so the
#: log ratio of two fits has se ~ 1 / sqrt(ESS) and the range is 4 of them at ESS 125 per fit (the report
#: flags ESS under 100 per chain, i.e. 200 for two chains: 5 standard errors there). A mean-field guide on
#: a posterior correlation of -0.95 shrinks the sds ~3x (ratio ~0.3), far outside.
AGREE_SD_RATIO = (0.7, 1.43)
#: Approximate engines (SVI) vs MCMC: a mean shifted by more than this many reference posterior sds fails.
#: Not a Monte Carlo bound (an approximation's bias does not shrink with draws) but a usefulness one: a
#: shift of 0.3 sd moves a central 90% interval's coverage from 90% to ~88%; with 200 guide draws the
#: Monte Carlo error of the shift is ~0.07 sd, so 0.3 is 4 of those.
AGREE_MAX_MEAN_SHIFT = 0.3


def is_mcmc(fit: Fit) -> bool:
    """Whether the fit's draws are Markov chains (judged by R-hat and ESS), as its engine's record says
    (:attr:`ppzoo.inference.Engine.is_mcmc`), rather than independent draws from a fitted approximation."""
    return inference.get(fit.engine).is_mcmc


def _per_datum_sites(fit: Fit) -> set[str]:
    """Per-datum sites: on the datum plate ``"data"``, or with one value per element of an observed site's batch."""
    batches = [set(dims) for dims in fit.sites.batch_dims.values() if dims]
    return {name for name, dims in fit.sites.dims.items()
            if "data" in dims or any(batch <= set(dims) for batch in batches)}


def _scalars(draws: np.ndarray) -> np.ndarray:
    """``(chain, draw, *shape)`` -> ``(chain, draw, size)``."""
    return draws.reshape(draws.shape[:2] + (-1,))


def _diagnostics(fit: Fit, sites: Sequence[str]) -> tuple[float, float]:
    """Max r_hat (inf for one chain: no between-chain check) and min bulk ESS over the scalars of ``sites``."""
    import arviz_stats

    draws = np.concatenate([_scalars(np.asarray(fit.samples[s], dtype=float)) for s in sites], axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r_hat = np.asarray(arviz_stats.rhat(draws), dtype=float)
        ess = np.asarray(arviz_stats.ess(draws), dtype=float)
    max_r_hat = float(np.nanmax(r_hat)) if fit.num_chains > 1 and np.isfinite(r_hat).any() else float("inf")
    return max_r_hat, float(np.nanmin(ess)) if np.isfinite(ess).any() else 0.0


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b with 0 / 0 = 1 (a constant site agrees with itself) and x / 0 = inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((a == 0) & (b == 0), 1.0, np.where(b == 0, np.inf, a / np.where(b == 0, 1.0, b)))


def _compare(label: str, draws: Mapping[str, np.ndarray], ref_label: str, ref: Mapping[str, np.ndarray],
             *, exact: bool) -> list[dict[str, Any]]:
    """One row per scalar parameter: ``draws`` against the reference ``ref``."""
    import arviz_stats

    rows = []
    for site, value in draws.items():
        shape = value.shape[2:]
        x, r = _scalars(np.asarray(value, dtype=float)), _scalars(np.asarray(ref[site], dtype=float))
        mean, ref_mean = x.mean((0, 1)), r.mean((0, 1))
        sd, ref_sd = x.std((0, 1), ddof=1), r.std((0, 1), ddof=1)
        sd_ratio = _ratio(sd, ref_sd)
        shift = _ratio(np.abs(mean - ref_mean), ref_sd)
        z = np.full_like(shift, np.nan)
        if exact:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mcse = np.hypot(np.asarray(arviz_stats.mcse(x), dtype=float),
                                np.asarray(arviz_stats.mcse(r), dtype=float))
            z = _ratio(np.abs(mean - ref_mean), mcse)
        for i, index in enumerate(np.ndindex(*shape) if shape else [()]):
            ok_mean = bool(z[i] <= AGREE_MAX_Z) if exact else bool(shift[i] <= AGREE_MAX_MEAN_SHIFT)
            ok_sd = bool(AGREE_SD_RATIO[0] <= sd_ratio[i] <= AGREE_SD_RATIO[1])
            rows.append({
                "fit": label, "reference": ref_label,
                "parameter": f"{site}[{', '.join(map(str, index))}]" if shape else site,
                "rule": "MCMC vs MCMC" if exact else "approximate",
                "mean": float(mean[i]), "reference_mean": float(ref_mean[i]), "shift_sd": float(shift[i]),
                "z_mcse": float(z[i]), "sd": float(sd[i]), "reference_sd": float(ref_sd[i]),
                "sd_ratio": float(sd_ratio[i]), "mean_ok": ok_mean, "sd_ok": ok_sd, "passed": ok_mean and ok_sd,
            })
    return rows


def _disagreements(rows: Sequence[Mapping[str, Any]], most: int = 4) -> str:
    """``"svi: tau sd ratio 0.12, mu mean 0.5 sd off; blackjax: ..."``, a few parameters per fit."""
    by_fit: dict[str, list[str]] = {}
    for row in rows:
        if row["passed"]:
            continue
        bits = []
        if not row["mean_ok"]:
            bits.append(f"mean {row['z_mcse']:.1f} MCSEs off" if row["rule"] == "MCMC vs MCMC"
                        else f"mean {row['shift_sd']:.2f} sd off")
        if not row["sd_ok"]:
            bits.append(f"sd ratio {row['sd_ratio']:.2f}")
        by_fit.setdefault(f"{row['fit']} vs {row['reference']}", []).append(f"{row['parameter']} {' and '.join(bits)}")
    parts = []
    for pair, items in by_fit.items():
        more = f" and {len(items) - most} more" if len(items) > most else ""
        parts.append(f"{pair}: {', '.join(items[:most])}{more}")
    return "; ".join(parts)


def engines_agree(fits: Fit | Sequence[Fit] | Mapping[str, Fit]) -> Check:
    """Whether fits of one model by different engines found the same posterior for its global parameters.

    The reference is the MCMC fit with the best diagnostics (lowest max r_hat at two decimals, then the most
    min bulk ESS). Another MCMC fit agrees when each parameter's mean is within ``AGREE_MAX_Z`` Monte Carlo
    standard errors (``arviz_stats.mcse`` of both fits, added in quadrature) and its sd ratio is in
    ``AGREE_SD_RATIO``; an approximate fit (SVI) when its mean is within ``AGREE_MAX_MEAN_SHIFT`` reference
    sds and its sd ratio is in ``AGREE_SD_RATIO``. With no MCMC fit the fits are compared pairwise by the
    approximate rule and the verdict is not applicable: there is no exact reference; the same when the best
    MCMC fit has not converged (max r_hat above ``ppzoo.report.RHAT_MAX``, or one chain).

    Parameters are the scalars of the report's global sites (:func:`ppzoo.report.global_sites`) shared by
    every fit, less per-datum latents (sites on an observed site's plate). Models with symmetric modes
    (ICA) are mapped onto the reference's mode first, as in the report's forest plot.

    Parameters
    ----------
    fits : sequence of Fit or mapping label -> Fit
        Two or more fits of one model.

    Returns
    -------
    Check
        ``"engines agree"``: one verdict line and a table with a row per fit and parameter.

    Raises
    ------
    ValueError
        If fewer than two fits are given.
    """
    from ppzoo.compare import RHAT_MAX, comparable_samples, global_sites, label_fits

    labelled = label_fits(fits)
    if len(labelled) < 2:
        raise ValueError(
            f"`fits` must hold at least two fits to compare; got {len(labelled)} ({', '.join(labelled)}). "
            "Pass e.g. {'nuts': nuts_fit, 'svi': svi_fit}."
        )
    first = next(iter(labelled.values()))
    per_datum = _per_datum_sites(first)
    shared = [s for s in global_sites(first)
              if all(s in f.samples and f.samples[s].shape[2:] == first.samples[s].shape[2:] for f in labelled.values())]
    sites = [s for s in shared if s not in per_datum]
    if not sites:
        return Check("engines agree", None, "not applicable: the fits share no global parameter to compare.")
    mcmc = {label: f for label, f in labelled.items() if is_mcmc(f)}
    diagnostics = {label: _diagnostics(f, sites) for label, f in mcmc.items()}
    rows: list[dict[str, Any]] = []
    if mcmc:
        # r_hat at two decimals (its Monte Carlo noise with a few hundred draws is ~0.005): closer is a tie.
        ref_label = min(mcmc, key=lambda k: (round(diagnostics[k][0], 2), -diagnostics[k][1]))
        ordered = {ref_label: labelled[ref_label], **{k: f for k, f in labelled.items() if k != ref_label}}
        samples = comparable_samples(ordered, sites)
        for label in ordered:
            if label != ref_label:
                rows += _compare(label, samples[label], ref_label, samples[ref_label], exact=label in mcmc)
    else:
        labels = list(labelled)
        for i, ref_label in enumerate(labels):
            ordered = {ref_label: labelled[ref_label], **{k: labelled[k] for k in labels[i + 1:]}}
            samples = comparable_samples(ordered, sites)
            for label in labels[i + 1:]:
                rows += _compare(label, samples[label], ref_label, samples[ref_label], exact=False)
    table = pd.DataFrame(rows).set_index(["fit", "parameter"])
    table.index = [f"{fit}: {parameter}" for fit, parameter in table.index]
    table.index.name = "fit: parameter"
    others = [k for k in labelled if not mcmc or k != ref_label]
    sd_rule = f"sd ratio in [{AGREE_SD_RATIO[0]}, {AGREE_SD_RATIO[1]}]"
    approximate_rule = f"means within {AGREE_MAX_MEAN_SHIFT:g} reference sd"
    failing = _disagreements(rows)
    n_params = len({r["parameter"] for r in rows})
    if not mcmc:
        verdict = (f"no MCMC fit on the page, so no exact reference: agreement with MCMC does not apply. Pairwise over "
                   f"{n_params} global parameters ({approximate_rule}, {sd_rule}): "
                   + (f"disagree: {failing}." if failing else "the approximations agree with one another."))
        passed = None
        caption = "Engines agree: pairwise comparison of approximate fits (no MCMC reference)"
    else:
        r_hat, ess = diagnostics[ref_label]
        reference = (f"reference {ref_label}, the MCMC fit with the best diagnostics: max r_hat "
                     f"{'n/a (one chain)' if np.isinf(r_hat) else f'{r_hat:.3f}'}, min bulk ESS {ess:.0f}")
        rule = f"MCMC: means within {AGREE_MAX_Z:g} MCSEs; approximate: {approximate_rule}; {sd_rule}"
        agree = "agrees" if len(others) == 1 else "agree"
        caption = f"Engines agree: each fit against {ref_label}"
        if not r_hat <= RHAT_MAX:
            # An unconverged (or unchecked, one-chain) reference is no exact posterior: a fit that differs
            # from it may be the right one, and MCSEs from r_hat >> 1 chains are too wide to fail anything.
            passed = None
            verdict = (f"not applicable: no MCMC fit has converged (max r_hat > {RHAT_MAX}) to serve as the "
                       f"exact reference ({reference}). Against it anyway: "
                       + (f"{failing}." if failing else f"{', '.join(others)} {agree} ({rule})."))
        else:
            passed = not failing
            verdict = (f"{failing} ({reference}; {n_params} global parameters; {rule})." if failing else
                       f"{', '.join(others)} {agree} with the {reference} ({n_params} global parameters; {rule}).")
    return Check("engines agree", passed, verdict, tables=[(caption, table)])


def closed_loop_section(checks: Sequence[Check], *, title: str = "Closed loop") -> Section:
    """One report section: a verdict line per check (green pass, red fail, grey not applicable), then figures.

    The checks stay on the section (``section.checks``): :func:`ppzoo.report` lists them in the page's verdict
    strip, linked to this section, whichever section of the page holds them.
    """
    lines = []
    for c in checks:
        css, word = {True: ("good", "PASS"), False: ("bad", "FAIL"), None: ("na", "n/a")}[c.passed]
        lines.append(f"<li><b class='{css}'>{word}</b> <b>{html.escape(c.name)}</b>: {html.escape(c.verdict)}</li>")
    section = Section(title, text="<ul class='verdicts'>" + "".join(lines) + "</ul>", checks=checks)
    section.tables = [(caption, frame, None) for c in checks for caption, frame in c.tables]
    section.figures = [fig for c in checks for fig in c.figures]
    return section


# ------------------------------------------------------------------------------- failures flagged where they are


#: Tail ESS: the smaller ESS of the indicators of the 5% and 95% quantiles (Vehtari et al. 2021, Sec. 4.3).
TAIL_PROBS = (0.05, 0.95)


def convergence_diagnostics(draws: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-normalised split r_hat, bulk ESS and tail ESS of every scalar of ``(chain, draw, *shape)`` draws.

    The definitions of Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), computed by ArviZ's array-level
    functions (``arviz_stats.base.array_stats``) on all scalars of the site at once; the DataTree route
    (``arviz_stats.rhat(tree)``) costs ~3 ms per scalar, ~30 s per diagnostic on 6000 per-datum sources.

    Parameters
    ----------
    draws : array_like, shape (chain, draw, *shape)
        MCMC draws of one site (at least 4 draws per chain).

    Returns
    -------
    r_hat, ess_bulk, ess_tail : numpy.ndarray, each of ``shape``
        r_hat is NaN with one chain (no between-chain comparison).

    Raises
    ------
    ValueError
        If ``draws`` has fewer than 3 dimensions or fewer than 4 draws per chain.
    """
    from arviz_stats.base import array_stats

    a = np.asarray(draws, dtype=float)
    if a.ndim < 2 or a.shape[1] < 4:
        raise ValueError(f"`draws` must be (chain, draw, *shape) with at least 4 draws per chain; got shape {a.shape}.")
    scalars = np.moveaxis(a, (0, 1), (-2, -1))  # (*shape, chain, draw): ArviZ's array functions vectorise over *shape
    axes = {"chain_axis": -2, "draw_axis": -1}
    with np.errstate(divide="ignore", invalid="ignore"):
        r_hat = (array_stats.rhat(scalars, method="rank", **axes) if a.shape[0] > 1
                 else np.full(a.shape[2:], np.nan))
        bulk = array_stats.ess(scalars, method="bulk", **axes)
        tail = array_stats.ess(scalars, method="tail", prob=TAIL_PROBS, **axes)
    bad = np.isnan(scalars).any((-2, -1))
    return tuple(np.where(bad, np.nan, np.asarray(v, dtype=float)) for v in (r_hat, bulk, tail))


def _scalar_names(site: str, shape: tuple[int, ...]) -> list[str]:
    return [f"{site}[{', '.join(map(str, i))}]" if shape else site for i in np.ndindex(*shape)]


def _convergence_sites(fit: Fit) -> list[str]:
    """The report's summary sites, then every other latent sample site (per-datum latents among them)."""
    from ppzoo.compare import global_sites

    shown = global_sites(fit)
    return shown + [s for s in fit.sites.latent if s in fit.samples and s not in shown]


def convergence_table(fit: Fit, sites: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per site of an MCMC fit: its worst r_hat and ESS, and how many scalars miss the thresholds.

    Parameters
    ----------
    fit : Fit
        An MCMC fit (NUTS, BlackJAX).
    sites : sequence of str, optional
        Default: the report's summary sites, then every other latent site (per-datum latents such as ``z`` on
        the plate ``"data"`` are summarised here rather than listed scalar by scalar).

    Returns
    -------
    pandas.DataFrame
        Index ``site``; columns ``role`` (global / per-datum latent / other), ``scalars``, ``max r_hat`` and
        ``worst r_hat at``, ``r_hat > RHAT_MAX`` (a count), ``min ESS bulk``, ``min ESS tail``,
        ``worst ESS at``, ``ESS < ESS_MIN`` (a count of scalars whose bulk or tail ESS is below it).
    """
    from ppzoo.compare import ESS_MIN, RHAT_MAX, global_sites

    shown = set(global_sites(fit))
    per_datum = _per_datum_sites(fit)
    rows = []
    for site in _convergence_sites(fit) if sites is None else sites:
        draws = np.asarray(fit.samples[site], dtype=float)
        shape = draws.shape[2:]
        r_hat, bulk, tail = (v.ravel() for v in convergence_diagnostics(draws))
        names = _scalar_names(site, shape)
        ess = np.fmin(bulk, tail)
        worst_r = int(np.nanargmax(r_hat)) if np.isfinite(r_hat).any() else None
        worst_e = int(np.nanargmin(ess)) if np.isfinite(ess).any() else None
        rows.append({
            "site": site,
            "role": "per-datum latent" if site in per_datum else ("global" if site in shown else "other"),
            "scalars": len(names),
            "max r_hat": float(r_hat[worst_r]) if worst_r is not None else float("nan"),
            "worst r_hat at": names[worst_r] if worst_r is not None else "",
            f"r_hat > {RHAT_MAX}": int(np.sum(r_hat > RHAT_MAX)),
            "min ESS bulk": float(np.nanmin(bulk)) if np.isfinite(bulk).any() else float("nan"),
            "min ESS tail": float(np.nanmin(tail)) if np.isfinite(tail).any() else float("nan"),
            "worst ESS at": names[worst_e] if worst_e is not None else "",
            f"ESS < {ESS_MIN}": int(np.sum(ess < ESS_MIN)),
        })
    return pd.DataFrame(rows).set_index("site") if rows else pd.DataFrame()


def convergence_check(fit: Fit, label: str | None = None, *, table: pd.DataFrame | None = None) -> Check:
    """The convergence verdict of an MCMC fit, over every site it sampled (per-datum latents included).

    FAIL when any scalar has r_hat above ``ppzoo.report.RHAT_MAX`` (1.01) or a bulk or tail ESS below
    ``ppzoo.report.ESS_MIN`` (400), the thresholds of Vehtari et al. (2021); the verdict names the worst
    scalar and counts those that miss. Not applicable to an approximation's independent draws (SVI) or to
    one chain (no between-chain r_hat).

    Parameters
    ----------
    fit : Fit
        Any fit.
    label : str, optional
        Name of the fit on the page (default: its engine).
    table : DataFrame, optional
        :func:`convergence_table` of the fit, if already computed.

    Returns
    -------
    Check
        ``"convergence (label)"`` with the per-site table.
    """
    from ppzoo.compare import ESS_MIN, RHAT_MAX

    label = label or fit.engine
    name = f"convergence ({label})"
    if not is_mcmc(fit):
        return Check(name, None, "not applicable: independent draws from a fitted approximation (SVI), not Markov "
                                 "chains; its optimisation is judged by the loss curve and the engines-agree check.")
    if fit.num_draws < 4:
        return Check(name, None, f"not applicable: {fit.num_draws} draws per chain; r_hat and ESS need at least 4.")
    table = convergence_table(fit) if table is None else table
    if table.empty:
        return Check(name, None, "not applicable: the fit has no sampled sites.")
    total = int(table["scalars"].sum())
    r_col, e_col = f"r_hat > {RHAT_MAX}", f"ESS < {ESS_MIN}"
    n_r, n_e = int(table[r_col].sum()), int(table[e_col].sum())
    ess = table[["min ESS bulk", "min ESS tail"]].min(axis=1)
    worst_e = ess.idxmin() if ess.notna().any() else None
    ess_text = (f"min bulk ESS {table['min ESS bulk'].min():.0f}, min tail ESS {table['min ESS tail'].min():.0f}"
                + (f" at {table.loc[worst_e, 'worst ESS at']}" if worst_e is not None else ""))
    runs = (f"{fit.num_chains} chain{'s' if fit.num_chains > 1 else ''} x {fit.num_draws} draws; thresholds r_hat "
            f"<= {RHAT_MAX}, bulk and tail ESS >= {ESS_MIN}, Vehtari et al. 2021")
    caption = f"{label}: convergence of every sampled site (per-datum latents summarised: worst scalar and counts)"
    if fit.num_chains < 2:
        return Check(name, None, f"not applicable: one chain, so no between-chain r_hat (run 2 or more chains); "
                                 f"{ess_text}, {n_e} of {total} scalars with ESS below {ESS_MIN} ({runs}).",
                     tables=[(caption, table)])
    worst_r = table["max r_hat"].idxmax()
    r_hat = float(table.loc[worst_r, "max r_hat"])
    failing = []
    if n_r:
        failing.append(f"max r_hat {_fmt_r_hat(r_hat)} at {table.loc[worst_r, 'worst r_hat at']} ({n_r} of {total} "
                       f"scalars above {RHAT_MAX})")
    if n_e:
        failing.append(f"{ess_text} ({n_e} of {total} scalars with bulk or tail ESS below {ESS_MIN})")
    if failing:
        return Check(name, False, "; ".join(failing) + f" ({runs}).", tables=[(caption, table)])
    return Check(name, True, f"all {total} scalars of {len(table)} site{'s' if len(table) > 1 else ''}: max r_hat "
                             f"{_fmt_r_hat(r_hat)}, {ess_text} ({runs}).", tables=[(caption, table)])


def _fmt_r_hat(r_hat: float) -> str:
    return f"{r_hat:.2f}" if r_hat >= 1.1 else f"{r_hat:.3f}"


def max_r_hat(fit: Fit, sites: Sequence[str] | None = None) -> float:
    """The largest r_hat over every scalar of ``sites`` (default: every sampled site); NaN for an SVI fit or
    one chain."""
    if not is_mcmc(fit) or fit.num_chains < 2 or fit.num_draws < 4:
        return float("nan")
    values = [convergence_diagnostics(fit.samples[s])[0] for s in (_convergence_sites(fit) if sites is None else sites)]
    finite = [v[np.isfinite(v)] for v in values]
    return float(max((v.max() for v in finite if v.size), default=float("nan")))


def unconverged_note(fit: Fit, sites: Sequence[str] | None = None) -> str:
    """``"unconverged: r_hat 1.83"`` when an MCMC fit's max r_hat over ``sites`` exceeds
    ``ppzoo.report.RHAT_MAX``; ``""`` otherwise (converged, one chain, or not MCMC).

    Parameters
    ----------
    fit : Fit
        The fit a number was computed from.
    sites : sequence of str, optional
        The sites the number uses (default: every sampled site).
    """
    from ppzoo.compare import RHAT_MAX

    r_hat = max_r_hat(fit, sites)
    return f"unconverged: r_hat {_fmt_r_hat(r_hat)}" if r_hat > RHAT_MAX else ""


def mark_unconverged(text: str, fit: Fit, sites: Sequence[str] | None = None) -> str:
    """``text`` with ``" (unconverged: r_hat 1.83)"`` appended when ``fit`` has not converged on ``sites``.

    For case studies: mark a table row, column or figure label whose numbers come from an MCMC fit, e.g.
    ``label = mark_unconverged("causal_vae (nuts)", nuts_fit, ["eps"])``.

    Examples
    --------
    >>> row_label = mark_unconverged("NUTS abduction", fit)  # doctest: +SKIP
    'NUTS abduction (unconverged: r_hat 1.83)'
    """
    note = unconverged_note(fit, sites)
    return f"{text} ({note})" if note else text


#: A latent dimension is active when the variance over the data of its encoder mean exceeds this (Burda,
#: Grosse & Salakhutdinov 2016, Sec. 5.2: A_u = Cov_x(E_{u ~ q(u|x)}[u]) > 0.01).
ACTIVE_VARIANCE = 0.01


def posterior_collapse(encoder_mean: Any, encoder_sd: Any, *, label: str = "", prior_loc: Any = 0.0,
                       prior_scale: Any = 1.0, threshold: float = ACTIVE_VARIANCE) -> Check:
    """Whether an amortized Gaussian encoder has collapsed onto the prior: active dimensions and KL per dimension.

    A dimension is active when the variance over the data of its encoder mean exceeds ``threshold`` (Burda et
    al. 2016); the KL per dimension is KL(N(m, s^2) || N(prior_loc, prior_scale^2)) averaged over the data
    (nats). FAIL when no dimension is active: the encoder then gives every datum the same code, the decoder
    draws the same mean datum for all of them, and metrics that reward closeness to the prior (calibration,
    amortization-gap agreement) look good for the wrong reason. Some inactive dimensions are not a failure
    (a VAE with more latents than the data need switches the rest off); the table lists them.

    Parameters
    ----------
    encoder_mean, encoder_sd : array_like, shape (num_data, num_latents)
        The encoder's means and sds on data (``ppzoo.models.vae.encode(fit, x)``, ``ppzoo.models.ivae.encode``).
    label : str
        The model's name on the page.
    prior_loc, prior_scale : array_like
        The prior of each latent, broadcastable to ``encoder_mean`` (a conditional prior per datum for the iVAE).
    threshold : float
        Activity above which a dimension counts as active.

    Returns
    -------
    Check
        ``"posterior collapse (label)"``, PASS with at least one active dimension, and a table per dimension.

    Raises
    ------
    ValueError
        If the means and sds are not 2-D of one shape with at least 2 rows, or the sds are not positive and finite.

    References
    ----------
    Burda, Y., Grosse, R. & Salakhutdinov, R. (2016). Importance weighted autoencoders. ICLR, Sec. 5.2.
    """
    mean = np.asarray(encoder_mean, dtype=np.float64)
    sd = np.asarray(encoder_sd, dtype=np.float64)
    if mean.ndim != 2 or mean.shape[0] < 2:
        raise ValueError(f"`encoder_mean` must be (num_data, num_latents) with at least 2 rows; got shape {mean.shape}.")
    if sd.shape != mean.shape:
        raise ValueError(f"`encoder_sd` must have the shape of `encoder_mean` {mean.shape}; got {sd.shape}.")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(sd)) and np.all(sd > 0)):
        raise ValueError("`encoder_mean` must be finite and `encoder_sd` positive and finite (sds, not log-scales).")
    loc = np.broadcast_to(np.asarray(prior_loc, dtype=np.float64), mean.shape)
    scale = np.broadcast_to(np.asarray(prior_scale, dtype=np.float64), mean.shape)
    activity = mean.var(axis=0)
    kl = (np.log(scale / sd) + (sd**2 + (mean - loc) ** 2) / (2 * scale**2) - 0.5).mean(axis=0)
    active = activity > threshold
    table = pd.DataFrame({"activity Var_x(E_q[z|x])": activity, "active": active, "KL to prior (nats)": kl,
                          "mean encoder sd": sd.mean(axis=0)},
                         index=pd.Index([f"z{j}" for j in range(mean.shape[1])], name="latent"))
    name = f"posterior collapse ({label})" if label else "posterior collapse"
    rule = f"active: variance of the encoder mean over the data above {threshold:g} (Burda et al. 2016)"
    inactive = [f"z{j}" for j in np.flatnonzero(~active)]
    if not active.any():
        verdict = (f"collapsed: none of {mean.shape[1]} latent dimensions is active (largest activity "
                   f"{activity.max():.2g}; {rule}); total KL to the prior {kl.sum():.3g} nats per datum over "
                   f"{mean.shape[0]} data: the encoder gives every datum the same code, so every reconstruction is "
                   "the same.")
    else:
        verdict = (f"{int(active.sum())} of {mean.shape[1]} latent dimensions active ({rule}); KL to the prior "
                   f"{kl[active].sum():.3g} nats per datum in the active ones, {kl[~active].sum():.3g} in the rest"
                   + (f" (inactive: {', '.join(inactive)})" if inactive else "") + f"; {mean.shape[0]} data.")
    return Check(name, bool(active.any()), verdict, tables=[(f"{label or 'encoder'}: latent usage per dimension", table)])
