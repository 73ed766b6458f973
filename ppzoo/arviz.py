"""Conversion of a :class:`ppzoo.Fit` to ArviZ's ``xarray.DataTree``."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import arviz_base
import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer import Predictive, log_likelihood
from numpyro.primitives import Messenger

from ppzoo import inference
from ppzoo.inference import split_data
from ppzoo.programs import ProgramCache

if TYPE_CHECKING:
    from ppzoo.fit import Fit

__all__ = ["fit_to_datatree", "unobserve", "write_datatree", "SAMPLE_STATS", "MAX_STORED_VALUES", "STORED_STATS"]

#: The sample-stat names ArviZ reads (arviz_stats.diagnose, plot_energy, ...).
SAMPLE_STATS = ("diverging", "lp", "acceptance_rate", "tree_depth", "n_steps", "step_size", "energy")

#: Above this many draws x log-likelihood elements, ``log_likelihood`` is thinned like the predictive.
MAX_LOG_LIKELIHOOD_ELEMENTS = 20_000_000


class unobserve(Messenger):
    """Treat the named observed sites as unobserved, so they are sampled afresh (predictive checks).

    Works on any model, whatever its signature: the data keep giving the shapes and plate sizes.
    """

    def __init__(self, fn: Callable | None = None, sites: set[str] | None = None) -> None:
        self.sites = set(sites or ())
        super().__init__(fn)

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] in self.sites and msg["is_observed"]:
            msg["value"] = None
            msg["is_observed"] = False


def _thin_index(num_draws: int, keep: int) -> np.ndarray:
    if keep >= num_draws:
        return np.arange(num_draws)
    return np.unique(np.linspace(0, num_draws - 1, keep).round().astype(int))


def _flatten(samples: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v.reshape((-1,) + v.shape[2:])) for k, v in samples.items()}


def _unflatten(values: Mapping[str, Any], chains: int) -> dict[str, np.ndarray]:
    return {k: np.asarray(v).reshape((chains, -1) + np.shape(v)[1:]) for k, v in values.items()}


class _Programs(NamedTuple):
    """The jitted programs that fill a fit's DataTree (see :func:`_programs`), the fit's model parameters bound."""

    log_likelihood: Callable[..., Any]  # (samples, arrays) -> per-site log-likelihood
    posterior_predictive: Callable[..., Any]  # (key, samples, arrays) -> replicated observed sites
    prior: Callable[..., Any]  # (key, arrays, num_samples) -> prior and prior predictive draws


#: Fit -> its programs. Keyed weakly by the (frozen) fit, so that the programs live as long as the fit: a
#: second ``to_arviz`` setting, or a sweep's second tree, reuses their compiled code instead of retracing
#: new closures.
_PROGRAMS: "weakref.WeakKeyDictionary[Fit, _Programs]" = weakref.WeakKeyDictionary()

#: The compiled programs themselves, shared by every fit of one model with the same static data and sites
#: (the engines of a comparison, the seeds of a study): the model's parameters are an input, not constants.
_SHARED: ProgramCache[_Programs] = ProgramCache(maxsize=64)


def _programs(fit: "Fit") -> _Programs:
    programs = _PROGRAMS.get(fit)
    if programs is None:
        programs = _PROGRAMS[fit] = _bind(_shared_programs(fit), _model_params(fit))
    return programs


def _model_params(fit: "Fit") -> dict[str, Any]:
    """The values of the model's own ``param`` sites (fixed network weights, or learned ones), not the guide's."""
    values = fit.fixed_params or fit.params or {}
    return {k: v for k, v in values.items() if k in fit.sites.params}


def _bind(shared: _Programs, params: Mapping[str, Any]) -> _Programs:
    return _Programs(
        lambda samples, arrays: shared.log_likelihood(params, samples, arrays),
        lambda key, samples, arrays: shared.posterior_predictive(params, key, samples, arrays),
        lambda key, arrays, num_samples: shared.prior(params, key, arrays, num_samples=num_samples),
    )


def _shared_programs(fit: "Fit") -> _Programs:
    sites = fit.sites
    _, static = split_data(fit.data)
    spec = (fit.model, tuple(static.items()), tuple(sites.latent), tuple(sites.deterministic),
            tuple(sites.observed))
    return _SHARED.get(spec, lambda: _build_programs(fit.model, sites, static))


def _build_programs(model: Callable[..., Any], sites: Any, static: Mapping[str, Any]) -> _Programs:
    def run_model(params):
        return handlers.substitute(model, data=params) if params else model

    @jax.jit
    def loglik_fn(params, samples, arrays):
        return log_likelihood(run_model(params), samples, **arrays, **static)

    @jax.jit
    def post_pred_fn(params, key, samples, arrays):
        unobserved = unobserve(run_model(params), sites=set(sites.observed))
        predictive = Predictive(unobserved, posterior_samples=samples, return_sites=list(sites.observed))
        return predictive(key, **arrays, **static)

    @functools.partial(jax.jit, static_argnames="num_samples")
    def prior_fn(params, key, arrays, num_samples):
        predictive = Predictive(
            unobserve(run_model(params), sites=set(sites.observed)),
            num_samples=num_samples,
            return_sites=list(sites.latent) + list(sites.deterministic) + list(sites.observed),
        )
        return predictive(key, **arrays, **static)

    return _Programs(loglik_fn, post_pred_fn, prior_fn)


def fit_to_datatree(fit: "Fit", *, predictive_draws: int = 500, prior_draws: int = 500) -> Any:
    """Build the DataTree of a fit (see :meth:`ppzoo.Fit.to_arviz` for the groups and their sizes)."""
    if predictive_draws < 1 or prior_draws < 1:
        raise ValueError("`predictive_draws` and `prior_draws` must be positive.")
    sites = fit.sites
    programs = _programs(fit)
    chains, draws = fit.num_chains, fit.num_draws
    # The fit's own named keys, never a split of the engine's key (whose splits are the chains' keys).
    key_pp, key_prior = fit.keys.predictive, fit.keys.prior
    latent = {k: v for k, v in fit.samples.items() if k in sites.latent}

    arrays, _ = split_data(fit.data)

    # log-likelihood: per observed site, batch axes only (event axes summed), every draw if it fits.
    obs_elements = sum(int(np.prod(sites.values[s].shape[: len(sites.batch_dims[s])])) for s in sites.observed)
    keep_ll = max(1, MAX_LOG_LIKELIHOOD_ELEMENTS // max(obs_elements * chains, 1))
    ll_index = _thin_index(draws, keep_ll)
    pp_index = _thin_index(draws, max(1, predictive_draws // chains))
    loglik, post_pred = {}, {}
    # A likelihood written as a numpyro.factor has no observed site: no pointwise log-likelihood and nothing to
    # replicate, so those groups (and observed_data) are left out; the checks that need them say n/a.
    if sites.observed:
        loglik = programs.log_likelihood(_flatten({k: v[:, ll_index] for k, v in latent.items()}), arrays)
        loglik = _unflatten({k: v for k, v in loglik.items() if k in sites.observed}, chains)
        # posterior predictive: observed sites resampled given each kept draw.
        post_pred = _unflatten(
            programs.posterior_predictive(key_pp, _flatten({k: v[:, pp_index] for k, v in latent.items()}), arrays),
            chains)

    # prior and prior predictive from the same program.
    if sites.improper:
        # A flat (improper) prior has no draws: the prior groups are left out rather than faked.
        prior, prior_pred = {}, {}
    else:
        prior_all = programs.prior(key_prior, arrays, num_samples=prior_draws)
        prior = {k: np.asarray(v)[None] for k, v in prior_all.items() if k not in sites.observed}
        prior_pred = {k: np.asarray(v)[None] for k, v in prior_all.items() if k in sites.observed}

    dims = {name: d for name, d in sites.dims.items()}
    ll_dims = {name: d for name, d in sites.batch_dims.items()}
    observed = {k: np.asarray(sites.values[k]) for k in sites.observed}
    stats = {k: np.asarray(v) for k, v in fit.sample_stats.items()}
    groups = {
        "posterior": {k: np.asarray(v) for k, v in fit.samples.items()},
        "sample_stats": stats,
    }
    if observed:
        groups["observed_data"] = observed
        groups["posterior_predictive"] = post_pred
    if prior:
        groups["prior"] = prior
    if prior_pred:
        groups["prior_predictive"] = prior_pred
    tree = arviz_base.from_dict(groups, dims=dims)
    if loglik:
        ll_tree = arviz_base.from_dict({"log_likelihood": loglik}, dims=ll_dims)
        tree["log_likelihood"] = ll_tree["log_likelihood"]
    # Thinned groups keep the posterior's draw numbers as their `draw` coordinate, so that they line up
    # with each other and with the posterior (LOO-PIT pairs replicated data with log-likelihood draws).
    for group, index in (("posterior_predictive", pp_index), ("log_likelihood", ll_index)):
        if group in tree.children:
            tree[group] = tree[group].to_dataset().assign_coords(draw=index)
    tree.attrs.update(_attrs(fit))
    return tree


def _attrs(fit: "Fit") -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for package in ("ppzoo", "jax", "numpyro", "blackjax", "flax", "arviz-base", "arviz-stats"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = "not installed"
    attrs = {
        "inference_library": inference.get(fit.engine).library,
        "ppzoo_engine": fit.engine,
        "ppzoo_model": fit.model_name,
        "ppzoo_seed": -1 if fit.seed is None else fit.seed,
        "ppzoo_compile_s": fit.timings["compile_s"],
        "ppzoo_run_s": fit.timings["run_s"],
        "ppzoo_options": repr(fit.options),
        "ppzoo_warnings": " | ".join(fit.warnings),
        "ppzoo_notes": " | ".join(fit.notes),
    }
    attrs.update({f"version_{k}": v for k, v in versions.items()})
    return attrs


#: A per-datum variable (one indexed by a dimension of the observed data) with more values than this, draws
#: included, is written as a per-element summary rather than every draw (``store_draws="summary"``).
MAX_STORED_VALUES = 100_000
#: What such a summary holds per element: the mean, the sd and five quantiles over chains and draws.
STORED_STATS = ("mean", "sd", "q05", "q25", "q50", "q75", "q95")
_DRAW_GROUPS = ("posterior", "prior", "posterior_predictive", "prior_predictive", "log_likelihood")
_INT_TYPES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32)


def _smallest_int(values: np.ndarray) -> np.ndarray:
    """Integer or boolean values in the smallest integer type that holds them (pixel draws: uint8)."""
    if values.dtype == bool or values.size == 0:
        return values
    low, high = values.min(), values.max()
    for kind in _INT_TYPES:
        info = np.iinfo(kind)
        if info.min <= low and high <= info.max:
            return values.astype(kind) if np.dtype(kind).itemsize < values.dtype.itemsize else values
    return values


def _summarise(da: Any) -> Any:
    """``(chain, draw, *dims)`` draws -> ``(stat, *dims)``: mean, sd and quantiles per element (float32)."""
    import xarray as xr

    other = [d for d in da.dims if d not in ("chain", "draw")]
    flat = np.asarray(da.transpose("chain", "draw", *other)).reshape((-1,) + tuple(da.sizes[d] for d in other))
    flat = flat.astype(np.float32) if np.issubdtype(flat.dtype, np.integer) or flat.dtype == bool else flat
    stats = [flat.mean(0), flat.std(0, ddof=1)] + list(np.quantile(flat, [0.05, 0.25, 0.5, 0.75, 0.95], axis=0))
    values = np.stack(stats).astype(np.float32 if flat.dtype.itemsize <= 4 else flat.dtype)
    coords = {d: da.coords[d] for d in other if d in da.coords}
    return xr.DataArray(values, dims=("stat", *other), coords={"stat": list(STORED_STATS), **coords},
                        attrs={"ppzoo_summary_of": f"{int(flat.shape[0])} draws"})


def write_datatree(tree: Any, path: Any, *, store_draws: str = "summary",
                   max_values: int = MAX_STORED_VALUES) -> dict[str, list[str]]:
    """Write a fit's DataTree to a compressed netCDF file (h5netcdf, gzip level 4 with byte shuffling).

    Values keep their type (float32 stays float32); integer and boolean arrays (pixel draws, counts) are
    stored in the smallest integer type that holds them. With ``store_draws="summary"`` (the default), a
    per-datum variable -- one indexed by a dimension of ``observed_data``, such as the local latents ``z`` or
    the replicated data -- with more than ``max_values`` values is stored as its per-element mean, sd and
    5/25/50/75/95% quantiles (:data:`STORED_STATS`, dimension ``stat``) in a sibling group named
    ``<group>_summary`` instead of every draw; the original group keeps every other variable, so ArviZ reads
    it as before. ``store_draws="all"`` keeps every draw.

    Parameters
    ----------
    tree : xarray.DataTree
        From :meth:`ppzoo.Fit.to_arviz`.
    path : path-like
        The ``.nc`` file to write.
    store_draws : {"summary", "all"}
        Whether large per-datum variables are summarised (default) or kept draw by draw.
    max_values : int
        The size above which a per-datum variable is summarised.

    Returns
    -------
    dict
        Group name -> names of the variables stored as summaries (empty when nothing was summarised).

    Raises
    ------
    ValueError
        If ``store_draws`` is not one of the choices or ``max_values`` is not positive.
    """
    import xarray as xr

    if store_draws not in ("summary", "all"):
        raise ValueError(f"`store_draws` must be 'summary' (large per-datum variables as per-element summaries) "
                         f"or 'all' (every draw); got {store_draws!r}.")
    if int(max_values) < 1:
        raise ValueError(f"`max_values` must be a positive number of values; got {max_values!r}.")
    local_dims = set(tree["observed_data"].dims) if "observed_data" in tree.children else set()
    nodes: dict[str, Any] = {"/": tree.to_dataset(inherit=False)}
    summarised: dict[str, list[str]] = {}
    for group in tree.children:
        ds = tree[group].to_dataset(inherit=False)
        summaries = {}
        for name, da in ds.data_vars.items():
            draws = da.sizes.get("chain", 1) * da.sizes.get("draw", 1)
            if (store_draws == "summary" and group in _DRAW_GROUPS and "draw" in da.dims and da.size > max_values
                    and local_dims & set(da.dims) and draws > len(STORED_STATS)):
                summaries[name] = _summarise(da)
        ds = ds.drop_vars(list(summaries))
        for name, da in ds.data_vars.items():
            if np.issubdtype(da.dtype, np.integer):
                ds[name] = da.copy(data=_smallest_int(np.asarray(da)))
        nodes[f"/{group}"] = ds
        if summaries:
            summarised[group] = list(summaries)
            nodes[f"/{group}_summary"] = xr.Dataset(summaries, attrs={
                "ppzoo_note": f"per-element {', '.join(STORED_STATS)} over chains and draws of the {group} "
                              f"variables with more than {int(max_values)} values; ppzoo.report(..., "
                              "store_draws='all') keeps every draw"})
    out = xr.DataTree.from_dict(nodes)
    out.attrs.update(tree.attrs)
    encoding = {}
    for node_path, ds in nodes.items():
        encoding[node_path] = {
            name: {"zlib": True, "complevel": 4, "shuffle": True}
            for name, da in ds.data_vars.items()
            if da.ndim and (np.issubdtype(da.dtype, np.number) or da.dtype == bool)
        }
    out.to_netcdf(path, engine="h5netcdf", encoding=encoding)
    return summarised
