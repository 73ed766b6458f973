"""The ``"blackjax"`` engine: BlackJAX NUTS (diagonal, dense or low-rank adaptation) on the log density NumPyro derives from the model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

from ppzoo.inference._base import Engine, EngineResult
from ppzoo.inference.pathfinder import initialize
from ppzoo.inference.nuts import (
    NUTSOptions,
    blackjax_warmup,
    chain_stats_warnings,
    choose_adaptation,
    draws_per_chain,
    map_chains,
    unconstrained_size,
)

__all__ = ["ENGINE", "run_blackjax", "blackjax_core", "blackjax_chain", "one_chain"]

Draws = dict[str, jax.Array]


def one_chain(
    logdensity: Callable[[Any], jax.Array],
    postprocess: Callable[[Any], Draws],
    options: NUTSOptions,
    key: jax.Array,
    position: Any,
    adaptation: str | None = None,
) -> tuple[Draws, dict[str, jax.Array]]:
    """Warmup (:func:`~ppzoo.inference.nuts.blackjax_warmup`), then ``num_samples`` NUTS steps from
    ``position`` (unconstrained space).

    ``adaptation`` is "diag", "dense" or "low_rank"; ``None`` resolves ``options.adaptation`` by the
    size of ``position`` (:func:`~ppzoo.inference.nuts.choose_adaptation`). Returns the constrained draws
    (``postprocess`` of each position) and the per-draw statistics under ArviZ's names, each
    ``(num_samples, ...)``.
    """
    if adaptation is None:
        size = sum(int(np.prod(jnp.shape(leaf))) for leaf in jax.tree.leaves(position))
        adaptation = choose_adaptation(options.adaptation, size)
    warm_key, sample_key = jax.random.split(key)
    state, parameters, _ = blackjax_warmup(logdensity, position, options, adaptation, warm_key)
    step = blackjax.nuts(logdensity, **parameters).step

    def body(state, step_key):
        state, info = step(step_key, state)
        stats = {
            "lp": state.logdensity,
            "diverging": info.is_divergent,
            "acceptance_rate": info.acceptance_rate,
            "n_steps": info.num_integration_steps,
            "tree_depth": info.num_trajectory_expansions,
            "energy": info.energy,
        }
        return state, (postprocess(state.position), stats)

    _, (draws, stats) = jax.lax.scan(body, state, jax.random.split(sample_key, options.num_samples))
    stats["step_size"] = jnp.full((options.num_samples,), parameters["step_size"])
    return draws, stats


def blackjax_chain(
    model: Callable[..., Any], options: NUTSOptions
) -> Callable[[jax.Array, Mapping[str, Any]], tuple[Draws, dict[str, jax.Array]]]:
    """One chain as a pure function ``(key, data) -> (draws, stats)``: start, adapt, sample.

    NumPyro's :func:`~numpyro.infer.util.initialize_model` gives the start (``options.init_strategy``; for
    ``"pathfinder"``, :func:`ppzoo.inference.pathfinder.initialize`),
    the potential in the unconstrained space and the map back to constrained values (deterministic sites
    included); :func:`one_chain` does the rest. :func:`run_blackjax` maps it over chains, SBC over
    simulations.
    """

    def chain(key: jax.Array, data: Mapping[str, Any]) -> tuple[Draws, dict[str, jax.Array]]:
        init_key, run_key = jax.random.split(key)
        info = initialize(init_key, model, data, options.init_strategy)
        potential = info.potential_fn
        return one_chain(lambda position: -potential(position), info.postprocess_fn, options, run_key,
                         info.param_info.z)

    return chain


def run_blackjax(
    model: Callable[..., Any],
    data: Mapping[str, Any],
    key: jax.Array,
    options: NUTSOptions,
    sites: Any,
) -> EngineResult:
    """Run BlackJAX NUTS (window adaptation) on ``model(**data)``.

    Chain ``i`` is :func:`blackjax_chain` with key ``split(key, n)[i]``. Chains are mapped over devices
    with ``pmap`` (:func:`~ppzoo.inference.nuts.map_chains`); more chains than devices run in groups
    through the same compiled program. ``sites`` is not needed: every latent and deterministic site is
    returned.
    """
    num_chains = options.num_chains
    adaptation = choose_adaptation(options.adaptation, unconstrained_size(model, data, options.init_strategy))
    samples, stats, num_groups = map_chains(blackjax_chain(model, options), data, jax.random.split(key, num_chains))
    stats["diverging"] = stats["diverging"].astype(bool)
    stats["n_steps"] = stats["n_steps"].astype(np.int64)
    stats["tree_depth"] = stats["tree_depth"].astype(np.int64)
    warnings = chain_stats_warnings(stats, options.max_tree_depth, adaptation, samples)
    if num_groups > 1:
        warnings.append(
            f"{num_chains} chains ran in {num_groups} groups: only {jax.local_device_count()} device(s)."
        )
    return EngineResult(samples, stats, None, None, warnings)


def blackjax_core(
    model: Callable[..., Any], options: NUTSOptions, sites: Any
) -> Callable[[jax.Array, Mapping[str, Any]], Draws]:
    """One chain of :func:`blackjax_chain` as ``(key, data) -> draws of sites.latent``, ``(num_samples, *shape)``.

    Chain ``i`` of :func:`run_blackjax` with key ``k`` is this function with key ``split(k, n)[i]``.
    """
    chain = blackjax_chain(model, options)
    latent = list(sites.latent)

    def one_run(key: jax.Array, data: Mapping[str, Any]) -> Draws:
        draws, _ = chain(key, data)
        return {k: draws[k] for k in latent}

    return one_run


ENGINE = Engine(
    name="blackjax",
    options=NUTSOptions,
    run=run_blackjax,
    core=blackjax_core,
    is_mcmc=True,
    learns_params=False,
    library="blackjax",
    draws_per_run=draws_per_chain,
    batch_runs="devices",
    description="BlackJAX NUTS with diagonal, dense or low-rank mass-matrix adaptation",
)
