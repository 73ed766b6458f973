"""NumPyro SVI with optax: a jitted, state-donating update run in compiled chunks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.infer import SVI, Predictive, Trace_ELBO, autoguide
from numpyro.infer.util import log_density
from numpyro.optim import optax_to_numpyro

from ppzoo.inference._base import EngineResult, Options, split_data, validate_positive

__all__ = ["SVIOptions", "run_svi", "GUIDES", "make_guide", "SVIExtension"]

GuideName = Literal["auto_normal", "auto_mvn", "auto_delta", "auto_lowrank"]

#: Autoguides by name.
GUIDES: dict[str, Callable[..., Any]] = {
    "auto_normal": autoguide.AutoNormal,
    "auto_mvn": autoguide.AutoMultivariateNormal,
    "auto_delta": autoguide.AutoDelta,
    "auto_lowrank": autoguide.AutoLowRankMultivariateNormal,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class SVIExtension:
    """Extension point: extra trainable state updated alternately with the ELBO step.

    FactorVAE's discriminator, for instance, is trained between SVI steps. ``init(key, params, data)``
    returns the extension state; ``update(state, params, data, key)`` returns ``(state, aux_loss)``.
    The model reads the state through ``extension_param`` data (see the FactorVAE model).
    """

    init: Callable[..., Any]
    update: Callable[..., tuple[Any, jax.Array]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SVIOptions(Options):
    """Settings of the ``"svi"`` engine.

    Parameters
    ----------
    steps : int
        Optimisation steps.
    learning_rate : float
        Adam's learning rate.
    guide : str, callable or None
        ``"auto_normal"``, ``"auto_mvn"``, ``"auto_delta"``, ``"auto_lowrank"``, or a guide function.
        ``None``: the zoo model's own (amortized) guide, else ``"auto_normal"``.
    num_particles : int
        Monte Carlo samples per ELBO estimate.
    num_draws : int
        Posterior draws taken from the fitted guide.
    progress_bar : bool
        Show a progress bar over training chunks.
    chunk_size : int
        Steps per compiled call (one compile whatever ``steps`` is; NaN checks happen per step).
    """

    steps: int = 2000
    learning_rate: float = 1e-2
    guide: str | Callable[..., Any] | None = None
    num_particles: int = 1
    num_draws: int = 1000
    progress_bar: bool = False
    chunk_size: int = 200

    def __post_init__(self) -> None:
        validate_positive(
            "SVI",
            steps=self.steps,
            learning_rate=self.learning_rate,
            num_particles=self.num_particles,
            num_draws=self.num_draws,
            chunk_size=self.chunk_size,
        )
        for name in ("steps", "num_particles", "num_draws", "chunk_size"):
            if not isinstance(getattr(self, name), (int, np.integer)):
                raise TypeError(f"SVI option `{name}` must be an integer; got {getattr(self, name)!r}.")
        if isinstance(self.guide, str) and self.guide not in GUIDES:
            raise ValueError(
                f"SVI option `guide` must be one of {', '.join(map(repr, GUIDES))} or a guide function; "
                f"got {self.guide!r}."
            )
        if self.guide is not None and not isinstance(self.guide, str) and not callable(self.guide):
            raise TypeError(f"SVI option `guide` must be a name or a callable; got {self.guide!r}.")


def make_guide(model: Callable[..., Any], guide: str | Callable[..., Any] | None, default: Callable | None):
    """Resolve the guide option to a guide callable."""
    if guide is None:
        return default if default is not None else GUIDES["auto_normal"](model)
    if isinstance(guide, str):
        return GUIDES[guide](model)
    return guide


def run_svi(
    model: Callable[..., Any],
    data: Mapping[str, Any],
    key: jax.Array,
    options: SVIOptions,
    *,
    default_guide: Callable[..., Any] | None = None,
    latent_sites: list[str],
    deterministic_sites: list[str],
    progress: Callable[[int], None] | None = None,
) -> EngineResult:
    """Fit ``model(**data)`` by SVI with Adam and draw from the fitted guide.

    The update is ``jax.jit``-compiled once for a chunk of ``options.chunk_size`` steps (a
    ``lax.scan``) with the SVI state donated. A step whose loss or new parameters are not finite is
    not applied: training stops there, the last good parameters are kept, and a warning names the
    step and the last finite loss.
    """
    init_key, run_key, draw_key = jax.random.split(key, 3)
    guide = make_guide(model, options.guide, default_guide)
    optimizer = optax_to_numpyro(optax.adam(options.learning_rate))
    svi = SVI(model, guide, optimizer, loss=Trace_ELBO(num_particles=options.num_particles))
    arrays, static = split_data(data)
    state = svi.init(init_key, **arrays, **static)
    # Copy before donating: initial values may share buffers with objects the caller keeps (e.g. the
    # weights of a cached network module), which donation would delete.
    state = jax.tree.map(lambda a: jnp.array(a, copy=True) if isinstance(a, jax.Array) else a, state)
    chunk = min(options.chunk_size, options.steps)
    total = options.steps

    def run_chunk(state, failed, start, arrays):
        def one_step(carry, index):
            state, previous, failed = carry
            new_state, loss = svi.update(state, **arrays, **static)
            params_finite = jnp.array(True)
            for leaf in jax.tree.leaves(svi.optim.get_params(new_state.optim_state)):
                params_finite = params_finite & jnp.all(jnp.isfinite(leaf))
            live = (index < total) & ~failed
            loss_finite = jnp.isfinite(loss)
            # The loss is that of `state`: if it is not finite, `state` itself is bad and `previous` is the
            # last good one; if only the new parameters are not finite, `state` is the last good one.
            state, previous = jax.lax.cond(
                live & loss_finite & params_finite,
                lambda: (new_state, state),
                lambda: jax.lax.cond(live & ~loss_finite, lambda: (previous, previous), lambda: (state, previous)),
            )
            return (state, previous, failed | (live & ~(loss_finite & params_finite))), loss

        (state, _, failed), losses = jax.lax.scan(one_step, (state, state, failed), start + jnp.arange(chunk))
        return state, failed, losses

    run_chunk = jax.jit(run_chunk, donate_argnums=0)
    failed = jnp.array(False)
    losses = []
    warnings: list[str] = []
    for start in range(0, total, chunk):
        state, failed, chunk_losses = run_chunk(state, failed, jnp.asarray(start), arrays)
        chunk_losses = np.asarray(chunk_losses)[: total - start]
        losses.append(chunk_losses)
        if progress is not None:
            progress(len(chunk_losses))
        if bool(failed):
            bad = np.flatnonzero(~np.isfinite(chunk_losses))
            step = start + (int(bad[0]) if bad.size else len(chunk_losses))
            history = np.concatenate(losses)
            finite = history[np.isfinite(history)]
            last = f"{finite[-1]:.6g}" if finite.size else "none"
            warnings.append(
                f"SVI stopped at step {step}: the loss or parameters became NaN/inf (last finite loss {last}). "
                "The last good parameters are kept; lower learning_rate or check the model's scales."
            )
            losses[-1] = chunk_losses[: step - start + 1]
            break
    losses_arr = np.concatenate(losses)
    params = svi.get_params(state)
    sites = list(latent_sites) + [s for s in deterministic_sites if s not in latent_sites]
    predictive = Predictive(model, guide=guide, params=params, num_samples=options.num_draws, return_sites=sites)
    draws = predictive(draw_key, **data)
    flat = {k: v for k, v in draws.items()}
    samples = {k: np.asarray(v)[None] for k, v in flat.items()}
    latent_draws = {k: flat[k] for k in latent_sites if k in flat}

    def log_joint(values):
        return log_density(handlers.substitute(model, data=params), (), dict(data), values)[0]

    lp = np.asarray(jax.lax.map(log_joint, latent_draws, batch_size=min(options.num_draws, 256)))
    stats = {"lp": lp[None]}
    return EngineResult(samples, stats, jax.device_get(params), losses_arr, warnings)
