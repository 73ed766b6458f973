"""The ``"pathfinder"`` engine: BlackJAX multi-path Pathfinder on the log density NumPyro derives from the model.

Pathfinder (Zhang, Carpenter, Gelman & Vehtari 2022) runs L-BFGS on the model's log density in the
unconstrained space and, at every iterate, forms a Gaussian from the L-BFGS estimate of the inverse Hessian;
the Gaussian with the largest ELBO (estimated from ``num_elbo_draws`` draws) is the path's approximation.
Multi-path Pathfinder runs ``num_paths`` such paths from different starts, draws ``draws_per_path`` from each
and importance-resamples the pool by Pareto-smoothed importance weights (PSIS), which drops paths stuck in
minor modes. The engine reports the Pareto :math:`\\hat k` of that pool (``fit.pareto_k``): above 0.7 the
Gaussian mixture is not close enough to the posterior for the weights to correct it, and the fit warns.

The algorithm is BlackJAX's (:func:`blackjax.vi.pathfinder.approximate` and
:func:`~blackjax.vi.pathfinder.sample` per path, :func:`blackjax.diagnostics.psis_weights` for the
resampling inside the compiled program); the model's potential, its starts and the map back to constrained
sites (deterministic sites included) are NumPyro's :func:`~numpyro.infer.util.initialize_model`, as in the
``"blackjax"`` engine. The reported :math:`\\hat k` and the effective sample size of the weights are ArviZ's
PSIS (:mod:`ppzoo.inference.psis`) of the same log ratios.

The same draws start MCMC chains: ``init_strategy="pathfinder"`` in the ``"nuts"`` and ``"blackjax"``
engines (:func:`initialize`).

Measured (2026-12-07, 2 shared CPU cores, float32, defaults): on posteriordb's eight schools
(non-centred) every path's Gaussian sits near mu ~ 0-2 (the reference mean is 4.4, sd 3.3): the L-BFGS path
from the starts to the joint mode (large tau, mu near 0) never crosses the posterior's bulk, so the
resampled draws are 0.6-1.0 reference sd off in mu; k-hat was above 0.7 in 7 of 8 seeds (0.52 in the
other). On sblrc-blr (a linear regression) the draws were within 0.11 sd and 12% in sd of the reference
(k-hat 0.64-0.73); on kidiq (badly scaled) k-hat was 0.9-1.05 and the means 3.3 sd off. Pathfinder is a
fast start and a quick look, not a replacement for NUTS: trust it only where k-hat is below 0.7.

On 8 posteriordb references (``benchmarks/reference_posteriors.py --engines pathfinder``, seed 0, 2 CPU
cores under a load average of ~25) the engine passed ``compare_to_reference`` on 2 (garch, low_dim_gauss_mix)
and warned (k-hat > 0.7) on arK, eight schools, kidiq, mesquite and garch; sblrc-blr (k-hat 0.41, worst sd
ratio 0.85) and earnings (k-hat 0.69, sd ratio 0.87) failed without the warning. With 4000 draws per path and
the k-hat of the weighted means and variances (:func:`ppzoo.inference.psis.moment_pareto_k`, 2026-12-08, all 15
references): no silent failure; sblrc-blr (ratio k 0.55, sds 0.85 of the reference) and one_comp (0.66, 0.72)
have moment k-hats 0.73 and 0.95 and warn.

As a start it pays: NUTS (4 chains, ``adaptation="auto"``) with 50 warmup iterations from uniform starts
left kidiq at min ESS 8 (227 leapfrog steps per draw, sd ratio 1.42) and mesquite at min ESS 11 with 439
divergences (garch: 71); from Pathfinder starts the same 50 iterations gave min ESS 831-3022, no
divergence and 6-21 steps per draw on arK, eight schools, kidiq, garch and mesquite, as good as 200
warmup iterations from uniform starts (all 8 cases pass, min ESS >= 410, no divergence).

References
----------
Zhang, L., Carpenter, B., Gelman, A. and Vehtari, A. (2022). Pathfinder: Parallel quasi-Newton variational
inference. JMLR 23(306).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.diagnostics import psis_weights
from blackjax.vi.pathfinder import approximate, sample
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer import init_to_uniform
from numpyro.infer.util import ModelInfo, ParamInfo, initialize_model

from ppzoo.inference._base import Engine, EngineResult, Options, split_data, validate_positive
from ppzoo.inference.psis import (K_THRESHOLD, PSISResult, moment_pareto_k, moment_sites, moment_warning, smooth,
                                  weights_ess)

__all__ = [
    "PathfinderOptions",
    "ENGINE",
    "INIT_OPTIONS",
    "PATHFINDER",
    "run_pathfinder",
    "pathfinder_core",
    "pathfinder_draws",
    "check_model",
    "initialize",
    "numpyro_strategy",
    "start_position",
    "pathfinder_starts",
]

Draws = dict[str, jax.Array]

#: The ``init_strategy`` value that starts MCMC chains from Pathfinder draws.
PATHFINDER = "pathfinder"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PathfinderOptions(Options):
    """Settings of the ``"pathfinder"`` engine.

    Parameters
    ----------
    num_paths : int
        Independent L-BFGS paths, each from its own start (Stan's default: 4).
    maxiter : int
        Most L-BFGS iterations per path. BlackJAX evaluates the ELBO at every one of the ``maxiter + 1``
        iterates whether or not the path stopped earlier, so this sets the cost; a path that reaches it
        without converging is reported in the warnings. (BlackJAX's own default of 30 stopped paths early.)
    maxcor : int
        L-BFGS history size: the rank of the inverse-Hessian update of each Gaussian.
    num_elbo_draws : int
        Draws per iterate to estimate its ELBO (Stan's default: 25).
    draws_per_path : int
        Draws from each path's chosen Gaussian, pooled for the importance weights (Stan's default is 1000;
        here 4000). Measured on posteriordb, seeds 0-2 (2026-12-08): with 1000 per path the resampled draws
        of sblrc-blr were up to 16% too narrow at k-hat 0.41-0.53, and one_comp_mm_elim_abs's 32% too narrow
        at k-hat 0.63 on seed 0, both without a warning; with 4000 per path sblrc's sds were within 12% on
        every seed and one_comp's k-hat rose to 0.71-0.92 (warned on every seed): a larger pool both reaches
        further into the posterior's tails and lets PSIS see the heavy tail of the weights. About 3 s more
        on those cases.
    num_draws : int
        Draws returned, resampled from the pool by the PSIS weights (with replacement). Ignored when
        ``importance_resample=False``.
    importance_resample : bool
        Resample the pool by its PSIS weights (default). ``False`` returns the whole pool, unweighted: the
        mixture of the paths' Gaussians, not posterior draws.
    ftol, gtol : float
        L-BFGS stops when the relative decrease of the objective is below ``ftol`` or the gradient norm
        below ``gtol``.
    init_strategy : callable
        Where paths start: a NumPyro init strategy (``numpyro.infer.init_to_uniform``: uniform in (-2, 2) on
        the unconstrained scale, as Stan).
    """

    num_paths: int = 4
    maxiter: int = 200
    maxcor: int = 10
    num_elbo_draws: int = 25
    draws_per_path: int = 4000
    num_draws: int = 1000
    importance_resample: bool = True
    ftol: float = 1e-5
    gtol: float = 1e-8
    init_strategy: Callable[..., Any] = init_to_uniform

    def __post_init__(self) -> None:
        for name in ("num_paths", "maxiter", "maxcor", "num_elbo_draws", "draws_per_path", "num_draws"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"Pathfinder option `{name}` must be an integer; got {value!r}.")
        validate_positive(
            "Pathfinder", num_paths=self.num_paths, maxiter=self.maxiter, maxcor=self.maxcor,
            num_elbo_draws=self.num_elbo_draws, draws_per_path=self.draws_per_path, num_draws=self.num_draws,
            ftol=self.ftol, gtol=self.gtol,
        )
        if self.num_paths * self.draws_per_path < 5:
            raise ValueError(
                f"Pathfinder options num_paths={self.num_paths} x draws_per_path={self.draws_per_path} give fewer "
                "than 5 draws to weight: PSIS cannot fit a tail. Use draws_per_path=4000."
            )
        if not isinstance(self.importance_resample, (bool, np.bool_)):
            raise TypeError(
                f"Pathfinder option `importance_resample` must be True or False; got {self.importance_resample!r}."
            )
        if not callable(self.init_strategy):
            raise TypeError(
                "Pathfinder option `init_strategy` must be a NumPyro init strategy such as "
                f"numpyro.infer.init_to_uniform; got {self.init_strategy!r}."
            )


#: Pathfinder settings behind ``init_strategy="pathfinder"``: one draw per chain, resampled from 4 paths x 100.
INIT_OPTIONS = PathfinderOptions(draws_per_path=100, num_draws=1)


def numpyro_strategy(init_strategy: Any) -> Callable[..., Any]:
    """The NumPyro init strategy behind an MCMC ``init_strategy``: ``"pathfinder"`` starts from uniform draws."""
    return init_to_uniform if isinstance(init_strategy, str) and init_strategy == PATHFINDER else init_strategy


def check_model(model: Callable[..., Any], data: Mapping[str, Any], *, engine: str = "pathfinder",
                refuse_params: bool = True) -> None:
    """Refuse a model Pathfinder cannot approximate, from an abstract trace (nothing is computed or compiled).

    ``refuse_params=False`` lets ``numpyro.param`` sites through: :func:`ppzoo.fit` has already refused
    those it was not given (``params=``), and given ones are substituted, yet still traced as param sites.

    Raises
    ------
    ValueError
        A discrete latent site (Pathfinder moves in a continuous space) or, with ``refuse_params``, a
        learnable ``numpyro.param`` site (Pathfinder does not learn parameters); the message names the site.
    """
    arrays, static = split_data(data)
    found: dict[str, list[str]] = {"discrete": [], "params": []}

    def start(site):
        # Improper (flat) priors cannot be drawn from: give every continuous latent a start value instead.
        if site["type"] == "sample" and not site["is_observed"] and not site["fn"].support.is_discrete:
            return init_to_uniform(site)
        return None

    def probe(key, arrays):
        traced = handlers.substitute(handlers.seed(model, key), substitute_fn=start)
        for name, site in handlers.trace(traced).get_trace(**arrays, **static).items():
            if site["type"] == "param":
                found["params"].append(name)
            elif site["type"] == "sample" and not site["is_observed"] and site["fn"].support.is_discrete:
                found["discrete"].append(name)
        return jnp.zeros(())

    jax.eval_shape(probe, jax.random.key(0), arrays)
    if found["discrete"]:
        raise ValueError(
            f"engine={engine!r} needs continuous latent sites, but {', '.join(map(repr, found['discrete']))} "
            "is discrete. Marginalise it out (e.g. a mixture as dist.MixtureSameFamily) or fit the model with "
            "engine='nuts' after marking it infer={'enumerate': 'parallel'}."
        )
    if found["params"] and refuse_params:
        raise ValueError(
            f"engine={engine!r} does not learn parameters, but the model has numpyro.param site(s) "
            f"{', '.join(map(repr, found['params']))}. Fit it with engine='svi' first, then pass "
            "params=svi_fit.params to hold them fixed."
        )


def pathfinder_draws(
    model: Callable[..., Any], options: PathfinderOptions
) -> Callable[[jax.Array, Mapping[str, Any]], tuple[Draws, dict[str, jax.Array]]]:
    """Multi-path Pathfinder as a pure function ``(key, data) -> (draws, extras)``.

    ``draws`` are the constrained latent and deterministic sites, ``(num_draws, ...)`` (the whole pool,
    ``(num_paths * draws_per_path, ...)``, without importance resampling). ``extras``: ``log_ratios``
    (log p - log q of the pool), ``lp`` of each returned draw, ``position`` (the returned draws on the
    unconstrained scale), ``iterations`` per path and ``elbo`` of each path's chosen Gaussian.
    """
    num_paths, per_path = options.num_paths, options.draws_per_path

    def run(key: jax.Array, data: Mapping[str, Any]) -> tuple[Draws, dict[str, jax.Array]]:
        init_key, path_key, draw_key, resample_key = jax.random.split(key, 4)
        info = initialize_model(
            jax.random.split(init_key, num_paths), model, model_kwargs=dict(data), dynamic_args=False,
            init_strategy=options.init_strategy,
        )
        potential = info.potential_fn

        def logdensity(z):
            return -potential(z)

        def one_path(key, start):
            state, path = approximate(
                key, logdensity, start, options.num_elbo_draws, maxiter=options.maxiter, maxcor=options.maxcor,
                ftol=options.ftol, gtol=options.gtol,
            )
            # L-BFGS steps taken: after it stops, the history repeats the last iterate.
            flat = jax.vmap(lambda x: ravel_pytree(x)[0])(path.path.position)
            steps = jnp.sum(jnp.any(flat[1:] != flat[:-1], axis=-1))
            return state, steps

        states, steps = jax.vmap(one_path)(jax.random.split(path_key, num_paths), info.param_info.z)

        def draw(key, state):
            z, log_q = sample(key, state, per_path)
            return z, jax.vmap(logdensity)(z), log_q

        z, log_p, log_q = jax.vmap(draw)(jax.random.split(draw_key, num_paths), states)
        pool = jax.tree.map(lambda x: x.reshape(num_paths * per_path, *x.shape[2:]), z)
        log_p = log_p.reshape(-1)
        log_ratios = log_p - log_q.reshape(-1)
        if options.importance_resample:
            # Draws outside the support (NaN density) get no weight.
            log_weights, _ = psis_weights(jnp.where(jnp.isnan(log_ratios), -jnp.inf, log_ratios))
            index = jax.random.choice(resample_key, log_ratios.shape[0], (options.num_draws,), p=jnp.exp(log_weights))
            position = jax.tree.map(lambda x: x[index], pool)
            lp = log_p[index]
        else:
            position, lp = pool, log_p
        draws = jax.vmap(info.postprocess_fn)(position)
        extras = {"log_ratios": log_ratios, "lp": lp, "position": position, "iterations": steps,
                  "elbo": states.elbo}
        if options.importance_resample:
            extras["pool_draws"] = jax.vmap(info.postprocess_fn)(pool)  # for the weighted moments' k-hat
        return draws, extras

    return run


def _warnings(extras: Mapping[str, np.ndarray], psis: PSISResult, options: PathfinderOptions,
              draws: Mapping[str, np.ndarray]) -> list[str]:
    out = []
    if psis.pareto_k > K_THRESHOLD:
        out.append(
            f"the Pathfinder approximation is unreliable for this posterior: Pareto k = {psis.pareto_k:.2f} "
            f"(> {K_THRESHOLD}; ESS of the importance weights {psis.ess:.0f} of {psis.num_draws}): its draws "
            "may be far from the posterior; use NUTS (init_strategy='pathfinder' starts it from these draws)"
        )
    elif psis.moment_k is not None and psis.moment_k > K_THRESHOLD:
        out.append(moment_warning(psis, "Pathfinder's importance-resampled draws"))
    stuck = [int(i) for i in np.flatnonzero(np.asarray(extras["iterations"]) >= options.maxiter)]
    if stuck:
        out.append(
            f"Pathfinder path(s) {', '.join(map(str, stuck))} of {options.num_paths} reached maxiter="
            f"{options.maxiter} without converging: raise maxiter."
        )
    if not np.all(np.isfinite(np.asarray(extras["elbo"]))):
        out.append("Pathfinder found no finite ELBO on some path: the model's log density may be NaN at its starts.")
    bad = sorted(k for k, v in draws.items() if not np.all(np.isfinite(np.asarray(v, dtype=np.float64))))
    if bad:
        out.append(f"Pathfinder draws of {', '.join(bad)} are not finite.")
    return out


def run_pathfinder(
    model: Callable[..., Any],
    data: Mapping[str, Any],
    key: jax.Array,
    options: PathfinderOptions,
    sites: Any,
) -> EngineResult:
    """Run multi-path Pathfinder on ``model(**data)``.

    Returns one chain of ``num_draws`` draws (every latent and deterministic site, constrained), the
    ``lp`` of each draw, and ``diagnostics={"psis": PSISResult}`` (ArviZ's PSIS of the pool's
    ``num_paths * draws_per_path`` log ratios; ``fit.pareto_k``). With the same key the draws are those
    of :func:`pathfinder_core`.

    Raises
    ------
    ValueError
        A discrete latent site, see :func:`check_model` (before anything compiles). Learnable parameters
        not given to :func:`ppzoo.fit` are refused there (``Engine.learns_params`` is false).
    """
    check_model(model, data, refuse_params=False)
    arrays, static = split_data(data)
    fn = pathfinder_draws(model, options)
    draws, extras = jax.device_get(jax.jit(lambda key, arrays: fn(key, {**arrays, **static}))(key, arrays))
    log_weights, khat = smooth(np.asarray(extras["log_ratios"]))
    moments = {k: v for k, v in extras.get("pool_draws", {}).items() if k in moment_sites(sites)}
    moment_k, moment_at = moment_pareto_k(extras["log_ratios"], moments) if moments else (None, None)
    psis = PSISResult("joint", float(khat), float(weights_ess(log_weights)), int(log_weights.size),
                      log_weights=log_weights, moment_k=moment_k, moment_at=moment_at)
    samples = {k: np.asarray(v)[None] for k, v in draws.items()}
    stats = {"lp": np.asarray(extras["lp"])[None]}
    return EngineResult(samples, stats, None, None, _warnings(extras, psis, options, samples), {"psis": psis})


def pathfinder_core(
    model: Callable[..., Any], options: PathfinderOptions, sites: Any
) -> Callable[[jax.Array, Mapping[str, Any]], Draws]:
    """One Pathfinder run as ``(key, data) -> draws of sites.latent``, ``(num_draws, *shape)`` (for SBC)."""
    fn = pathfinder_draws(model, options)
    latent = list(sites.latent)

    def one_run(key: jax.Array, data: Mapping[str, Any]) -> Draws:
        draws, _ = fn(key, data)
        return {k: draws[k] for k in latent}

    return one_run


def initialize(
    key: jax.Array, model: Callable[..., Any], data: Mapping[str, Any], init_strategy: Any
) -> ModelInfo:
    """NumPyro's :func:`~numpyro.infer.util.initialize_model` for one MCMC chain, with ``init_strategy="pathfinder"``.

    Any other ``init_strategy`` is NumPyro's. ``"pathfinder"``: the chain starts at one draw of multi-path
    Pathfinder (:data:`INIT_OPTIONS`), run with this chain's key, so chains start at distinct points; where
    Pathfinder gives no finite point the chain keeps NumPyro's uniform start. Pure and traceable.
    """
    if not (isinstance(init_strategy, str) and init_strategy == PATHFINDER):
        return initialize_model(key, model, model_kwargs=dict(data), dynamic_args=False, init_strategy=init_strategy)
    uniform_key, pathfinder_key = jax.random.split(key)
    info = initialize_model(uniform_key, model, model_kwargs=dict(data), dynamic_args=False,
                            init_strategy=init_to_uniform)
    _, extras = pathfinder_draws(model, INIT_OPTIONS)(pathfinder_key, data)
    found = jax.tree.map(lambda x: x[0], extras["position"])
    finite = jnp.all(jnp.isfinite(ravel_pytree(found)[0]))
    z = jax.tree.map(lambda a, b: jnp.where(finite, a, b), found, info.param_info.z)
    energy, grad = jax.value_and_grad(info.potential_fn)(z)
    return info._replace(param_info=ParamInfo(z, energy, grad))


def start_position(key: jax.Array, model: Callable[..., Any], data: Mapping[str, Any]) -> Any:
    """The unconstrained start of the MCMC chain whose key is ``key`` under ``init_strategy="pathfinder"``.

    For engines that take starting points rather than a NumPyro start (NumPyro's ``MCMC``): the
    ``position`` of :func:`initialize` with a key folded from the chain's own, so it draws on no stream the
    chain uses. Pure and traceable.
    """
    return initialize(jax.random.fold_in(key, _START_STREAM), model, data, PATHFINDER).param_info.z


def pathfinder_starts(model: Callable[..., Any], data: Mapping[str, Any], keys: jax.Array) -> Any:
    """:func:`start_position` for each chain key in ``keys``, stacked (chain first), in one compiled program."""
    arrays, static = split_data(data)
    starts = jax.jit(jax.vmap(lambda key, arrays: start_position(key, model, {**arrays, **static}),
                              in_axes=(0, None)))
    return starts(keys, arrays)


#: Folded into a chain's key for its Pathfinder start (any constant not used elsewhere on that key).
_START_STREAM = 0x9A7F


def _draws_per_run(options: PathfinderOptions) -> int:
    return options.num_draws if options.importance_resample else options.num_paths * options.draws_per_path


ENGINE = Engine(
    name="pathfinder",
    options=PathfinderOptions,
    run=run_pathfinder,
    core=pathfinder_core,
    is_mcmc=False,
    learns_params=False,
    library="blackjax",
    draws_per_run=_draws_per_run,
    batch_runs="vectorized",
    description="BlackJAX multi-path Pathfinder (L-BFGS Gaussians, PSIS-resampled) with its Pareto k-hat",
)
