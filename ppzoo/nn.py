"""Neural networks for NumPyro programs: Flax NNX modules registered as NumPyro parameters.

Inside a model, ``net = ppzoo.nn.mlp("decoder", in_features, (64, 64, out))`` returns a callable whose
weights are the NumPyro param site ``"decoder$params"``: SVI learns them, and
``ppzoo.fit(model, data, engine="nuts", params=svi_fit.params)`` holds them fixed while MCMC samples the
model's random sites. This is the one place ppzoo touches :func:`numpyro.contrib.module.nnx_module`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Literal

import jax
from flax import nnx
from numpyro.contrib.module import nnx_module

__all__ = ["MLP", "mlp", "module", "ACTIVATIONS"]

Activation = Literal["relu", "leaky_relu", "tanh", "elu", "gelu", "softplus"]
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "leaky_relu": functools.partial(jax.nn.leaky_relu, negative_slope=0.1),
    "tanh": jax.numpy.tanh,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
}


class MLP(nnx.Module):
    """A multilayer perceptron: ``Linear -> activation`` for every layer but the last.

    Parameters
    ----------
    in_features : int
        Input width.
    sizes : sequence of int
        Widths of the layers; the last is the output width.
    activation : str
        One of :data:`ACTIVATIONS`.
    rngs : flax.nnx.Rngs
        Initialisation randomness.
    """

    def __init__(self, in_features: int, sizes: Sequence[int], *, activation: Activation = "relu", rngs: nnx.Rngs):
        if activation not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {', '.join(ACTIVATIONS)}; got {activation!r}.")
        if not sizes or any(int(s) < 1 for s in sizes) or in_features < 1:
            raise ValueError(f"MLP sizes must be positive integers; got in_features={in_features}, sizes={tuple(sizes)}.")
        widths = [in_features, *sizes]
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)


@functools.lru_cache(maxsize=256)
def _cached_mlp(in_features: int, sizes: tuple[int, ...], activation: str, seed: int) -> MLP:
    # Built eagerly even when first reached inside a jit trace, so no tracer is ever cached.
    with jax.ensure_compile_time_eval():
        return MLP(in_features, sizes, activation=activation, rngs=nnx.Rngs(seed))


def module(name: str, network: nnx.Module) -> Callable[..., jax.Array]:
    """Register an NNX module's weights as the NumPyro param ``f"{name}$params"`` and return its call."""
    return nnx_module(name, network)


def mlp(
    name: str,
    in_features: int,
    sizes: Sequence[int],
    *,
    activation: Activation = "relu",
    seed: int = 0,
) -> Callable[[jax.Array], jax.Array]:
    """An MLP inside a NumPyro program, its weights the param site ``f"{name}$params"``.

    The module's structure and initial weights (from ``nnx.Rngs(seed)``) are built once per distinct
    setting and reused, so calling the model repeatedly (as every engine does) costs no re-initialisation.
    """
    return module(name, _cached_mlp(int(in_features), tuple(int(s) for s in sizes), activation, int(seed)))
