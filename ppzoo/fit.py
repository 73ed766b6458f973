"""``ppzoo.fit``: one call to fit a NumPyro program by SVI, NumPyro NUTS or BlackJAX NUTS."""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

import jax
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer import init_to_uniform

from ppzoo._runtime import CompileTimer, warn
from ppzoo.inference import ENGINES
from ppzoo.models import ZooModel
from ppzoo.models import get as get_model

__all__ = ["fit", "Fit", "ModelSites", "inspect_model"]


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
    """

    latent: list[str]
    observed: list[str]
    deterministic: list[str]
    params: list[str]
    dims: dict[str, list[str]]
    batch_dims: dict[str, list[str]]
    values: dict[str, np.ndarray]
    improper: list[str] = dataclasses.field(default_factory=list)


def _dims_of(name: str, site: dict) -> tuple[list[str], list[str]]:
    value = np.shape(site["value"])
    dims = [f"{name}_dim_{i}" for i in range(len(value))]
    fn = site.get("fn")
    batch_ndim = len(getattr(fn, "batch_shape", ())) if fn is not None else len(value)
    for frame in site.get("cond_indep_stack", ()):
        position = batch_ndim + frame.dim
        if 0 <= position < len(dims):
            dims[position] = frame.name
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


def inspect_model(model: Callable[..., Any], data: Mapping[str, Any], key: jax.Array | None = None) -> ModelSites:
    """Run ``model(**data)`` once (eagerly, nothing compiled) and sort its sites by role."""
    key = jax.random.key(0) if key is None else key
    traced = handlers.substitute(handlers.seed(model, key), substitute_fn=_start_improper)
    trace = handlers.trace(traced).get_trace(**data)
    improper = []
    latent, observed, deterministic, params = [], [], [], []
    dims, batch_dims, values = {}, {}, {}
    for name, site in trace.items():
        kind = site["type"]
        if kind == "sample":
            if site.get("infer", {}).get("is_auxiliary"):
                continue
            if site["is_observed"] and isinstance(site["fn"], dist.Unit):
                continue  # numpyro.factor: a term of the log density, not data
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
    return ModelSites(latent, observed, deterministic, params, dims, batch_dims, values, improper)


def _model_arguments(model: Callable[..., Any]) -> tuple[set[str] | None, set[str]]:
    """Keyword names the model accepts (None = any) and those it requires."""
    fn = model.model if isinstance(model, ZooModel) else model
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
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


def _check_finite(data: Mapping[str, Any]) -> dict[str, Any]:
    checked = {}
    for key, value in data.items():
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
            value = np.asarray(value)
        if isinstance(value, (np.ndarray, jax.Array)) and np.issubdtype(np.asarray(value).dtype, np.number):
            array = np.asarray(value)
            bad = ~np.isfinite(array)
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(
                    f"data[{key!r}] contains {int(bad.sum())} NaN or inf value(s) (first at index {where}). "
                    "Remove or impute them before fitting; ppzoo does not drop data silently."
                )
        checked[key] = value
    return checked


def _validate(model, data, engine, options) -> tuple[Callable[..., Any], dict[str, Any], Any]:
    if isinstance(model, str):
        model = get_model(model)
    if not callable(model):
        raise TypeError(
            f"`model` must be a NumPyro model function or a zoo model (ppzoo.models.get('ica')); got {model!r}."
        )
    if engine not in ENGINES:
        raise ValueError(f"Unknown engine {engine!r}. Valid engines: {', '.join(map(repr, ENGINES))}.")
    option_class, _ = ENGINES[engine]
    opts = option_class.from_kwargs(engine, dict(options))
    if not isinstance(data, Mapping):
        raise TypeError(
            "`data` must be a mapping of the model's keyword arguments, e.g. {'x': x}; "
            f"got {type(data).__name__}. For a ppzoo data set pass `ds.data`."
        )
    accepted, required = _model_arguments(model)
    if accepted is not None:
        unknown = sorted(set(data) - accepted)
        if unknown:
            raise TypeError(
                f"data key(s) {', '.join(map(repr, unknown))} are not arguments of the model. "
                f"The model takes: {', '.join(sorted(accepted)) or 'no arguments'}."
            )
        missing = sorted(required - set(data))
        if missing:
            raise TypeError(f"The model requires argument(s) {', '.join(map(repr, missing))}; add them to `data`.")
    data = _check_finite(data)
    if isinstance(model, ZooModel) and model.check_data is not None:
        model.check_data(data, model.config)
    return model, data, opts


@dataclasses.dataclass
class Fit:
    """The result of :func:`ppzoo.fit`, the same for every engine.

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
    key: jax.Array = dataclasses.field(repr=False, default=None)
    fixed_params: dict[str, Any] | None = dataclasses.field(repr=False, default=None)

    @property
    def model_name(self) -> str:
        return getattr(self.model, "__name__", type(self.model).__name__)

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
        """
        from ppzoo.arviz import fit_to_datatree

        return fit_to_datatree(self, predictive_draws=predictive_draws, prior_draws=prior_draws)

    @cached_property
    def datatree(self) -> Any:
        """``to_arviz()`` with its defaults, computed once."""
        return self.to_arviz()

    def summary(self, var_names: list[str] | None = None):
        """ArviZ's summary table (``arviz_stats.summary``) of the posterior."""
        import arviz_stats

        return arviz_stats.summary(self.datatree, var_names=var_names)


def _as_key(seed: int | jax.Array) -> tuple[jax.Array, int | None]:
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
    engine : {"svi", "nuts", "blackjax"}
        The inference engine.
    seed : int or jax key
        Where the run's randomness starts.
    params : mapping, optional
        Learned parameters to hold fixed (e.g. ``svi_fit.params``): network weights stay at these values
        while NUTS or BlackJAX sample the remaining random sites.
    **engine_options
        The engine's settings: ``svi``: steps, learning_rate (or optimizer, any optax one), guide, num_particles, num_draws;
        ``nuts``/``blackjax``: num_warmup, num_samples, num_chains, target_accept_prob, dense_mass,
        max_tree_depth.

    Returns
    -------
    Fit
        Draws ``(chain, draw, ...)``, sample stats, timings and ``to_arviz()``.

    Raises
    ------
    ValueError
        Unknown engine; NaN/inf in the data; a non-positive number of steps or samples; data the zoo model
        cannot take; a model with no observed or no latent site.
    TypeError
        Unknown engine option; a data key that is not an argument of the model; a missing required argument.

    Examples
    --------
    >>> ds = ppzoo.data.load("linear_ica", num_data=500, num_sources=2)
    >>> fit = ppzoo.fit(ppzoo.models.get("ica"), ds.data, engine="nuts", num_samples=200)
    >>> fit.samples["mixing"].shape
    (4, 200, 2, 2)
    """
    model, data, opts = _validate(model, data, engine, engine_options)
    key, seed_int = _as_key(seed)
    run_model = model
    if params is not None:
        if not isinstance(params, Mapping):
            raise TypeError(f"`params` must be a mapping such as svi_fit.params; got {type(params).__name__}.")
        run_model = handlers.substitute(model, data=dict(params))
    check_key, run_key = jax.random.split(key)
    try:
        sites = inspect_model(run_model, data, check_key)
    except (ValueError, TypeError) as error:
        raise type(error)(f"Running the model once on the given data failed: {error}") from error
    if not sites.observed:
        raise ValueError(
            "The model has no observed site with this data: pass the observed arrays in `data` under the "
            "argument names the model uses for `obs=` (e.g. {'x': x}). Fitting the prior alone is not inference."
        )
    if not sites.latent:
        raise ValueError("The model has no latent (unobserved) sample site: there is nothing to infer.")
    if params is not None and engine != "svi":
        unused = sorted(p for p in sites.params)
        if unused and not set(unused) <= set(params):
            missing = sorted(set(unused) - set(params))
            raise ValueError(
                f"`params` lacks the model's parameter site(s) {', '.join(missing)}; pass the params of an SVI fit "
                "of the same model."
            )
    if engine != "svi" and sites.params and params is None:
        raise ValueError(
            f"The model has learnable parameters ({', '.join(sites.params)}) that MCMC cannot learn: fit it with "
            "engine='svi' first, then pass params=svi_fit.params to hold them fixed."
        )
    _, runner = ENGINES[engine]
    extra: dict[str, Any] = {}
    if engine == "svi":
        extra = {
            "default_guide": model.make_guide() if isinstance(model, ZooModel) else None,
            "latent_sites": sites.latent,
            "deterministic_sites": sites.deterministic,
        }
        if opts.progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=opts.steps, desc="SVI", unit="step")
            extra["progress"] = bar.update
    timer = CompileTimer()
    start = time.perf_counter()
    with timer.measure():
        result = runner(run_model, data, run_key, opts, **extra)
    total = time.perf_counter() - start
    if "progress" in extra:
        bar.close()
    notes = []
    samples = result.samples
    if isinstance(model, ZooModel) and model.align is not None:
        samples, note = model.align(samples, model.config)
        notes.append(note)
    for message in result.warnings:
        warn(f"ppzoo.fit({engine!r}): {message}", stacklevel=2)
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
        key=run_key,
        fixed_params=dict(params) if params is not None else None,
    )
