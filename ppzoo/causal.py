r"""Interventions and counterfactuals on fitted NumPyro programs.

A fitted generative program is a structural causal model when every causal variable is its own site
(a ``numpyro.sample`` or ``numpyro.deterministic`` site), computed in topological order from the values
of its parents' sites and its own exogenous noise. Then

* an **intervention** ``do(v = a)`` replaces the site's value by ``a`` and everything downstream is
  regenerated from it (:func:`intervene`; ``numpyro.handlers.do`` for sample sites, the same for
  deterministic sites);
* a **counterfactual** follows Pearl's three steps (:func:`counterfactual`): *abduction* (the posterior
  of each unit's exogenous noise given its observations), *action* (``do``), *prediction* (rerun the
  program with that same noise).

Exogenous noise is read in two ways, so that both styles of model work:

1. **Explicit noise sites**: per-datum latent sites named ``eps`` / ``eps_*`` or listed in the zoo
   model's ``exogenous`` field (e.g. CausalVAE's :math:`\epsilon` with
   :math:`z_j = f_j(z_{pa(j)}) + \epsilon_j` written as a deterministic site per concept). Their
   abducted values are plugged in unchanged.
2. **Implicit additive noise**: every other per-datum site (observed or latent) must have a
   location-scale distribution (Normal, Laplace, Logistic, Cauchy, StudentT with fixed ``df``, Gumbel;
   possibly ``.expand``-ed / ``.to_event``-ed); its noise is the standardised residual
   :math:`\epsilon = (v - \mathrm{loc}) / \mathrm{scale}` under the factual run, and the counterfactual
   value is :math:`\mathrm{loc}' + \mathrm{scale}' \epsilon` under the intervened run. For
   ``x_j ~ Normal(f(pa_j), sigma_j)`` this is exactly the SCM :math:`x_j = f(pa_j) + \sigma_j \epsilon_j`.

"Global" sites are latent sites outside the datum plate(s) (the plates of the observed sites, ``"data"``
by convention): they keep their posterior draws. "Per-datum" sites are regenerated (``intervene``) or
abducted (``counterfactual``).

The DAG helpers (:func:`topological_order`, :func:`edges_from_adjacency`, :func:`adjacency_from_edges`)
live in the leaf module :mod:`ppzoo.graphs`, which the zoo's structural models import; they are
re-exported here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.primitives import Messenger

from ppzoo.arviz import unobserve
from ppzoo.fit import Fit, ModelSites, check_data, inspect_model
from ppzoo.graphs import adjacency_from_edges, edges_from_adjacency, topological_order
from ppzoo import inference
from ppzoo.inference import split_data
from ppzoo.models import ZooModel
from ppzoo.programs import ProgramCache

__all__ = [
    "intervene",
    "counterfactual",
    "topological_order",
    "edges_from_adjacency",
    "adjacency_from_edges",
    "CausalSites",
    "causal_sites",
    "LOC_SCALE",
]

#: Distributions whose noise is read as a standardised residual (location-scale families).
LOC_SCALE = (dist.Normal, dist.Laplace, dist.Logistic, dist.Cauchy, dist.StudentT, dist.Gumbel)


# --------------------------------------------------------------------------------------------------
# Sites of a fitted program
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CausalSites:
    """A fitted program's sites by their causal role.

    Attributes
    ----------
    global_latent : list of str
        Latent sites outside the datum plates: they keep their posterior draws.
    per_datum_latent : list of str
        Latent sites inside a datum plate: regenerated or abducted.
    observed : list of str
        Observed sites.
    deterministic : list of str
        Deterministic sites (recomputed).
    exogenous : list of str
        Per-datum latent sites that are explicit exogenous noise (``eps``, ``eps_*`` or ``ZooModel.exogenous``).
    targets : list of str
        Sites ``do`` accepts: latent and deterministic sites, and observed sites that are causal variables
        (another site depends on them, or the zoo model's config lists them in ``nodes``).
    shapes : dict
        Site name -> shape of one draw.
    """

    global_latent: list[str]
    per_datum_latent: list[str]
    observed: list[str]
    deterministic: list[str]
    exogenous: list[str]
    targets: list[str]
    shapes: dict[str, tuple[int, ...]]


def _plates_of(sites: ModelSites) -> set[str]:
    plates = set()
    for name in sites.observed:
        for d in sites.batch_dims.get(name, []):
            if not d.startswith(f"{name}_dim_"):
                plates.add(d)
    return plates


def _observed_with_children(model: Any, data: Mapping[str, Any], observed: list[str]) -> set[str] | None:
    from numpyro.infer.inspect import get_model_relations

    try:
        relations = get_model_relations(model, model_kwargs=dict(data))["sample_sample"]
    except Exception:  # noqa: BLE001  (provenance tracing is best effort; fall back to declared nodes)
        return None
    parents = {p for name, ps in relations.items() for p in ps if p != name}
    return {o for o in observed if o in parents}


def causal_sites(fit: Fit, data: Mapping[str, Any] | None = None) -> CausalSites:
    """Sort the sites of ``fit``'s program (run on ``data``, default ``fit.data``) by causal role."""
    model = _run_model(fit)
    if data is None:
        data, sites = dict(fit.data), fit.sites
    else:
        data = dict(data)
        sites = inspect_model(model, data)
    plates = _plates_of(sites)
    per_datum = [s for s in sites.latent if plates & set(sites.dims.get(s, []))]
    global_latent = [s for s in sites.latent if s not in per_datum]
    declared = tuple(getattr(fit.model, "exogenous", ()) or ())
    exogenous = [s for s in per_datum if s in declared or s == "eps" or s.startswith("eps_")]
    nodes = set(getattr(getattr(fit.model, "config", None), "nodes", ()) or ())
    with_children = _observed_with_children(model, data, sites.observed) or set()
    causal_observed = [o for o in sites.observed if o in nodes or o in with_children]
    targets = list(sites.latent) + list(sites.deterministic) + causal_observed
    shapes = {k: tuple(np.shape(v)) for k, v in sites.values.items()}
    return CausalSites(global_latent, per_datum, list(sites.observed), list(sites.deterministic), exogenous,
                       targets, shapes)


def _full_batch(fit: Fit) -> Fit:
    """The fit with its zoo model's minibatching off: abduction and prediction see every unit given."""
    config = getattr(fit.model, "config", None)
    if isinstance(fit.model, ZooModel) and getattr(config, "batch_size", None) is not None:
        return dataclasses.replace(fit, model=fit.model.with_config(batch_size=None))
    return fit


def _run_model(fit: Fit) -> Any:
    params = fit.fixed_params or fit.params
    return handlers.substitute(fit.model, data=params) if params else fit.model


# --------------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------------


def _check_fit(fit: Any, caller: str) -> None:
    if not isinstance(fit, Fit):
        raise TypeError(f"`fit` must be a ppzoo.Fit (the result of ppzoo.fit); got {type(fit).__name__}. ({caller})")


def _check_do(do: Any, roles: CausalSites, caller: str) -> dict[str, np.ndarray]:
    if do is None:
        return {}
    if not isinstance(do, Mapping):
        raise TypeError(f"{caller}: `do` must be a mapping {{site: value}}, e.g. do={{'z': 0.0}}; got {type(do).__name__}.")
    checked = {}
    for name, value in do.items():
        if name not in roles.targets:
            if name in roles.observed:
                raise ValueError(
                    f"{caller}: site {name!r} is observed only: no other site depends on it, so do({name}=...) would "
                    f"just overwrite the generated data. Intervene on its causes instead: "
                    f"{', '.join(t for t in roles.targets if t not in roles.global_latent) or 'none'}."
                )
            raise ValueError(
                f"{caller}: unknown site {name!r} in `do`. Sites that can be intervened on: "
                f"{', '.join(roles.targets)}."
            )
        array = np.asarray(value, dtype=float)
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{caller}: do[{name!r}] contains NaN or inf; give finite values.")
        shape = roles.shapes[name]
        try:
            checked[name] = np.broadcast_to(array, shape).astype(np.float32)
        except ValueError:
            raise ValueError(
                f"{caller}: do[{name!r}] has shape {array.shape}, which does not broadcast to the site's shape "
                f"{shape}. Give a scalar, or an array of shape {shape} (or one that broadcasts to it)."
            ) from None
    return checked


def _check_return_sites(return_sites: Any, available: list[str], caller: str) -> list[str]:
    if return_sites is None:
        return list(available)
    if isinstance(return_sites, str):
        return_sites = [return_sites]
    unknown = [s for s in return_sites if s not in available]
    if unknown:
        raise ValueError(f"{caller}: unknown return site(s) {unknown}. Available: {', '.join(available)}.")
    return list(return_sites)


def _draw_index(total: int, num_samples: int | None, caller: str) -> np.ndarray:
    if num_samples is None:
        return np.arange(total)
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"{caller}: `num_samples` must be a positive integer or None (all draws); got {num_samples!r}.")
    if num_samples <= total:
        return np.unique(np.linspace(0, total - 1, num_samples).round().astype(int)) if num_samples < total else np.arange(total)
    return np.arange(num_samples) % total


def _key(seed: int | jax.Array, caller: str) -> jax.Array:
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        # XLA's RandomBitGenerator: on CPU its programs compile several times faster than threefry's.
        return jax.random.key(int(seed), impl="rbg")
    if isinstance(seed, jax.Array) and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
        return seed
    raise TypeError(f"{caller}: `seed` must be an integer or a JAX key (jax.random.key(0)); got {seed!r}.")


def _flat(samples: Mapping[str, np.ndarray], names: Iterable[str], index: np.ndarray) -> dict[str, jax.Array]:
    out = {}
    for name in names:
        value = np.asarray(samples[name])
        value = value.reshape((-1,) + value.shape[2:])
        out[name] = jnp.asarray(value[index])
    return out


# --------------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------------


class _do_deterministic(Messenger):
    """``do`` for ``numpyro.deterministic`` sites: the returned value is replaced, so downstream uses it."""

    def __init__(self, fn=None, data: Mapping[str, Any] | None = None) -> None:
        self.data = dict(data or {})
        super().__init__(fn)

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "deterministic" and msg["name"] in self.data:
            msg["value"] = jnp.broadcast_to(self.data[msg["name"]], jnp.shape(msg["value"]))


def _base_distribution(fn: Any) -> Any:
    """``fn`` without its Independent / Expanded / Masked wrappers."""
    while isinstance(fn, (dist.Independent, dist.ExpandedDistribution, dist.MaskedDistribution)):
        fn = fn.base_dist
    return fn


def _loc_scale(fn: Any, site: str) -> tuple[Any, Any]:
    base = _base_distribution(fn)
    if not isinstance(base, LOC_SCALE):
        raise ValueError(
            f"counterfactual: site {site!r} has a {type(base).__name__} distribution, whose noise cannot be read "
            f"as a standardised residual. Give it a location-scale distribution "
            f"({', '.join(c.__name__ for c in LOC_SCALE)}), or write its exogenous noise as an explicit latent site "
            "named 'eps' / 'eps_*' or listed in the zoo model's `exogenous`."
        )
    return base.loc, base.scale


class _replay_noise(Messenger):
    """Set each listed site to ``loc + scale * noise`` under its current (possibly intervened) parents."""

    def __init__(self, fn=None, noise: Mapping[str, Any] | None = None) -> None:
        self.noise = dict(noise or {})
        super().__init__(fn)

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] in self.noise and msg.get("value") is None:
            loc, scale = _loc_scale(msg["fn"], msg["name"])
            eps = self.noise[msg["name"]]
            msg["value"] = jnp.broadcast_to(loc, eps.shape) + jnp.broadcast_to(scale, eps.shape) * eps


class _expected(Messenger):
    """Set each listed (leaf, observed) site to its distribution's mean under its current parents."""

    def __init__(self, fn=None, sites: Iterable[str] = ()) -> None:
        self.sites = set(sites)
        super().__init__(fn)

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] in self.sites and msg.get("value") is None:
            msg["value"] = msg["fn"].mean


def _is_delta(fn: Any) -> bool:
    return isinstance(_base_distribution(fn), dist.Delta)


def _is_loc_scale(fn: Any) -> bool:
    return isinstance(_base_distribution(fn), LOC_SCALE)


def _generate(model, arrays, static, observed, do_sample, do_det, substituted, key, return_sites, noise=None,
              expected=()):
    program = unobserve(model, sites=set(observed))
    if do_sample:
        program = handlers.do(program, data=do_sample)
    if do_det:
        program = _do_deterministic(program, data=do_det)
    if noise:
        program = _replay_noise(program, noise=noise)
    if expected:
        program = _expected(program, sites=expected)
    program = handlers.substitute(program, data=substituted)
    trace = handlers.trace(handlers.seed(program, key)).get_trace(**arrays, **static)
    out = {}
    for name in return_sites:
        if name in do_sample:
            out[name] = jnp.asarray(do_sample[name])
        elif name in do_det:
            out[name] = jnp.broadcast_to(do_det[name], jnp.shape(trace[name]["value"]))
        else:
            out[name] = trace[name]["value"]
    return out


#: Above this many scalars (draws x returned site sizes), draws run one at a time (lax.map).
MAX_VMAP_SCALARS = 2_000_000


def _map(fn, xs, batched: bool):
    # One vmap when all draws fit in memory; otherwise one draw at a time (lax.map), which bounds the
    # memory of large per-datum sites (images).
    return jax.vmap(fn)(xs) if batched else jax.lax.map(fn, xs)


#: Compiled programs of ``intervene``, ``counterfactual`` and guide abduction by what shapes them (model,
#: static data, sites, intervened names), so that new ``do`` values, posterior draws or fits of the same zoo
#: model reuse one compile.
_COMPILED: ProgramCache[Any] = ProgramCache(maxsize=64)


def _scalars(roles: CausalSites, sites: Sequence[str]) -> int:
    return int(sum(np.prod(roles.shapes.get(s, ())) for s in sites))


# --------------------------------------------------------------------------------------------------
# intervene
# --------------------------------------------------------------------------------------------------


def intervene(
    fit: Fit,
    do: Mapping[str, Any] | None = None,
    *,
    num_samples: int | None = None,
    seed: int | jax.Array = 0,
    return_sites: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Draw from a fitted generative program under the intervention ``do``.

    For each posterior draw of the global latent sites (``fit.samples``; network weights held at
    ``fit.fixed_params`` / ``fit.params``), the program runs once with ``numpyro.handlers.do(model, do)``
    and every per-datum latent and observed site is generated afresh (observations are not conditioned
    on; ``fit.data`` only gives the sizes, e.g. the number of data points). ``do={}`` (or ``None``) gives
    the posterior predictive of the observational regime, the natural baseline.

    Parameters
    ----------
    fit : Fit
        A fit by any engine.
    do : mapping site -> value
        Interventions, applied jointly (multi-node interventions). A value is broadcast to the site's shape
        (a scalar sets every data point). Targets: latent sites, deterministic sites and observed sites that
        are causal variables (another site depends on them, or the zoo model's ``config.nodes`` lists them).
        For ``do`` to be a true intervention each causal variable must be its own site, computed from its
        parents' site values (see the module docstring).
    num_samples : int or None
        Posterior draws to use, evenly spaced over the chains' draws (cycled if more than there are);
        ``None``: all of them.
    seed : int or jax key
        Randomness of the regenerated sites (an integer starts an ``impl="rbg"`` key, whose programs
        compile faster on CPU).
    return_sites : sequence of str or None
        Sites to return; ``None``: every sample and deterministic site.

    Returns
    -------
    dict of numpy.ndarray
        Site -> ``(num_samples, *site_shape)``. An intervened site holds its ``do`` value.

    Raises
    ------
    ValueError
        An unknown site in ``do`` (the message lists the valid targets), an observed-only site, a value that
        does not broadcast to the site's shape or is not finite, an unknown return site, a bad ``num_samples``.
    TypeError
        ``fit`` is not a ppzoo.Fit, ``do`` not a mapping, ``seed`` not an int or key.

    Examples
    --------
    >>> model = ppzoo.models.get("linear_scm", nodes=("a", "b"), edges=(("a", "b"),))  # doctest: +SKIP
    >>> fit = ppzoo.fit(model, {"x": x}, engine="nuts")  # doctest: +SKIP
    >>> draws = ppzoo.intervene(fit, do={"a": 1.0}, num_samples=200)  # doctest: +SKIP
    >>> draws["b"].shape  # (draws, data points)  # doctest: +SKIP
    (200, 500)
    """
    caller = "ppzoo.intervene"
    _check_fit(fit, caller)
    roles = causal_sites(fit)
    do = _check_do(do, roles, caller)
    available = roles.global_latent + roles.per_datum_latent + roles.observed + roles.deterministic
    return_sites = _check_return_sites(return_sites, available, caller)
    key = _key(seed, caller)
    index = _draw_index(fit.num_chains * fit.num_draws, num_samples, caller)
    arrays, static = split_data(fit.data)
    do_sample = {k: v for k, v in do.items() if k not in roles.deterministic}
    do_det = {k: v for k, v in do.items() if k in roles.deterministic}
    globals_ = _flat(fit.samples, [s for s in roles.global_latent if s in fit.samples], index)
    keys = jax.random.split(key, len(index))
    params = dict(fit.fixed_params or fit.params or {})
    batched = len(index) * _scalars(roles, return_sites) <= MAX_VMAP_SCALARS
    spec = ("intervene", fit.model, tuple(static.items()), tuple(roles.observed), tuple(sorted(do_sample)),
            tuple(sorted(do_det)), tuple(return_sites), batched)

    def build():
        def run(keys, globals_, arrays, do_sample, do_det, params):
            model = handlers.substitute(fit.model, data=params) if params else fit.model

            def one(args):
                k, g = args
                return _generate(model, arrays, static, roles.observed, do_sample, do_det, g, k, return_sites)

            return _map(one, (keys, globals_), batched)

        return jax.jit(run)

    out = _COMPILED.get(spec, build)(keys, globals_, arrays, do_sample, do_det, params)
    return {k: np.asarray(v) for k, v in out.items()}


# --------------------------------------------------------------------------------------------------
# counterfactual
# --------------------------------------------------------------------------------------------------


def _guide_of(fit: Fit, guide: Any) -> Any:
    if guide is not None:
        if not callable(guide):
            raise TypeError(f"counterfactual: `guide` must be a guide function; got {guide!r}.")
        return guide
    name = fit.options.get("guide")
    if name is None:
        if isinstance(fit.model, ZooModel) and fit.model.guide is not None:
            return fit.model.make_guide()
        name = "auto_normal"
    if name in inference.GUIDES:
        return inference.GUIDES[name](_run_model(fit))
    raise ValueError(
        f"counterfactual(method='guide'): the fit used the custom guide {name!r}, which the Fit does not keep. "
        "Pass it again: counterfactual(fit, data, do, method='guide', guide=my_guide)."
    )


def _abduct_guide(fit, data, roles, sites_needed, num, key, guide):
    from numpyro.infer import Predictive

    if "guide" not in inference.get(fit.engine).options.valid_names():
        raise ValueError(
            f"counterfactual(method='guide') needs an SVI fit, or any fit by an engine that trains a guide (its "
            f"guide is the amortized posterior of the exogenous noise); this fit is by {fit.engine!r}, which has "
            "no guide. Use method='nuts'."
        )
    guide_fn = _guide_of(fit, guide)
    if isinstance(guide_fn, tuple(_autoguide_classes())):
        for site in roles.per_datum_latent:
            if roles.shapes[site] != tuple(np.shape(fit.sites.values[site])):
                raise ValueError(
                    f"counterfactual(method='guide'): the fit's autoguide has one variational parameter per data "
                    f"point of the fit's data, so it cannot abduct site {site!r} of shape {roles.shapes[site]} "
                    f"(the fit had {tuple(np.shape(fit.sites.values[site]))}). Use method='nuts', or the fit's data."
                )
    arrays, static = split_data(data)
    batched = num * _scalars(roles, sites_needed) <= MAX_VMAP_SCALARS
    # One compiled program per (model, guide, shapes): a Predictive called eagerly compiles its draw loop
    # afresh on every call (a new closure each time), which made the pendulum's counterfactuals
    # compile ~100 times.
    guide_spec = guide if guide is not None else ("fit's guide", fit.options.get("guide"))
    params = dict(fit.params or {})
    shapes = tuple((k, np.shape(v)) for k, v in sorted(arrays.items())) + tuple(
        np.shape(leaf) for leaf in jax.tree_util.tree_leaves(params))
    # Shapes in the key too: an autoguide keeps the prototype (and so the shapes) it was first traced with.
    spec = ("abduct_guide", fit.model, guide_spec, tuple(static.items()), tuple(sites_needed), num, batched,
            jax.tree_util.tree_structure(params), shapes)

    def build():
        def run(key, arrays, params):
            predictive = Predictive(fit.model, guide=guide_fn, params=params, num_samples=num,
                                    return_sites=list(sites_needed), parallel=batched)
            return predictive(key, **arrays, **static)

        return jax.jit(run)

    draws = _COMPILED.get(spec, build)(key, arrays, params)
    return {k: jnp.asarray(v) for k, v in draws.items()}


def _autoguide_classes():
    from numpyro.infer import autoguide

    return [autoguide.AutoGuide]


def _abduct_nuts(fit, data, roles, num, key, nuts_options, caller):
    from ppzoo.fit import fit as ppzoo_fit

    means = {s: jnp.asarray(np.asarray(fit.samples[s]).mean((0, 1))) for s in roles.global_latent if s in fit.samples}
    options = {"num_warmup": 500, "num_samples": 500, "num_chains": 1}
    options.update(dict(nuts_options or {}))
    conditioned = handlers.condition(fit.model, data=means)
    params = fit.fixed_params or fit.params
    abducted = ppzoo_fit(conditioned, data, engine="nuts", seed=key, params=params, **options)
    total = abducted.num_chains * abducted.num_draws
    index = _draw_index(total, num, caller)
    draws = _flat(abducted.samples, roles.per_datum_latent, index)
    for s, m in means.items():
        draws[s] = jnp.broadcast_to(m, (len(index),) + m.shape)
    return draws, abducted


def counterfactual(
    fit: Fit,
    data: Mapping[str, Any] | None,
    do: Mapping[str, Any],
    *,
    method: Literal["guide", "nuts"] = "guide",
    num_samples: int | None = None,
    seed: int | jax.Array = 0,
    return_sites: Sequence[str] | None = None,
    guide: Any = None,
    nuts_options: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    r"""Counterfactuals of observed units under ``do``: abduction, action, prediction (Pearl 2009, Sec. 7.1).

    1. **Abduction**: draws of each unit's exogenous noise given its observations ``data``. Explicit noise
       sites (``eps``, ``eps_*``, ``ZooModel.exogenous``) and other per-datum latent sites are drawn from
       the fit's guide (``method="guide"``, SVI fits) or by NUTS on ``data`` with the global sites fixed at
       their posterior means (``method="nuts"``, any fit; for an MCMC fit and ``data=None`` the fit's own
       joint draws are used, no new chain is run). The implicit noise of every other per-datum site is its
       standardised residual ``(value - loc) / scale`` under the factual run (module docstring).
    2. **Action**: ``numpyro.handlers.do`` (or the same on deterministic sites) with ``do``.
    3. **Prediction**: the program reruns with the same noise; descendants of the targets change, the rest
       keep their factual values. Sites of three kinds need no noise of their own: explicit noise sites
       (held at their abducted values), :class:`~numpyro.distributions.Delta` sites (deterministic functions
       of their parents, e.g. the concept sites of the causal VAEs: recomputed), and observed leaves whose
       family is not location-scale (e.g. Bernoulli pixels): their noise cannot be read off one
       observation, so they return their counterfactual *expected* value (the decoder's pixel
       probabilities, the usual counterfactual image of a VAE).

    Zoo models with minibatching (``config.batch_size``) are run on all the units given.

    If the program has no per-datum latent site (e.g. ``linear_scm``: every node observed), abduction is
    exact and both methods are the same computation over the posterior draws of the globals. Otherwise
    ``method="guide"`` pairs each guide draw of the globals with its draw of the per-datum latents, and
    ``method="nuts"`` is a plug-in at the posterior mean of the globals (its spread is the per-datum
    uncertainty only).

    Parameters
    ----------
    fit : Fit
        The fitted program.
    data : mapping or None
        The units' observations, as model arguments (like ``fit.data``; may have another number of data
        points except for autoguide fits with ``method="guide"``). ``None``: ``fit.data``.
    do : mapping site -> value
        Interventions, as in :func:`intervene` (broadcast to the site's shape for ``data``).
    method : {"guide", "nuts"}
        How per-datum latents are abducted.
    num_samples : int or None
        Counterfactual draws per unit (``None``: all posterior draws for exact abduction, 1000 for the
        guide, all NUTS draws).
    seed : int or jax key
        Randomness of the abduction.
    return_sites : sequence of str or None
        Sites to return; ``None``: the per-datum latent, observed and deterministic sites.
    guide : callable, optional
        The guide the fit used, needed only when it was a custom guide function (a Fit keeps its name only).
    nuts_options : mapping, optional
        NUTS settings for ``method="nuts"`` (default 500 warmup, 500 draws, one chain).

    Returns
    -------
    dict of numpy.ndarray
        Site -> ``(num_samples, *site_shape)`` counterfactual values; an intervened site holds its value.

    Raises
    ------
    ValueError
        Bad ``do`` (as in :func:`intervene`), unknown ``method``, ``method="guide"`` on a non-SVI fit, a
        per-datum latent site or a causal observed site (one with children) without location-scale or Delta
        noise that is not declared exogenous, an autoguide asked to
        abduct units of another size, no observed site in ``data``.
    TypeError
        ``fit`` not a Fit, ``data`` not a mapping, a data key that is not a model argument.

    References
    ----------
    Pearl (2009), *Causality*, 2nd ed., Sec. 7.1.3 (abduction, action, prediction).

    Examples
    --------
    >>> cf = ppzoo.counterfactual(fit, {"x": x[:5]}, do={"a": 0.0})  # doctest: +SKIP
    >>> cf["b"].shape  # (draws, units)  # doctest: +SKIP
    (1000, 5)
    """
    caller = "ppzoo.counterfactual"
    _check_fit(fit, caller)
    fit = _full_batch(fit)
    if method not in ("guide", "nuts"):
        raise ValueError(f"{caller}: `method` must be 'guide' or 'nuts'; got {method!r}.")
    own_units = data is None
    if data is None:
        data = fit.data
    data = check_data(fit.model, data, caller=caller)
    roles = causal_sites(fit, data)
    if not roles.observed:
        raise ValueError(f"{caller}: `data` gives no observed site; pass the units' observations (e.g. {{'x': x}}).")
    do = _check_do(do, roles, caller)
    available = roles.per_datum_latent + roles.observed + roles.deterministic + roles.global_latent
    default = roles.per_datum_latent + roles.observed + roles.deterministic
    return_sites = _check_return_sites(return_sites if return_sites is not None else default, available, caller)
    key = _key(seed, caller)
    abduct_key, predict_key = jax.random.split(key)
    if isinstance(seed, (int, np.integer)):  # NumPyro's Predictive and MCMC take threefry keys
        abduct_key = jax.random.key(int(seed))
    model = _run_model(fit)
    arrays, static = split_data(data)

    if not roles.per_datum_latent:
        index = _draw_index(fit.num_chains * fit.num_draws, num_samples, caller)
        draws = _flat(fit.samples, [s for s in roles.global_latent if s in fit.samples], index)
        num = len(index)
    elif method == "guide":
        num = 1000 if num_samples is None else int(num_samples)
        _draw_index(num, num_samples, caller)
        draws = _abduct_guide(fit, data, roles, roles.global_latent + roles.per_datum_latent, num, abduct_key, guide)
    elif own_units and inference.get(fit.engine).is_mcmc:
        # The fit's own draws are already MCMC draws of its units' exogenous noise (jointly with the globals).
        index = _draw_index(fit.num_chains * fit.num_draws, num_samples, caller)
        draws = _flat(fit.samples, [s for s in roles.global_latent + roles.per_datum_latent if s in fit.samples], index)
        num = len(index)
    else:
        draws, _ = _abduct_nuts(fit, data, roles, num_samples, abduct_key, nuts_options, caller)
        num = next(iter(draws.values())).shape[0]

    exogenous = set(roles.exogenous)
    do_sample = {k: v for k, v in do.items() if k not in roles.deterministic}
    do_det = {k: v for k, v in do.items() if k in roles.deterministic}

    # Sort the non-exogenous per-datum sites by how their noise is carried over (clear error before compiling):
    # Delta sites are functions of their parents (recomputed), location-scale sites keep their standardised
    # residual, and observed leaves of any other family (Bernoulli pixels, counts) give their expected value.
    first = {k: v[0] for k, v in draws.items()}
    trace = handlers.trace(handlers.seed(handlers.substitute(model, data=first), jax.random.key(0))).get_trace(**data)
    replayed, expected = [], []
    for s in roles.per_datum_latent + roles.observed:
        if s in exogenous or _is_delta(trace[s]["fn"]):
            continue
        if _is_loc_scale(trace[s]["fn"]):
            replayed.append(s)
        elif s in roles.observed and s not in roles.targets:
            expected.append(s)
        else:
            _loc_scale(trace[s]["fn"], s)  # raises: a cause whose noise cannot be read off its value

    keys = jax.random.split(predict_key, num)
    params = dict(fit.fixed_params or fit.params or {})
    batched = num * _scalars(roles, return_sites) <= MAX_VMAP_SCALARS
    spec = ("counterfactual", fit.model, tuple(static.items()), tuple(roles.observed), tuple(sorted(exogenous)),
            tuple(roles.global_latent), tuple(replayed), tuple(expected), tuple(sorted(do_sample)),
            tuple(sorted(do_det)), tuple(return_sites), batched)

    def build():
        def run(keys, draws, arrays, do_sample, do_det, params):
            program = handlers.substitute(fit.model, data=params) if params else fit.model

            def factual_noise(values):
                tr = handlers.trace(handlers.seed(handlers.substitute(program, data=values), jax.random.key(0))).get_trace(
                    **arrays, **static
                )
                noise = {}
                for s in replayed:
                    loc, scale = _loc_scale(tr[s]["fn"], s)
                    noise[s] = (tr[s]["value"] - loc) / scale
                return noise

            def one(args):
                k, values = args
                noise = factual_noise(values)
                fixed = {s: v for s, v in values.items() if s in roles.global_latent or s in exogenous}
                return _generate(program, arrays, static, roles.observed, do_sample, do_det, fixed, k, return_sites, noise,
                                 expected)

            return _map(one, (keys, draws), batched)

        return jax.jit(run)

    out = _COMPILED.get(spec, build)(keys, draws, arrays, do_sample, do_det, params)
    return {k: np.asarray(v) for k, v in out.items()}
