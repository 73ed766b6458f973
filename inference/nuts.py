"""The ``"nuts"`` engine: NumPyro's NUTS, chains in parallel across devices, ArviZ sample-stat names."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from numpyro.infer import MCMC, NUTS, init_to_uniform

from ppzoo.inference._base import Engine, EngineResult, Options, validate_positive

__all__ = ["NUTSOptions", "ENGINE", "run_nuts", "nuts_core", "nuts_kernel", "chain_stats_warnings"]


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
    dense_mass : bool
        Adapt a dense mass matrix instead of a diagonal one.
    max_tree_depth : int
        Maximal tree depth (a trajectory has at most ``2**max_tree_depth - 1`` leapfrog steps).
    progress_bar : bool
        Show progress (NumPyro engine only; BlackJAX runs the chains as one compiled program).
    init_strategy : callable
        Where chains start: a NumPyro init strategy (``numpyro.infer.init_to_uniform`` by default,
        ``init_to_median``, ``init_to_value(values={...})``). Stiff ODE models need a start near the mode.
    """

    num_warmup: int = 1000
    num_samples: int = 1000
    num_chains: int = 4
    target_accept_prob: float = 0.8
    dense_mass: bool = False
    max_tree_depth: int = 10
    progress_bar: bool = False
    init_strategy: Callable[..., Any] = init_to_uniform

    def __post_init__(self) -> None:
        if not callable(self.init_strategy):
            raise TypeError(
                "NUTS option `init_strategy` must be a NumPyro init strategy such as "
                f"numpyro.infer.init_to_median; got {self.init_strategy!r}."
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


def chain_stats_warnings(stats: Mapping[str, np.ndarray], max_tree_depth: int) -> list[str]:
    """Plain-language warnings a user must see about a set of NUTS chains."""
    out = []
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


def nuts_kernel(model: Callable[..., Any], options: NUTSOptions) -> NUTS:
    """NumPyro's NUTS kernel on ``model`` with the options' settings (shared by :func:`run_nuts` and the core)."""
    return NUTS(
        model,
        target_accept_prob=options.target_accept_prob,
        dense_mass=options.dense_mass,
        max_tree_depth=options.max_tree_depth,
        init_strategy=options.init_strategy,
    )


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
    needed: NumPyro returns every latent and deterministic site.
    """
    parallel = jax.local_device_count() >= options.num_chains
    mcmc = MCMC(
        nuts_kernel(model, options),
        num_warmup=options.num_warmup,
        num_samples=options.num_samples,
        num_chains=options.num_chains,
        chain_method="parallel" if parallel else "sequential",
        progress_bar=options.progress_bar and not parallel,
    )
    mcmc.run(
        key,
        extra_fields=("potential_energy", "diverging", "accept_prob", "num_steps", "energy", "adapt_state.step_size"),
        **data,
    )
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    stats = {
        "lp": -extra["potential_energy"],
        "diverging": extra["diverging"].astype(bool),
        "acceptance_rate": extra["accept_prob"],
        "n_steps": extra["num_steps"].astype(np.int64),
        "tree_depth": tree_depth_from_steps(extra["num_steps"]),
        "energy": extra["energy"],
        "step_size": extra["adapt_state.step_size"],
    }
    warnings = chain_stats_warnings(stats, options.max_tree_depth)
    if not parallel:
        warnings.append(
            f"{options.num_chains} chains ran one after another: only {jax.local_device_count()} device(s). "
            "Import ppzoo before anything starts JAX to get parallel CPU chains."
        )
    return EngineResult(samples, stats, None, None, warnings)


def nuts_core(
    model: Callable[..., Any], options: NUTSOptions, sites: Any
) -> Callable[[jax.Array, Mapping[str, Any]], dict[str, jax.Array]]:
    """One NUTS chain as a pure function ``(key, data) -> draws of sites.latent``, ``(num_samples, *shape)``.

    The same kernel and settings as :func:`run_nuts` (``init_strategy`` included), driven the way NumPyro's
    ``MCMC`` drives one chain: ``kernel.init`` then ``kernel.sample`` for the warmup and kept iterations.
    With the same key it reproduces a one-chain :func:`run_nuts` to float rounding.
    """
    latent = list(sites.latent)

    def one_chain(key: jax.Array, data: Mapping[str, Any]) -> dict[str, jax.Array]:
        data = dict(data)
        kernel = nuts_kernel(model, options)  # per trace: the kernel keeps the traced model's functions
        state = kernel.init(key, options.num_warmup, model_kwargs=data)

        def transition(state, _):
            state = kernel.sample(state, (), data)
            return state, state.z

        state, _ = jax.lax.scan(transition, state, None, length=options.num_warmup)
        _, positions = jax.lax.scan(transition, state, None, length=options.num_samples)
        constrained = jax.vmap(kernel.postprocess_fn((), data))(positions)
        return {k: constrained[k] for k in latent}

    return one_chain


def _num_samples(options: NUTSOptions) -> int:
    return options.num_samples


ENGINE = Engine(
    name="nuts",
    options=NUTSOptions,
    run=run_nuts,
    core=nuts_core,
    is_mcmc=True,
    learns_params=False,
    library="numpyro",
    draws_per_run=_num_samples,
    batch_runs="devices",
    description="NumPyro NUTS with window adaptation",
)
