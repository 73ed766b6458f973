"""``ppzoo.fit``: one call to fit a NumPyro program by SVI, NumPyro NUTS or BlackJAX NUTS."""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer import init_to_uniform

from ppzoo._datacheck import as_numeric, check_observed, explain_trace_failure
from ppzoo._runtime import CompileTimer, warn
from ppzoo import inference
from ppzoo.models import ZooModel
from ppzoo.models import get as get_model

__all__ = [
    "fit", "Fit", "FitKeys", "ModelSites", "as_key", "inspect_model", "check_data", "validate_data",
    "model_arguments",
]


@dataclasses.dataclass(frozen=True)
class ModelSites:
    """What one run of the model says about its sites.

    Attributes
    ----------
    latent, observed, deterministic, params : list of str
        Site names by role.
    dims : dict
        Site name -> dimension names (plates by their name, other axes ``<site>_dim_<i>``).
    batch_dims : dict
        Observed site name -> dimension names of its log-likelihood (its batch axes).
    values : dict
        Site values from the run (observed values are the data).
    improper : list of str
        Latent sites with an improper (flat) prior: they start uniformly on the unconstrained scale, and
        there is no prior or prior predictive for the model.
    factors : list of str
        ``numpyro.factor`` sites: terms of the log density, such as a likelihood written as a factor (a
        marginalised mixture); they are not data, so they have no log-likelihood or predictive of their own.
    """

    latent: list[str]
    observed: list[str]
    deterministic: list[str]
    params: list[str]
    dims: dict[str, list[str]]
    batch_dims: dict[str, list[str]]
    values: dict[str, np.ndarray]
    improper: list[str] = dataclasses.field(default_factory=list)
    factors: list[str] = dataclasses.field(default_factory=list)


def _dims_of(name: str, site: dict) -> tuple[list[str], list[str]]:
    """A site's dimension names (plates by name, other axes ``<site>_dim_<i>``) and its batch dims.

    A plate's ``dim`` counts from the right of the batch shape. A sample site knows its batch shape; a
    deterministic site does not (its value may end in event axes, e.g. ``(N, K)`` in the plate ``"data"``),
    so its batch shape is taken as the shortest that holds every enclosing plate at an axis of that plate's
    size (``(N, K)`` -> ``("data", "<site>_dim_1")``). Where none fits, the axes keep their generic names.
    """
    value = np.shape(site["value"])
    dims = [f"{name}_dim_{i}" for i in range(len(value))]
    frames = list(site.get("cond_indep_stack", ()))
    fn = site.get("fn")

    def fits(batch_ndim: int) -> bool:
        for frame in frames:
            position = batch_ndim + frame.dim
            if not 0 <= position < len(value) or (frame.size is not None and value[position] != frame.size):
                return False
        return True

    batch_ndim = len(getattr(fn, "batch_shape", ())) if fn is not None else None
    if frames and (batch_ndim is None or not fits(batch_ndim)):
        shortest = max(-frame.dim for frame in frames)
        batch_ndim = next((n for n in range(shortest, len(value) + 1) if fits(n)), batch_ndim)
    if batch_ndim is None:
        batch_ndim = len(value)
    if frames and fits(batch_ndim):
        for frame in frames:
            dims[batch_ndim + frame.dim] = frame.name
    return dims, dims[:batch_ndim]


def is_improper(fn: Any) -> bool:
    """Whether a site's distribution is an improper prior (e.g. a flat ``ImproperUniform``): no draws."""
    while fn is not None:
        if isinstance(fn, dist.ImproperUniform):
            return True
        fn = getattr(fn, "base_dist", None)
    return False


def _start_improper(site: dict) -> Any:
    # Improper priors cannot be drawn from; start them where NumPyro's MCMC would (uniform in (-2, 2)
    # on the unconstrained scale). Every other site draws from its prior as usual.
    if site["type"] == "sample" and not site["is_observed"] and is_improper(site["fn"]):
        return init_to_uniform(site)
    return None


def _trace(model: Callable[..., Any], data: Mapping[str, Any], key: jax.Array | None) -> dict[str, Any]:
    key = jax.random.key(0) if key is None else key
    traced = handlers.substitute(handlers.seed(model, key), substitute_fn=_start_improper)
    return handlers.trace(traced).get_trace(**data)


def inspect_model(model: Callable[..., Any], data: Mapping[str, Any], key: jax.Array | None = None) -> ModelSites:
    """Run ``model(**data)`` once (eagerly, nothing compiled) and sort its sites by role."""
    return _sites_of(_trace(model, data, key))


def _sites_of(trace: Mapping[str, Any]) -> ModelSites:
    improper, factors = [], []
    latent, observed, deterministic, params = [], [], [], []
    dims, batch_dims, values = {}, {}, {}
    for name, site in trace.items():
        kind = site["type"]
        if kind == "sample":
            if site["is_observed"] and isinstance(site["fn"], dist.Unit):
                factors.append(name)  # numpyro.factor: a term of the log density, not data
                continue
            if site.get("infer", {}).get("is_auxiliary"):
                continue
            (observed if site["is_observed"] else latent).append(name)
            if not site["is_observed"] and is_improper(site["fn"]):
                improper.append(name)
        elif kind == "deterministic":
            deterministic.append(name)
        elif kind == "param":
            params.append(name)
            continue
        else:
            continue
        dims[name], batch = _dims_of(name, site)
        if kind == "sample" and site["is_observed"]:
            batch_dims[name] = batch
        values[name] = np.asarray(site["value"])
    return ModelSites(latent, observed, deterministic, params, dims, batch_dims, values, improper, factors)


def _signature(model: Callable[..., Any]) -> inspect.Signature | None:
    fn = model.model if isinstance(model, ZooModel) else model
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def model_arguments(model: Callable[..., Any]) -> tuple[set[str] | None, set[str]]:
    """Keyword names the model accepts (None = any) and those it requires."""
    signature = _signature(model)
    if signature is None:
        return None, set()
    accepted, required = set(), set()
    for p in signature.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            return None, required
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            accepted.add(p.name)
            if p.default is p.empty:
                required.add(p.name)
    if isinstance(model, ZooModel):
        accepted.discard("config")
        required.discard("config")
    return accepted, required


def _check_keys(model: Callable[..., Any], data: Any, *, require: bool, prefix: str) -> None:
    """``data`` is a mapping of the model's keyword arguments: no unknown key and, with ``require``, no
    required argument missing."""
    if not isinstance(data, Mapping):
        raise TypeError(
            f"{prefix}`data` must be a mapping of the model's keyword arguments, e.g. {{'x': x}}; "
            f"got {type(data).__name__}. For a ppzoo data set pass `ds.data`."
        )
    accepted, required = model_arguments(model)
    if accepted is None:
        return
    unknown = sorted(set(data) - accepted)
    if unknown:
        raise TypeError(
            f"{prefix}data key(s) {', '.join(map(repr, unknown))} are not arguments of the model. "
            f"The model takes: {', '.join(sorted(accepted)) or 'no arguments'}."
        )
    missing = sorted(required - set(data))
    if require and missing:
        raise TypeError(
            f"{prefix}The model requires argument(s) {', '.join(map(repr, missing))}; add them to `data`."
        )


def _finite_arrays(data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The data with lists of numbers as arrays; text, objects, NaN and inf refused (naming the key)."""
    checked = {}
    for key, value in data.items():
        value = as_numeric(key, value)
        if isinstance(value, (np.ndarray, jax.Array)) and np.issubdtype(np.asarray(value).dtype, np.number):
            array = np.asarray(value)
            bad = ~np.isfinite(array)
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(
                    f"{prefix}data[{key!r}] contains {int(bad.sum())} NaN or inf value(s) (first at index {where}). "
                    "Remove or impute them before fitting; ppzoo does not drop data silently."
                )
        checked[key] = value
    return checked


def check_data(model: Callable[..., Any] | ZooModel | str, data: Any, *, require: bool = False,
               caller: str | None = None) -> dict[str, Any]:
    """The data as the model will get them, after the checks every entry point runs before compiling.

    :func:`fit`, :func:`validate_data`, :func:`ppzoo.sbc` and :func:`ppzoo.counterfactual` all run this:

    1. ``data`` is a mapping whose keys are keyword arguments of the model (with ``require``, every
       argument without a default is there);
    2. lists of numbers become arrays; text, objects, NaN and inf are refused, naming the key;
    3. a zoo model's own ``check_data(data, config)`` runs on the converted data.

    The observed sites' shapes and supports need a run of the model: :func:`validate_data` adds those.

    Parameters
    ----------
    model : callable, ZooModel or str
        A NumPyro model function, a zoo model or a zoo name.
    data : mapping
        The model's keyword arguments.
    require : bool
        Refuse data that lack a required argument of the model (``fit`` does; SBC and
        ``validate_data`` take partial data).
    caller : str, optional
        Public function the check runs for (``"ppzoo.counterfactual"``); its messages start with it.

    Returns
    -------
    dict
        A new dict of the data, lists turned into arrays.

    Raises
    ------
    TypeError
        ``data`` not a mapping; a key that is not an argument of the model; with ``require``, a missing
        required argument; text or object arrays.
    ValueError
        NaN or inf (the key, how many, the first index); data the zoo model's own check refuses.

    Examples
    --------
    >>> check_data(ppzoo.models.get("ica"), {"x": [[0.1, 0.2], [0.3, 0.4]]})["x"].shape
    (2, 2)
    """
    if isinstance(model, str):
        model = get_model(model)
    prefix = f"{caller}: " if caller else ""
    _check_keys(model, data, require=require, prefix=prefix)
    data = _finite_arrays(data, prefix)
    if isinstance(model, ZooModel) and model.check_data is not None:
        model.check_data(data, model.config)
    return data


def _validate(model, data, engine, options) -> tuple[Callable[..., Any], dict[str, Any], Any]:
    if isinstance(model, str):
        model = get_model(model)
    if not callable(model):
        raise TypeError(
            f"`model` must be a NumPyro model function or a zoo model (ppzoo.models.get('ica')); got {model!r}."
        )
    opts = inference.get(engine).options.from_kwargs(engine, dict(options))
    return model, check_data(model, data, require=True), opts


def _generated_arguments(model: Callable[..., Any]) -> set[str]:
    """The model's arguments that default to None: data it simulates when not given."""
    signature = _signature(model)
    if signature is None:
        return set()
    return {p.name for p in signature.parameters.values() if p.default is None}


def _checked_sites(model: Callable[..., Any], data: Mapping[str, Any], key: jax.Array | None,
                   signature_of: Callable[..., Any] | None = None) -> ModelSites:
    """Trace ``model(**data)`` once, check the observed sites against the data, and sort the sites by role."""
    try:
        trace = _trace(model, data, key)
    except (ValueError, TypeError) as error:
        generated = _generated_arguments(signature_of if signature_of is not None else model)
        raise explain_trace_failure(model, data, error, jax.random.key(0) if key is None else key,
                                    generated) from error
    check_observed(trace, data)
    return _sites_of(trace)


def validate_data(model: Callable[..., Any] | ZooModel | str, data: Mapping[str, Any], *,
                  key: jax.Array | None = None) -> ModelSites:
    """Check ``data`` against ``model`` as :func:`fit` does before compiling anything, and sort its sites.

    The data go through :func:`check_data` (keys are model arguments; lists of numbers become arrays;
    text, objects, NaN and inf are refused; a zoo model's own ``check_data`` runs); then the model is run
    once, eagerly, on the data and every observed site is compared with its distribution.

    Shape rule: with ``D = fn.batch_shape + fn.event_shape`` the traced shape of an observed site's
    distribution (plates included) and ``O`` the shape of its data, the data are accepted when ``O == D``;
    when they are a single value (a pseudo-observation such as ``obs=0.0``) with no more axes than ``D``;
    or, for a site in no plate, when the distribution broadcasts up to ``O`` (``Normal(mu, sigma)`` with
    scalar parameters observing a vector) and ``O`` is not ``D`` with axes of length 1 added or removed.
    Inside a plate, therefore, the data must have exactly the site's shape: ``y`` of shape ``(150, 1)`` at
    a site of shape ``(150,)`` in ``plate("data", 150)`` is refused (NumPyro would broadcast it to
    ``(150, 150)``), as is a ``y`` one element short.

    Support rule: every unmasked observed value must lie in ``fn.support`` (a Bernoulli site takes values
    in [0, 1]); sites whose support depends on the value, and ``numpyro.factor`` sites, are not checked.

    Parameters
    ----------
    model : callable, ZooModel or str
        As in :func:`fit`.
    data : mapping
        As in :func:`fit`.
    key : jax key, optional
        For the model's random sites in the one run (default ``jax.random.key(0)``).

    Returns
    -------
    ModelSites
        The model's sites by role, as in ``Fit.sites``.

    Raises
    ------
    TypeError
        Text or object arrays in the data; a data key that is not an argument of the model.
    ValueError
        NaN or inf; an observed value whose shape the rule refuses (the message names the site, both shapes
        and the likely fix); values outside a site's support (how many, the first index, the support);
        a model that fails on the data (the arrays whose shapes or lengths disagree).
    """
    if isinstance(model, str):
        model = get_model(model)
    return _checked_sites(model, check_data(model, data), key)


class FitKeys(NamedTuple):
    """The random keys of one fit, one per job, all from one ``jax.random.split(key, 4)`` of the seed's key.

    No job splits another's key: the engine splits ``engine`` into its chains (or its guide init),
    :meth:`Fit.to_arviz` draws the posterior predictive from ``predictive`` and the prior and prior predictive
    from ``prior``. (Splitting the engine's key again would repeat its streams: ``split(k, 2)[i] ==
    split(k, n)[i]``, so a posterior-predictive key from ``split(engine, 2)`` was chain 0's key.)

    Attributes
    ----------
    check : jax key
        The one eager run of the model that checks the data before anything compiles.
    engine : jax key
        The engine's run.
    predictive : jax key
        Posterior predictive draws.
    prior : jax key
        Prior and prior predictive draws.
    """

    check: jax.Array
    engine: jax.Array
    predictive: jax.Array
    prior: jax.Array

    @classmethod
    def from_key(cls, key: jax.Array) -> "FitKeys":
        """Split ``key`` once into the four named keys."""
        # JAX's threefry split is fold-like (split(k, 4)[:2] == split(k, 2)), so `check` and `engine` are the
        # keys fit() used before the other streams were named: a seed gives the same draws as before.
        return cls(*jax.random.split(key, 4))


@dataclasses.dataclass(frozen=True, eq=False)
class Fit:
    """The result of :func:`ppzoo.fit`, the same for every engine.

    Frozen: a fit is a record of one run, and its DataTree (:meth:`to_arviz`) is built once from it and shared
    by reports, checks and sweeps. Equality is identity (draws are arrays).

    Attributes
    ----------
    model : callable
        The model that was fit (zoo models keep their config).
    data : dict
        The data it was fit to (as given).
    engine : str
        ``"svi"``, ``"nuts"`` or ``"blackjax"``.
    options : dict
        The engine's settings, all of them, defaults included.
    seed : int or None
        The seed the run started from.
    samples : dict of numpy.ndarray
        Latent and deterministic sites, each ``(chain, draw, *site_shape)``, constrained space
        (SVI: one chain of draws from the fitted guide).
    sample_stats : dict of numpy.ndarray
        Per-draw statistics under ArviZ's names (``diverging``, ``lp``, ...).
    params : dict or None
        Learned non-random parameters (SVI; network weights live here).
    losses : numpy.ndarray or None
        SVI's loss per step.
    timings : dict
        ``compile_s`` (tracing, lowering and compiling), ``run_s`` (the rest), ``total_s``.
    warnings : list of str
        Divergences, NaN losses and other problems, in words.
    notes : list of str
        What was done to the draws (e.g. ICA's mode alignment).
    sites : ModelSites
        The model's sites by role, with their dimension names.
    keys : FitKeys
        The run's random keys by job (engine, posterior predictive, prior).
    diagnostics : dict
        The engine's own diagnostics by name: ``"psis"`` (SVI) is the
        :class:`ppzoo.inference.psis.PSISResult` of the fitted guide (see :attr:`pareto_k`), or
        ``"psis_skipped"`` says in words why SVI ran none (``psis_draws=0``, a point-estimate guide).
    """

    model: Callable[..., Any]
    data: dict[str, Any]
    engine: str
    options: dict[str, Any]
    seed: int | None
    samples: dict[str, np.ndarray]
    sample_stats: dict[str, np.ndarray]
    params: dict[str, Any] | None
    losses: np.ndarray | None
    timings: dict[str, float]
    warnings: list[str]
    notes: list[str]
    sites: ModelSites
    keys: FitKeys | None = dataclasses.field(repr=False, default=None)
    fixed_params: dict[str, Any] | None = dataclasses.field(repr=False, default=None)
    diagnostics: dict[str, Any] = dataclasses.field(repr=False, default_factory=dict)
    # DataTrees by (predictive_draws, prior_draws): built on first use, then shared (the fit is frozen).
    _trees: dict[tuple[int, int], Any] = dataclasses.field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.keys is None:  # a Fit made by hand: the keys ppzoo.fit would have used for its seed
            object.__setattr__(self, "keys", FitKeys.from_key(jax.random.key(0 if self.seed is None else self.seed)))

    @property
    def model_name(self) -> str:
        return getattr(self.model, "__name__", type(self.model).__name__)

    @property
    def pareto_k(self) -> float | None:
        """The PSIS k-hat of the fitted guide (SVI; above 0.7: unreliable), ``None`` without one (MCMC).

        For a guide amortized per datum it is the median of the items' k-hats; the share of items above 0.7
        and each item's k-hat are in ``fit.diagnostics["psis"]``.
        """
        psis = self.diagnostics.get("psis")
        return None if psis is None else float(psis.pareto_k)

    @property
    def num_chains(self) -> int:
        return next(iter(self.samples.values())).shape[0]

    @property
    def num_draws(self) -> int:
        return next(iter(self.samples.values())).shape[1]

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {v.shape}" for k, v in self.samples.items())
        t = self.timings
        return (
            f"Fit(model={self.model_name!r}, engine={self.engine!r}, samples={{{shapes}}}, "
            f"compile_s={t['compile_s']:.2f}, run_s={t['run_s']:.2f}, warnings={len(self.warnings)})"
        )

    def to_arviz(self, *, predictive_draws: int = 500, prior_draws: int = 500) -> Any:
        """The fit as an :class:`xarray.DataTree` with ArviZ's groups and names.

        Groups: ``posterior``, ``sample_stats``, ``observed_data``, ``log_likelihood``,
        ``posterior_predictive``, ``prior``, ``prior_predictive``. ``posterior_predictive`` holds at most
        ``predictive_draws`` draws (thinned evenly within each chain) so memory stays bounded on large
        data; ``log_likelihood`` keeps every draw unless draws x data points exceed 2e7, then it is
        thinned the same way. ``prior``/``prior_predictive`` hold ``prior_draws`` draws in one chain.

        The tree is built once per fit and setting: a second call returns the same object (copy it,
        ``tree.copy()``, before changing it). Its jitted log-likelihood and predictive programs are compiled
        once per fit, so another setting with the same shapes compiles nothing.
        """
        from ppzoo.arviz import fit_to_datatree

        setting = (predictive_draws, prior_draws)
        if setting not in self._trees:
            self._trees[setting] = fit_to_datatree(self, predictive_draws=predictive_draws, prior_draws=prior_draws)
        return self._trees[setting]

    @property
    def datatree(self) -> Any:
        """``to_arviz()`` with its defaults, built once."""
        return self.to_arviz()

    def summary(self, var_names: list[str] | None = None):
        """ArviZ's summary table (``arviz_stats.summary``) of the posterior."""
        import arviz_stats

        return arviz_stats.summary(self.datatree, var_names=var_names)


def as_key(seed: int | jax.Array) -> tuple[jax.Array, int | None]:
    """A seed as a JAX key, and the seed as an integer when it was one (``None`` for a key).

    Raises
    ------
    TypeError
        If ``seed`` is neither an integer nor a typed JAX key (``jax.random.key``; not a legacy uint32 key).
    """
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return jax.random.key(int(seed)), int(seed)
    if isinstance(seed, jax.Array) and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
        return seed, None
    raise TypeError(f"`seed` must be an integer or a JAX key (jax.random.key(0)); got {seed!r}.")



def fit(
    model: Callable[..., Any] | ZooModel | str,
    data: Mapping[str, Any],
    engine: str = "nuts",
    *,
    seed: int | jax.Array = 0,
    params: Mapping[str, Any] | None = None,
    **engine_options: Any,
) -> Fit:
    """Fit a NumPyro program to data with the chosen engine.

    Parameters
    ----------
    model : callable, ZooModel or str
        Any NumPyro model function, a zoo model (``ppzoo.models.get("ica")``) or a zoo name.
    data : mapping
        The model's keyword arguments: observed arrays named after their sites, and settings.
    engine : str
        The inference engine: a name in ``ppzoo.inference.names()`` (``"svi"``, ``"nuts"``, ``"blackjax"``
        and any engine registered since).
    seed : int or jax key
        Where the run's randomness starts.
    params : mapping, optional
        Learned parameters to hold fixed (e.g. ``svi_fit.params``): network weights stay at these values
        while NUTS or BlackJAX sample the remaining random sites.
    **engine_options
        The engine's settings: ``svi``: steps, learning_rate (or optimizer, any optax one), guide, num_particles, num_draws,
        psis_draws (the PSIS diagnostic behind ``fit.pareto_k``; 0 = off), importance_resample, init and stop
        (Laplace start and the convergence rule: ``ppzoo.inference.SVIOptions``);
        ``nuts``/``blackjax``: num_warmup, num_samples, num_chains, target_accept_prob, adaptation ("auto", "diag",
        "dense", "low_rank"), init_strategy (a NumPyro strategy or "pathfinder"), max_tree_depth;
        ``pathfinder``: ``ppzoo.inference.pathfinder.PathfinderOptions``; ``adversarial``:
        ``ppzoo.inference.adversarial.AdversarialOptions``. Each engine's options class lists them all.

    Returns
    -------
    Fit
        Draws ``(chain, draw, ...)``, sample stats, timings and ``to_arviz()``.

    Raises
    ------
    ValueError
        Unknown engine; NaN/inf in the data; a non-positive number of steps or samples; data the zoo model
        cannot take; an observed array whose shape does not match its site (e.g. ``(150, 1)`` for a site of
        shape ``(150,)``, or one element short) or with values outside the site's support (negative counts
        for a Poisson); a model with no observed or no latent site. The shape rule is in
        :func:`validate_data`; all of these are raised before anything compiles.
    TypeError
        Unknown engine option; a data key that is not an argument of the model; a missing required argument;
        text or object arrays in the data.

    Examples
    --------
    >>> ds = ppzoo.data.load("linear_ica", num_data=500, num_sources=2)
    >>> fit = ppzoo.fit(ppzoo.models.get("ica"), ds.data, engine="nuts", num_samples=200)
    >>> fit.samples["mixing"].shape
    (4, 200, 2, 2)
    """
    model, data, opts = _validate(model, data, engine, engine_options)
    key, seed_int = as_key(seed)
    run_model = model
    if params is not None:
        if not isinstance(params, Mapping):
            raise TypeError(f"`params` must be a mapping such as svi_fit.params; got {type(params).__name__}.")
        if isinstance(model, ZooModel):  # still a zoo model: the engines may ask it for its own guide
            run_model = dataclasses.replace(model, model=handlers.substitute(model.model, data=dict(params)))
        else:
            run_model = handlers.substitute(model, data=dict(params))
    keys = FitKeys.from_key(key)
    sites = _checked_sites(run_model, data, keys.check, signature_of=model)
    if not sites.observed and not sites.factors:
        raise ValueError(
            "The model has no observed site and no numpyro.factor with this data: pass the observed arrays in "
            "`data` under the argument names the model uses for `obs=` (e.g. {'x': x}), or add the likelihood "
            "as a numpyro.factor term. Fitting the prior alone is not inference."
        )
    if not sites.latent:
        raise ValueError("The model has no latent (unobserved) sample site: there is nothing to infer.")
    engine_record = inference.get(engine)
    if params is not None and not engine_record.learns_params:
        unused = sorted(p for p in sites.params)
        if unused and not set(unused) <= set(params):
            missing = sorted(set(unused) - set(params))
            raise ValueError(
                f"`params` lacks the model's parameter site(s) {', '.join(missing)}; pass the params of an SVI fit "
                "of the same model."
            )
    if not engine_record.learns_params and sites.params and params is None:
        learners = " or ".join(f"engine={n!r}" for n in inference.names() if inference.get(n).learns_params)
        raise ValueError(
            f"The model has learnable parameters ({', '.join(sites.params)}) that engine={engine!r} cannot learn: "
            f"fit it with {learners} first, then pass params=svi_fit.params to hold them fixed."
        )
    timer = CompileTimer()
    start = time.perf_counter()
    with timer.measure():
        result = engine_record.run(run_model, data, keys.engine, opts, sites)
    total = time.perf_counter() - start
    notes = []
    samples = result.samples
    if isinstance(model, ZooModel) and model.align is not None:
        samples, note = model.align(samples, model.config)
        notes.append(note)
    for message in result.warnings:
        warn(f"ppzoo.fit({engine!r}): {message}")  # stacklevel 3: the user's call of ppzoo.fit
    return Fit(
        model=model,
        data=dict(data),
        engine=engine,
        options=opts.as_dict(),
        seed=seed_int,
        samples=samples,
        sample_stats=result.sample_stats,
        params=result.params if result.params is not None else (dict(params) if params is not None else None),
        losses=result.losses,
        timings={"compile_s": timer.seconds, "run_s": max(total - timer.seconds, 0.0), "total_s": total},
        warnings=list(result.warnings),
        notes=notes,
        sites=sites,
        keys=keys,
        fixed_params=dict(params) if params is not None else None,
        diagnostics=dict(result.diagnostics or {}),
    )
