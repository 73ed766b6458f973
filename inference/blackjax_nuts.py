"""The ``"blackjax"`` engine: BlackJAX NUTS with window adaptation on the log density NumPyro derives from the model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.util import initialize_model

from ppzoo.inference._base import Engine, EngineResult, split_data
from ppzoo.inference.nuts import NUTSOptions, chain_stats_warnings

__all__ = ["ENGINE", "run_blackjax", "blackjax_core", "blackjax_chain", "one_chain"]

Draws = dict[str, jax.Array]


def one_chain(
    logdensity: Callable[[Any], jax.Array],
    postprocess: Callable[[Any], Draws],
    options: NUTSOptions,
    key: jax.Array,
    position: Any,
) -> tuple[Draws, dict[str, jax.Array]]:
    """Window adaptation, then ``num_samples`` NUTS steps from ``position`` (unconstrained space).

    Returns the constrained draws (``postprocess`` of each position) and the per-draw statistics under
    ArviZ's names, each ``(num_samples, ...)``.
    """
    warm_key, sample_key = jax.random.split(key)
    adaptation = blackjax.window_adaptation(
        blackjax.nuts,
        logdensity,
        is_mass_matrix_diagonal=not options.dense_mass,
        target_acceptance_rate=options.target_accept_prob,
        max_num_doublings=options.max_tree_depth,
    )
    (state, parameters), _ = adaptation.run(warm_key, position, num_steps=options.num_warmup)
    parameters = {**parameters, "max_num_doublings": options.max_tree_depth}
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

    NumPyro's :func:`~numpyro.infer.util.initialize_model` gives the start (``options.init_strategy``),
    the potential in the unconstrained space and the map back to constrained values (deterministic sites
    included); :func:`one_chain` does the rest. :func:`run_blackjax` maps it over chains, SBC over
    simulations.
    """

    def chain(key: jax.Array, data: Mapping[str, Any]) -> tuple[Draws, dict[str, jax.Array]]:
        init_key, run_key = jax.random.split(key)
        info = initialize_model(
            init_key, model, model_kwargs=dict(data), dynamic_args=False, init_strategy=options.init_strategy
        )
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
    with ``pmap``; more chains than devices run in groups through the same compiled program. ``sites`` is
    not needed: every latent and deterministic site is returned.
    """
    num_chains = options.num_chains
    chain = blackjax_chain(model, options)
    arrays, static = split_data(data)

    def chain_on(key, arrays):
        return chain(key, {**arrays, **static})

    group = min(jax.local_device_count(), num_chains)
    num_groups = -(-num_chains // group)
    # Extra keys pad the last group so every call has the same shape (one compile); their chains are dropped.
    keys = jax.random.split(key, num_groups * group)
    mapped = jax.pmap(chain_on, in_axes=(0, None))
    draws_parts, stats_parts = [], []
    for g in range(num_groups):
        d, s = mapped(keys[g * group:(g + 1) * group], arrays)
        draws_parts.append(jax.device_get(d))
        stats_parts.append(jax.device_get(s))
    samples = {k: np.concatenate([p[k] for p in draws_parts])[:num_chains] for k in draws_parts[0]}
    stats = {k: np.concatenate([p[k] for p in stats_parts])[:num_chains] for k in stats_parts[0]}
    stats["diverging"] = stats["diverging"].astype(bool)
    stats["n_steps"] = stats["n_steps"].astype(np.int64)
    stats["tree_depth"] = stats["tree_depth"].astype(np.int64)
    warnings = chain_stats_warnings(stats, options.max_tree_depth)
    if num_groups > 1:
        warnings.append(
            f"{num_chains} chains ran in {num_groups} groups of {group}: only {jax.local_device_count()} device(s)."
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


def _num_samples(options: NUTSOptions) -> int:
    return options.num_samples


ENGINE = Engine(
    name="blackjax",
    options=NUTSOptions,
    run=run_blackjax,
    core=blackjax_core,
    is_mcmc=True,
    learns_params=False,
    library="blackjax",
    draws_per_run=_num_samples,
    batch_runs="devices",
    description="BlackJAX NUTS with window adaptation",
)
