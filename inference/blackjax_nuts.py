"""BlackJAX NUTS with window adaptation, on the log density NumPyro derives from the same model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.util import initialize_model

from ppzoo.inference._base import EngineResult
from ppzoo.inference.nuts import NUTSOptions, chain_stats_warnings

__all__ = ["run_blackjax"]


def _one_chain(logdensity, postprocess, options: NUTSOptions, key, position):
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


def run_blackjax(
    model: Callable[..., Any],
    data: Mapping[str, Any],
    key: jax.Array,
    options: NUTSOptions,
) -> EngineResult:
    """Run BlackJAX NUTS (window adaptation) on ``model(**data)``.

    NumPyro's :func:`~numpyro.infer.util.initialize_model` gives the potential in the unconstrained
    space and the map back to constrained values (deterministic sites included). Chains are mapped over
    devices with ``pmap``; more chains than devices run in groups through the same compiled program.
    """
    init_key, run_key = jax.random.split(key)
    num_chains = options.num_chains
    info = initialize_model(
        jax.random.split(init_key, num_chains), model, model_kwargs=dict(data), dynamic_args=False,
        init_strategy=options.init_strategy,
    )
    positions = info.param_info.z
    potential = info.potential_fn

    def logdensity(position):
        return -potential(position)

    def postprocess(position):
        return info.postprocess_fn(position)

    chain = partial(_one_chain, logdensity, postprocess, options)
    group = min(jax.local_device_count(), num_chains)
    num_groups = -(-num_chains // group)
    keys = jax.random.split(run_key, num_groups * group)
    # Pad the last group by repeating chains so every call has the same shape (one compile); drop after.
    pad = num_groups * group - num_chains
    positions = jax.tree.map(lambda a: jnp.concatenate([a, a[:pad]]) if pad else a, positions)
    mapped = jax.pmap(chain) if group > 1 else jax.vmap(chain)
    draws_parts, stats_parts = [], []
    for g in range(num_groups):
        sl = slice(g * group, (g + 1) * group)
        d, s = mapped(keys[sl], jax.tree.map(lambda a: a[sl], positions))
        draws_parts.append(jax.device_get(d))
        stats_parts.append(jax.device_get(s))
    samples = {
        k: np.concatenate([p[k] for p in draws_parts])[:num_chains] for k in draws_parts[0]
    }
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
