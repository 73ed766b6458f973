"""The ``"nuts"`` engine: NumPyro's NUTS, chains in parallel across devices, ArviZ sample-stat names.

Also the mass-matrix adaptation both MCMC engines share (:data:`ADAPTATIONS`, :func:`choose_adaptation`,
:func:`blackjax_warmup`) and the post-warmup check of every chain (:func:`chain_stats_warnings`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.window_adaptation import build_schedule
from numpyro.infer import MCMC, NUTS, init_to_uniform
from numpyro.infer.util import initialize_model

from ppzoo.inference._base import Engine, EngineResult, Options, split_data, validate_positive
from ppzoo.inference.pathfinder import PATHFINDER, initialize, numpyro_strategy, pathfinder_starts, start_position

__all__ = [
    "NUTSOptions",
    "ENGINE",
    "ADAPTATIONS",
    "AUTO_DENSE_MAX_DIMS",
    "run_nuts",
    "draws_per_chain",
    "nuts_core",
    "nuts_kernel",
    "chain_stats_warnings",
    "distinct_draws",
    "choose_adaptation",
    "unconstrained_size",
    "blackjax_warmup",
    "low_rank_to_dense",
    "map_chains",
    "chain_keys",
    "low_rank_chain",
]

#: Mass-matrix adaptations of the ``"nuts"`` and ``"blackjax"`` engines (see :class:`NUTSOptions`).
ADAPTATIONS = ("auto", "diag", "dense", "low_rank")

#: ``adaptation="auto"`` adapts a dense mass matrix up to this many unconstrained dimensions, a diagonal
#: one above (see :func:`choose_adaptation` for the measurements behind it).
AUTO_DENSE_MAX_DIMS = 50


@dataclasses.dataclass(frozen=True, kw_only=True)
class NUTSOptions(Options):
    """Settings of the ``"nuts"`` and ``"blackjax"`` engines.

    Parameters
    ----------
    num_warmup, num_samples : int
        Adaptation and kept iterations per chain.
    num_chains : int
        Chains, run in parallel across the available devices (CPU host devices on CPU).
    target_accept_prob : float
        Step-size adaptation target in (0, 1).
    adaptation : {"auto", "diag", "dense", "low_rank"}
        Mass-matrix adaptation during warmup. ``"diag"``: Stan's window adaptation of a diagonal mass
        matrix. ``"dense"``: the same windows, a dense mass matrix. ``"low_rank"``: a diagonal plus low-rank
        mass matrix fitted by minimising the Fisher divergence (Seyboldt, Carlson & Carpenter 2026; BlackJAX's
        ``window_adaptation_low_rank`` with nutpie's accumulating buffer and gradient-based start; the
        ``"nuts"`` engine runs this warmup on NumPyro's potential, then samples with NumPyro's NUTS on the
        adapted metric as a dense matrix). ``"auto"`` (default): chosen by the number of unconstrained
        dimensions, see :func:`choose_adaptation`.
    dense_mass : bool
        Kept for old code: ``dense_mass=True`` is ``adaptation="dense"``.
    max_tree_depth : int
        Maximal tree depth (a trajectory has at most ``2**max_tree_depth - 1`` leapfrog steps).
    progress_bar : bool
        Show progress (NumPyro engine only; BlackJAX runs the chains as one compiled program).
    init_strategy : callable or "pathfinder"
        Where chains start: a NumPyro init strategy (``numpyro.infer.init_to_uniform`` by default,
        ``init_to_median``, ``init_to_value(values={...})``), or ``"pathfinder"``: each chain at its own draw
        of multi-path Pathfinder (:func:`ppzoo.inference.pathfinder.initialize`), near the posterior's bulk,
        so warmup has less to travel. Stiff ODE models need a start near the mode.
    """

    num_warmup: int = 1000
    num_samples: int = 1000
    num_chains: int = 4
    target_accept_prob: float = 0.8
    adaptation: str = "auto"
    dense_mass: bool = False
    max_tree_depth: int = 10
    progress_bar: bool = False
    init_strategy: Callable[..., Any] | str = init_to_uniform

    def __post_init__(self) -> None:
        if not isinstance(self.adaptation, str) or self.adaptation not in ADAPTATIONS:
            raise ValueError(
                f"NUTS option `adaptation` must be one of {', '.join(map(repr, ADAPTATIONS))}; got "
                f"{self.adaptation!r}. Use 'auto' unless you have measured otherwise; 'dense' or 'low_rank' for "
                "correlated posteriors."
            )
        if not isinstance(self.dense_mass, (bool, np.bool_)):
            raise TypeError(f"NUTS option `dense_mass` must be True or False; got {self.dense_mass!r}.")
        if self.dense_mass:
            if self.adaptation not in ("auto", "dense"):
                raise ValueError(
                    f"NUTS options `dense_mass=True` and `adaptation={self.adaptation!r}` disagree: dense_mass=True "
                    "is the old spelling of adaptation='dense'; pass only adaptation."
                )
            object.__setattr__(self, "adaptation", "dense")
        if not (callable(self.init_strategy) or (isinstance(self.init_strategy, str) and self.init_strategy == PATHFINDER)):
            raise TypeError(
                "NUTS option `init_strategy` must be a NumPyro init strategy such as "
                f"numpyro.infer.init_to_median, or 'pathfinder'; got {self.init_strategy!r}."
            )
        validate_positive(
            "NUTS", num_samples=self.num_samples, num_chains=self.num_chains, max_tree_depth=self.max_tree_depth
        )
        if isinstance(self.num_warmup, bool) or not isinstance(self.num_warmup, (int, np.integer)) or self.num_warmup < 0:
            raise ValueError(f"NUTS option `num_warmup` must be a non-negative integer; got {self.num_warmup!r}.")
        for name in ("num_samples", "num_chains", "max_tree_depth"):
            if not isinstance(getattr(self, name), (int, np.integer)):
                raise TypeError(f"NUTS option `{name}` must be an integer; got {getattr(self, name)!r}.")
        if not 0.0 < self.target_accept_prob < 1.0:
            raise ValueError(
                f"NUTS option `target_accept_prob` must be in (0, 1); got {self.target_accept_prob!r}. "
                "Typical values: 0.8, or 0.95 for hard geometry."
            )


def tree_depth_from_steps(num_steps: np.ndarray) -> np.ndarray:
    """Tree depth of a NUTS trajectory with ``num_steps`` leapfrog steps (``2**d - 1`` at most)."""
    return np.ceil(np.log2(np.asarray(num_steps, dtype=np.float64) + 1.0)).astype(np.int64)


def choose_adaptation(adaptation: str, num_dims: int) -> str:
    """The mass-matrix adaptation to run: ``adaptation`` itself, or the rule behind ``"auto"``.

    ``"auto"`` is ``"dense"`` up to :data:`AUTO_DENSE_MAX_DIMS` unconstrained dimensions and ``"diag"``
    (the previous default) above: low-rank is not chosen automatically until it is measured at scale (see the
    last sentences below; ask for it with ``adaptation="low_rank"``).

    Measured 2026-12-07 (float32, 4 chains x 1000 + 1000 unless said; two CPU cores shared with other jobs,
    so only leapfrog steps per draw and ESS per gradient are compared, not seconds):

    ======================  ====  ===================  =========================  ===========================
    posterior               dims  diag                 dense                      low_rank
    ======================  ====  ===================  =========================  ===========================
    Gaussian, cond. 1e4     6     94-127 steps/draw    5-7 steps/draw             5-6 steps/draw
    (tests, 4 x 300 + 200)
    kidiq                   5     82-87 steps/draw     5.7-5.8 steps/draw, 25-34  5-6 steps/draw, 43-47 ESS
                                                       ESS per 1000 gradients     per 1000 gradients (1 chain)
    diamonds                26    1023 steps/draw      14.5 steps/draw, 23 ESS    did not finish in 13 min
                                  (max tree depth)     per 1000 gradients         (rank <= 10 of 26 collinear
                                                                                  directions)
    hier. logistic, 200     204                        did not finish in 20 min   pending
    groups
    ======================  ====  ===================  =========================  ===========================

    (Diagonal: kidiq from the README's previous NUTS table, diamonds from benchmarks/reference_posteriors.py;
    low-rank on kidiq: BlackJAX 1.7.1, one chain, PERFORMANCE.md.) Dense wins while its O(d^2) estimate is
    well supported by Stan's windows (the last slow window is 500 of 1000 warmup draws) and the posterior's
    correlations need more than the low rank's 10 directions, as on diamonds; at hundreds of dimensions the
    dense estimate and its O(d^2) leapfrog steps stop paying, and low-rank plus diagonal, O(d k) per step,
    is the one that scales. The threshold of 50 lies above the largest case measured where dense won (26);
    at 204 dimensions no run finished here under a load of ~25 on two cores (dense not in 20 min, low-rank
    pending in benchmarks/nuts_speed.py), and one low-rank run at 204 dimensions was still in its first engine
    after 50 minutes. So above 50 dimensions ``"auto"`` keeps the diagonal adaptation the zoo's large NUTS runs
    (a few hundred latents of a neural decoder) were measured with, until low-rank is measured there.
    """
    if adaptation != "auto":
        return adaptation
    return "dense" if num_dims <= AUTO_DENSE_MAX_DIMS else "diag"


def unconstrained_size(model: Callable[..., Any], data: Mapping[str, Any], init_strategy: Callable[..., Any]) -> int:
    """Number of unconstrained dimensions NUTS moves in (shapes only: nothing is computed or compiled)."""
    z = jax.eval_shape(
        lambda key: initialize_model(
            key, model, model_kwargs=dict(data), dynamic_args=False, init_strategy=numpyro_strategy(init_strategy)
        ).param_info.z,
        jax.random.key(0),
    )
    return int(sum(np.prod(leaf.shape, dtype=int) for leaf in jax.tree.leaves(z)))


def _window_schedule(num_steps: int) -> np.ndarray:
    # Stan's windows as a constant: BlackJAX's low-rank warmup reads the schedule with NumPy, which a
    # schedule built inside a trace (SBC's core under jit) would not allow.
    with jax.ensure_compile_time_eval():
        return np.asarray(build_schedule(num_steps))


def blackjax_warmup(
    logdensity: Callable[[Any], jax.Array], position: Any, options: "NUTSOptions", adaptation: str, key: jax.Array
) -> tuple[Any, dict[str, Any], jax.Array]:
    """BlackJAX's warmup of step size and mass matrix (``adaptation``: "diag", "dense" or "low_rank").

    Returns the last warmup state, the NUTS parameters (``step_size``, ``inverse_mass_matrix``,
    ``max_num_doublings``) and the number of gradient evaluations the warmup took (leapfrog steps). "low_rank" is :func:`blackjax.window_adaptation_low_rank` with
    ``buffer_policy="accumulating"`` and ``gradient_based_init=True``: the default ``"reset"`` policy
    returned a metric on which the sampler was stuck on kidiq (acceptance ~1e-94, one distinct draw).
    """
    common = dict(target_acceptance_rate=options.target_accept_prob, max_num_doublings=options.max_tree_depth)
    if adaptation == "low_rank":
        warmup = blackjax.window_adaptation_low_rank(
            blackjax.nuts, logdensity, buffer_policy="accumulating", gradient_based_init=True,
            schedule_fn=_window_schedule, **common,
        )
    else:
        warmup = blackjax.window_adaptation(
            blackjax.nuts, logdensity, is_mass_matrix_diagonal=adaptation == "diag", **common
        )
    (state, parameters), info = warmup.run(key, position, num_steps=options.num_warmup)
    num_gradients = jnp.sum(info.info.num_integration_steps)
    return state, {**parameters, "max_num_doublings": options.max_tree_depth}, num_gradients


def low_rank_to_dense(inverse_mass_matrix: Any) -> jax.Array:
    """The dense inverse mass matrix diag(s) (I + U (L - I) U^T) diag(s) of BlackJAX's low-rank metric."""
    sigma, u, lam = inverse_mass_matrix.sigma, inverse_mass_matrix.U, inverse_mass_matrix.lam
    inner = jnp.eye(sigma.shape[0], dtype=sigma.dtype) + (u * (lam - 1.0)) @ u.T
    return sigma[:, None] * inner * sigma[None, :]


def map_chains(
    chain: Callable[[jax.Array, Mapping[str, Any]], tuple[dict, dict]],
    data: Mapping[str, Any],
    keys: jax.Array,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """Run ``chain(keys[i], data)`` for every key, ``pmap``-ed over the devices in groups of equal size.

    Returns the stacked outputs (chain first) and the number of groups. Extra keys pad the last group so
    that every call has the same shape (one compile); their chains are dropped.
    """
    num_chains = keys.shape[0]
    arrays, static = split_data(data)
    group = min(jax.local_device_count(), num_chains)
    num_groups = -(-num_chains // group)
    if num_groups * group > num_chains:
        keys = jnp.concatenate([keys, jax.random.split(keys[-1], num_groups * group - num_chains)])
    mapped = jax.pmap(lambda key, arrays: chain(key, {**arrays, **static}), in_axes=(0, None))
    parts = [jax.device_get(mapped(keys[g * group:(g + 1) * group], arrays)) for g in range(num_groups)]
    draws = {k: np.concatenate([p[0][k] for p in parts])[:num_chains] for k in parts[0][0]}
    stats = {k: np.concatenate([p[1][k] for p in parts])[:num_chains] for k in parts[0][1]}
    return draws, stats, num_groups


#: A chain is reported stuck below this mean acceptance rate or this fraction of distinct draws. A NUTS
#: chain that moves accepts a new point with probability ~ target_accept_prob and repeats a draw rarely;
#: the stuck low-rank metric the issue found had acceptance ~1e-94 and one distinct draw in 1000.
STUCK_ACCEPTANCE = 0.1
STUCK_DISTINCT_FRACTION = 0.5


def distinct_draws(samples: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per chain, 1 + the number of draws that differ from the one before in any site (draws (chain, draw, ...)).

    Consecutive draws, not unique values: a float32 log density of a large model has too few distinct
    values to count moves by, and a NUTS chain that moves never returns exactly to an earlier point.
    """
    moved = None
    for value in samples.values():
        value = np.asarray(value)
        flat = value.reshape(value.shape[:2] + (-1,))
        step = np.any(flat[:, 1:] != flat[:, :-1], axis=-1)
        moved = step if moved is None else moved | step
    return 1 + moved.sum(axis=1)


def chain_stats_warnings(
    stats: Mapping[str, np.ndarray],
    max_tree_depth: int,
    adaptation: str | None = None,
    samples: Mapping[str, np.ndarray] | None = None,
) -> list[str]:
    """Plain-language warnings a user must see about a set of NUTS chains (stats are (chain, draw)).

    Besides divergences and saturated trees, every chain is checked after warmup: a mean acceptance rate
    below :data:`STUCK_ACCEPTANCE` or fewer than :data:`STUCK_DISTINCT_FRACTION` of its draws distinct
    (:func:`distinct_draws` of ``samples``; without them, distinct values of ``lp``) is a stuck chain,
    named with the ``adaptation`` that produced its metric.
    """
    out = []
    acceptance = np.asarray(stats["acceptance_rate"], dtype=np.float64)
    lp = np.asarray(stats["lp"])
    if samples:
        distinct_per_chain = distinct_draws(samples)
    else:
        distinct_per_chain = np.array([np.unique(chain).size for chain in lp])
    for c in range(lp.shape[0]):
        mean_accept = float(np.mean(acceptance[c]))
        distinct = int(distinct_per_chain[c])
        if mean_accept < STUCK_ACCEPTANCE or distinct < STUCK_DISTINCT_FRACTION * lp.shape[1]:
            out.append(
                f"chain {c} is stuck after warmup (adaptation={adaptation!r}): mean acceptance rate "
                f"{mean_accept:.2g}, {distinct} distinct draws of {lp.shape[1]}. Its draws do not represent the "
                "posterior: try another adaptation (adaptation='diag' is the most robust), more warmup, or a "
                "start nearer the mode (init_strategy)."
            )
    diverging = np.asarray(stats["diverging"])
    if diverging.any():
        out.append(
            f"{int(diverging.sum())} divergent transitions ({diverging.mean():.1%} of draws): the posterior "
            "may be biased; raise target_accept_prob or reparameterize."
        )
    saturated = np.asarray(stats["tree_depth"]) >= max_tree_depth
    if saturated.mean() > 0.01:
        out.append(f"{saturated.mean():.1%} of draws hit max_tree_depth={max_tree_depth}: sampling is inefficient.")
    return out


def nuts_kernel(model: Callable[..., Any], options: NUTSOptions, adaptation: str = "diag") -> NUTS:
    """NumPyro's NUTS kernel on ``model`` with the options' settings and window adaptation of a ``"diag"`` or
    ``"dense"`` mass matrix (shared by :func:`run_nuts` and the core)."""
    return NUTS(
        model,
        target_accept_prob=options.target_accept_prob,
        dense_mass=adaptation == "dense",
        max_tree_depth=options.max_tree_depth,
        init_strategy=numpyro_strategy(options.init_strategy),
    )


def _numpyro_stats(extra: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "lp": -np.asarray(extra["potential_energy"]),
        "diverging": np.asarray(extra["diverging"]).astype(bool),
        "acceptance_rate": np.asarray(extra["accept_prob"]),
        "n_steps": np.asarray(extra["num_steps"]).astype(np.int64),
        "tree_depth": tree_depth_from_steps(extra["num_steps"]),
        "energy": np.asarray(extra["energy"]),
        "step_size": np.asarray(extra["step_size"]),
    }


def low_rank_chain(
    model: Callable[..., Any], options: NUTSOptions
) -> Callable[[jax.Array, Mapping[str, Any]], tuple[dict[str, jax.Array], dict[str, jax.Array]]]:
    """One NumPyro NUTS chain after BlackJAX's low-rank warmup, ``(key, data) -> (draws, extra fields)``.

    NumPyro's :func:`~numpyro.infer.util.initialize_model` gives the start (``options.init_strategy``) and
    the potential; :func:`blackjax_warmup` adapts step size and a low-rank metric on it; NumPyro's NUTS
    kernel then samples from the adapted position with that metric as a fixed dense inverse mass matrix
    and the adapted step size (no NumPyro warmup).
    """

    def chain(key: jax.Array, data: Mapping[str, Any]) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
        data = dict(data)
        init_key, warm_key, sample_key = jax.random.split(key, 3)
        info = initialize(init_key, model, data, options.init_strategy)
        potential = info.potential_fn
        state, parameters, _ = blackjax_warmup(
            lambda z: -potential(z), info.param_info.z, options, "low_rank", warm_key
        )
        kernel = NUTS(
            model, target_accept_prob=options.target_accept_prob, max_tree_depth=options.max_tree_depth,
            dense_mass=True, inverse_mass_matrix=low_rank_to_dense(parameters["inverse_mass_matrix"]),
            step_size=parameters["step_size"], adapt_step_size=False, adapt_mass_matrix=False,
        )
        hmc_state = kernel.init(sample_key, 0, init_params=state.position, model_kwargs=data)

        def transition(hmc_state, _):
            hmc_state = kernel.sample(hmc_state, (), data)
            extra = {
                "potential_energy": hmc_state.potential_energy,
                "diverging": hmc_state.diverging,
                "accept_prob": hmc_state.accept_prob,
                "num_steps": hmc_state.num_steps,
                "energy": hmc_state.energy,
                "step_size": hmc_state.adapt_state.step_size,
            }
            return hmc_state, (hmc_state.z, extra)

        _, (positions, extra) = jax.lax.scan(transition, hmc_state, None, length=options.num_samples)
        return jax.vmap(info.postprocess_fn)(positions), extra

    return chain


def chain_keys(key: jax.Array, num_chains: int) -> jax.Array:
    """The key of each chain, as NumPyro's ``MCMC`` makes them: ``key`` for one chain, else ``split(key, n)``."""
    return key[None] if num_chains == 1 else jax.random.split(key, num_chains)


def run_nuts(
    model: Callable[..., Any],
    data: Mapping[str, Any],
    key: jax.Array,
    options: NUTSOptions,
    sites: Any,
) -> EngineResult:
    """Run NumPyro's NUTS on ``model(**data)``.

    Chains run in parallel across ``jax.local_device_count()`` devices when there are enough of them
    (one compiled program for all chains); otherwise one after another, with a warning. ``sites`` is not
    needed: NumPyro returns every latent and deterministic site. With ``"low_rank"`` adaptation, chain
    ``i`` is :func:`low_rank_chain` with key ``chain_keys(key, n)[i]``, ``pmap``-ed over the devices.
    """
    adaptation = choose_adaptation(options.adaptation, unconstrained_size(model, data, options.init_strategy))
    warnings = []
    if adaptation == "low_rank":
        samples, extra, num_groups = map_chains(low_rank_chain(model, options), data,
                                                chain_keys(key, options.num_chains))
        if num_groups > 1:
            warnings.append(f"{options.num_chains} chains ran in {num_groups} groups: only "
                            f"{jax.local_device_count()} device(s).")
    else:
        parallel = jax.local_device_count() >= options.num_chains
        mcmc = MCMC(
            nuts_kernel(model, options, adaptation),
            num_warmup=options.num_warmup,
            num_samples=options.num_samples,
            num_chains=options.num_chains,
            chain_method="parallel" if parallel else "sequential",
            progress_bar=options.progress_bar and not parallel,
        )
        mcmc.run(
            key,
            init_params=_pathfinder_init_params(model, data, key, options),
            extra_fields=("potential_energy", "diverging", "accept_prob", "num_steps", "energy",
                          "adapt_state.step_size"),
            **data,
        )
        samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
        extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
        extra["step_size"] = extra.pop("adapt_state.step_size")
        if not parallel:
            warnings.append(
                f"{options.num_chains} chains ran one after another: only {jax.local_device_count()} device(s). "
                "Import ppzoo before anything starts JAX to get parallel CPU chains."
            )
    stats = _numpyro_stats(extra)
    warnings = chain_stats_warnings(stats, options.max_tree_depth, adaptation, samples) + warnings
    return EngineResult(samples, stats, None, None, warnings)


def _pathfinder_init_params(model: Callable[..., Any], data: Mapping[str, Any], key: jax.Array,
                            options: NUTSOptions) -> Any:
    """``init_strategy="pathfinder"``: each chain's start (chain key as NumPyro's ``MCMC`` splits it), else None."""
    if not (isinstance(options.init_strategy, str) and options.init_strategy == PATHFINDER):
        return None
    starts = pathfinder_starts(model, data, chain_keys(key, options.num_chains))
    return jax.tree.map(lambda x: x[0], starts) if options.num_chains == 1 else starts


def nuts_core(
    model: Callable[..., Any], options: NUTSOptions, sites: Any
) -> Callable[[jax.Array, Mapping[str, Any]], dict[str, jax.Array]]:
    """One NUTS chain as a pure function ``(key, data) -> draws of sites.latent``, ``(num_samples, *shape)``.

    The same kernel, adaptation and settings as :func:`run_nuts` (``init_strategy`` included). Window
    adaptation ("diag", "dense") is driven the way NumPyro's ``MCMC`` drives one chain: ``kernel.init`` then
    ``kernel.sample`` for the warmup and kept iterations; "low_rank" is :func:`low_rank_chain`. With the
    same key it reproduces a one-chain :func:`run_nuts` to float rounding.
    """
    latent = list(sites.latent)

    def one_chain(key: jax.Array, data: Mapping[str, Any]) -> dict[str, jax.Array]:
        data = dict(data)
        adaptation = choose_adaptation(options.adaptation, unconstrained_size(model, data, options.init_strategy))
        if adaptation == "low_rank":
            draws, _ = low_rank_chain(model, options)(key, data)
            return {k: draws[k] for k in latent}
        kernel = nuts_kernel(model, options, adaptation)  # per trace: the kernel keeps the traced model's functions
        init_params = start_position(key, model, data) if options.init_strategy == PATHFINDER else None
        state = kernel.init(key, options.num_warmup, init_params=init_params, model_kwargs=data)

        def transition(state, _):
            state = kernel.sample(state, (), data)
            return state, state.z

        state, _ = jax.lax.scan(transition, state, None, length=options.num_warmup)
        _, positions = jax.lax.scan(transition, state, None, length=options.num_samples)
        constrained = jax.vmap(kernel.postprocess_fn((), data))(positions)
        return {k: constrained[k] for k in latent}

    return one_chain


def draws_per_chain(options: NUTSOptions) -> int:
    """Draws one chain returns (both MCMC engines' ``Engine.draws_per_run``)."""
    return options.num_samples


ENGINE = Engine(
    name="nuts",
    options=NUTSOptions,
    run=run_nuts,
    core=nuts_core,
    is_mcmc=True,
    learns_params=False,
    library="numpyro",
    draws_per_run=draws_per_chain,
    batch_runs="devices",
    description="NumPyro NUTS with diagonal, dense or low-rank mass-matrix adaptation",
)
