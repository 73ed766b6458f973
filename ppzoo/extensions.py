"""The SVI engine's extension point, in a leaf module so that zoo models can offer one without importing an engine.

Imports only JAX; :mod:`ppzoo.inference.svi` runs an :class:`SVIExtension`, models such as FactorVAE
(its discriminator) and the iVAE (its annealing counter) build one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["SVIExtension"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SVIExtension:
    """Extension point: extra trainable state updated alternately with the ELBO step, inside the compiled loop.

    FactorVAE's discriminator, for instance, is trained between SVI steps with its own optimizer: the ELBO
    must not move its weights (the VAE minimises the total correlation the discriminator estimates), so they
    live here rather than in NumPyro's param store. Each step of the ``"svi"`` engine does

    1. ``svi.update(svi_state, **data, **model_kwargs(state))``: the ELBO step, the model reading the state
       through keyword arguments;
    2. ``state, aux_loss = update(state, params, data, key)`` with the *new* SVI params: the extension's step.

    Both are undone together when the ELBO loss, the new params, ``aux_loss`` or the new state is not
    finite (training then stops with the usual warning, the last good params and state kept).

    Attributes
    ----------
    init : callable
        ``init(key, params, data) -> state``, a pytree of arrays; ``params`` are the initial SVI params
        (constrained), ``data`` the model's keyword arguments.
    update : callable
        ``update(state, params, data, key) -> (state, aux_loss)``; traced once inside the compiled chunk.
    model_kwargs : callable
        ``model_kwargs(state) -> dict`` of extra keyword arguments for model and guide during training.
        The model must also run without them (they are absent when the fit's draws and ArviZ groups are
        computed), e.g. by skipping the term that needs them.
    name : str
        The final state is returned in ``fit.params[f"{name}$state"]`` (not a NumPyro param: nothing else
        reads it), so that it can be inspected or reused.

    Notes
    -----
    How a model supplies one: pass ``ppzoo.fit(..., engine="svi", extension=ext)``, or give the model's own
    guide (``ZooModel.guide``) an attribute ``svi_extension``; the engine uses it whenever that guide is the
    one being fit (``guide=None``). Models without an extension run exactly as before.
    """

    init: Callable[..., Any]
    update: Callable[..., tuple[Any, jax.Array]]
    model_kwargs: Callable[[Any], dict[str, Any]]
    name: str = "extension"
