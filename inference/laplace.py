"""The MAP of a NumPyro model by L-BFGS and the Laplace approximation there, on the unconstrained space.

What the ``"svi"`` engine starts Gaussian guides from (``init="laplace"``): the latent sites, mapped to the
real line as NumPyro's guides and samplers map them, flattened into one vector in the order NumPyro's
autoguides use (:class:`Layout`); the MAP of the potential (minus the log joint density, Jacobians included)
found by ``optax.lbfgs``; the Hessian there by ``jax.jacrev(jax.grad(.))`` (reverse over reverse: custom_vjp ODE solvers have no forward mode); its inverse as a Cholesky factor.

Posteriors with several modes: L-BFGS from one start finds the mode nearest to it, not the highest. With
``more_starts`` (what the engine passes: the prior median plus 8 starts drawn as NumPyro's ``init_to_uniform``
draws them, uniformly in (-2, 2) on the unconstrained scale) the MAP is the converged end point of highest
density, and :class:`Optima` keeps every start's end so that a second mode of comparable density can be
reported (:func:`other_modes`). Measured (2026-12-08, posteriordb's Lotka-Volterra, float32): from the prior
median L-BFGS stops at a local mode (potential 172.5, a large noise scale explaining the data); 4 of 8 uniform
starts reach the posterior's mode (132.6, 40 nats higher); on 13 other references every converged start
ended at the same point.

Why L-BFGS from optax: on kidiq in float32, ``jax.scipy.optimize.minimize(method="BFGS")`` stopped after
3 iterations (its line search failed on a Hessian with condition number ~1e7) where ``optax.lbfgs``
reached the MAP (issue 17). Everything here is traceable, so the same code runs inside ``jax.jit`` and
inside the pure per-simulation core that SBC maps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.linalg
from numpyro.distributions.util import cholesky_of_inverse
from numpyro.infer import init_to_median
from numpyro.infer.util import initialize_model, potential_energy

__all__ = ["Layout", "Laplace", "Optima", "layout_of", "initial_point", "uniform_starts", "flat_potential", "find_map",
           "laplace", "other_modes"]


class Layout(NamedTuple):
    """Where each latent site lives in the flat unconstrained vector: names, shapes and sizes, in order.

    The order is that of the dict of unconstrained values NumPyro's ``initialize_model`` returns, the
    order in which ``AutoMultivariateNormal`` lays out its ``loc`` and ``scale_tril``.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def size(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.shapes))

    def ravel(self, values: Mapping[str, Any]) -> jax.Array:
        """The flat vector of a dict of per-site values."""
        return jnp.concatenate([jnp.reshape(values[n], (-1,)) for n in self.names])

    def unravel(self, flat: jax.Array) -> dict[str, jax.Array]:
        """The per-site dict of a flat vector."""
        out, start = {}, 0
        for name, shape in zip(self.names, self.shapes):
            size = int(np.prod(shape))
            out[name] = jnp.reshape(flat[start:start + size], shape)
            start += size
        return out


def layout_of(values: Mapping[str, Any]) -> Layout:
    """The :class:`Layout` of a dict of unconstrained site values, in the dict's order."""
    return Layout(tuple(values), tuple(tuple(np.shape(v)) for v in values.values()))


def initial_point(model: Callable[..., Any], data: Mapping[str, Any], key: jax.Array,
                  init_strategy: Callable[..., Any] = init_to_median, layout: Layout | None = None) -> tuple[jax.Array, Layout]:
    """A valid unconstrained starting point (flat) and the layout of the model's latent sites.

    ``init_strategy`` as in NumPyro (default: the prior median; flat priors start uniformly in (-2, 2)).
    ``layout``: the order to use (e.g. a guide's own, :func:`layout_of` its unconstrained initial values);
    ``None``: the order ``initialize_model`` returns, which need not be the model's (it may come back sorted).
    """
    info, *_ = initialize_model(key, model, init_strategy=init_strategy, model_kwargs=dict(data),
                                dynamic_args=True)
    if layout is None:
        layout = layout_of(info.z)
    elif set(layout.names) != set(info.z):
        raise ValueError(f"`layout` names {sorted(layout.names)} but the model's latent sites are {sorted(info.z)}.")
    return layout.ravel(info.z), layout


def uniform_starts(key: jax.Array, count: int, size: int, dtype: Any = jnp.float32, radius: float = 2.0) -> jax.Array:
    """``(count, size)`` flat unconstrained starts, uniform in ``(-radius, radius)`` as NumPyro's ``init_to_uniform``."""
    return jax.random.uniform(key, (count, size), dtype=dtype, minval=-radius, maxval=radius)


def flat_potential(model: Callable[..., Any], layout: Layout, data: Mapping[str, Any]) -> Callable[[jax.Array], jax.Array]:
    """``u -> -log p(data, z(u)) - log|dz/du|``: NumPyro's potential energy of the flat unconstrained vector."""

    def potential(flat: jax.Array) -> jax.Array:
        return potential_energy(model, (), dict(data), layout.unravel(flat))

    return potential


def find_map(potential: Callable[[jax.Array], jax.Array], start: jax.Array, *, max_iterations: int = 1000,
             tolerance: float = 1e-5) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Minimise ``potential`` from ``start`` by ``optax.lbfgs`` (zoom line search) in a ``lax.while_loop``.

    Stops when the gradient's norm is below ``tolerance`` times ``max(1, |potential|)``, when a step
    no longer changes the point, or after ``max_iterations``. Returns the point, its gradient's norm and
    the number of iterations.
    """
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(potential)

    def step(carry):
        x, state, _ = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = solver.update(grad, state, x, value=value, grad=grad, value_fn=potential)
        new = optax.apply_updates(x, updates)
        moved = jnp.any(new != x)
        return jnp.where(jnp.all(jnp.isfinite(new)), new, x), state, moved

    def keep_going(carry):
        _, state, moved = carry
        count = optax.tree_utils.tree_get(state, "count")
        grad = optax.tree_utils.tree_get(state, "grad")
        value = optax.tree_utils.tree_get(state, "value")
        small = optax.tree_utils.tree_norm(grad) < tolerance * jnp.maximum(1.0, jnp.abs(value))
        return (count == 0) | ((count < max_iterations) & ~small & moved & jnp.isfinite(value))

    x, state, _ = jax.lax.while_loop(keep_going, step, (start, solver.init(start), jnp.array(True)))
    grad_norm = optax.tree_utils.tree_norm(jax.grad(potential)(x))
    return x, grad_norm, optax.tree_utils.tree_get(state, "count")


class Optima(NamedTuple):
    """Where L-BFGS ended from each start: the first start is the one given as ``start``, then ``more_starts``.

    Attributes
    ----------
    ends : Array
        End points, ``(K, D)``.
    values : Array
        Potential (minus log density) there, ``(K,)``.
    converged : Array
        Whether that run stopped before ``max_iterations`` at a finite value, ``(K,)``.
    chosen : Array
        Index of the end the approximation is built at: the converged end of lowest potential, unless it is
        not lower than the first start's (then the first, so that one start and many agree where the
        posterior has one mode).
    """

    ends: jax.Array
    values: jax.Array
    converged: jax.Array
    chosen: jax.Array


class Laplace(NamedTuple):
    """A Gaussian on the flat unconstrained space: ``N(loc, scale_tril @ scale_tril.T)``.

    Attributes
    ----------
    loc : Array
        The MAP found by L-BFGS, ``(D,)``.
    scale_tril : Array
        Lower Cholesky factor of the inverse Hessian of the potential at ``loc``, ``(D, D)``; where that
        Hessian is not positive definite, ``diag(1 / sqrt(H_ii))`` (or 1 where ``H_ii <= 0``) instead.
    positive_definite : Array
        Whether the full inverse Hessian was used (``False``: the diagonal fallback).
    grad_norm : Array
        Norm of the potential's gradient at ``loc`` (near 0 at a MAP).
    iterations : Array
        L-BFGS iterations run.
    optima : Optima or None
        Every start's end point, when :func:`laplace` was given ``more_starts``.
    """

    loc: jax.Array
    scale_tril: jax.Array
    positive_definite: jax.Array
    grad_norm: jax.Array
    iterations: jax.Array
    optima: Optima | None = None

    @property
    def scale(self) -> jax.Array:
        """Marginal standard deviations ``sqrt(diag(inverse Hessian))``, ``(D,)``."""
        return jnp.sqrt(jnp.sum(self.scale_tril**2, axis=-1))


def laplace(potential: Callable[[jax.Array], jax.Array], start: jax.Array, *, max_iterations: int = 1000,
            more_starts: jax.Array | None = None) -> Laplace:
    """The Laplace approximation of ``exp(-potential)``: MAP by :func:`find_map`, then the inverse Hessian there.

    ``more_starts`` ``(K, D)``: L-BFGS also runs from each of them, one after another in the same program
    (``lax.map``: vectorising L-BFGS over the starts doubled the compile time of an ODE model's Laplace start,
    17 to 36 s on Lotka-Volterra, where running them in turn costs 3 s more than one start), and the approximation is
    built at the converged end of lowest potential when it is lower than ``start``'s (by more than float
    rounding); :attr:`Laplace.optima` keeps every end. The run from ``start`` is the same computation with
    or without them, so on a one-mode posterior the result does not depend on ``more_starts``.

    Never raises on a bad target (traceable): a Hessian that is not positive definite (a saddle, a
    funnel's neck, an unidentified direction) gives the diagonal fallback and ``positive_definite=False``.
    """
    loc, grad_norm, iterations = find_map(potential, start, max_iterations=max_iterations)
    optima = None
    if more_starts is not None:
        ends, norms, counts = jax.lax.map(lambda s: find_map(potential, s, max_iterations=max_iterations), more_starts)
        first = potential(loc)
        values = jax.lax.map(potential, ends)
        converged = jnp.isfinite(values) & (counts < max_iterations)
        candidates = jnp.where(converged, values, jnp.inf)
        best = jnp.argmin(candidates)
        first_ok = jnp.isfinite(first) & (iterations < max_iterations)
        margin = 1e-5 * jnp.maximum(1.0, jnp.abs(first))  # float32 rounding of a potential, with room
        take = converged[best] & (~first_ok | (candidates[best] < first - margin))
        optima = Optima(jnp.concatenate([loc[None], ends]), jnp.concatenate([first[None], values]),
                        jnp.concatenate([first_ok[None], converged]), jnp.where(take, best + 1, 0))
        loc = jnp.where(take, ends[best], loc)
        grad_norm = jnp.where(take, norms[best], grad_norm)
        iterations = jnp.where(take, counts[best], iterations)
    # Reverse over reverse, not jax.hessian's forward over reverse: models that solve ODEs with
    # jax.experimental.ode.odeint (a custom_vjp, which has no forward mode) have only this Hessian.
    hessian = jax.jacrev(jax.grad(potential))(loc)
    hessian = 0.5 * (hessian + hessian.T)
    full = cholesky_of_inverse(hessian)
    ok = jnp.all(jnp.isfinite(full)) & jnp.all(jnp.diagonal(full) > 0)
    diagonal = jnp.diagonal(hessian)
    fallback = jnp.diag(jnp.where((diagonal > 0) & jnp.isfinite(diagonal), jax.lax.rsqrt(jnp.abs(diagonal) + 1e-30), 1.0))
    scale_tril = jnp.where(ok, jnp.nan_to_num(full), fallback)
    return Laplace(loc, scale_tril, ok, grad_norm, iterations, optima)


def other_modes(approximation: Laplace, *, density_ratio: float = 100.0, separation: float = 1.0) -> list[tuple[float, float]]:
    """Optima other than the chosen one whose density is within ``density_ratio`` of its density (host side).

    Converged ends more than ``separation`` posterior sds from the chosen end (distance in the coordinates
    whitened by the approximation's ``scale_tril``) and from each other are distinct optima; returns, per
    such optimum, ``(log density below the chosen one, distance in sds)``, closest in density first. Empty
    without :attr:`Laplace.optima`.
    """
    optima = approximation.optima
    if optima is None:
        return []
    ends, values = np.asarray(optima.ends, np.float64), np.asarray(optima.values, np.float64)
    converged, chosen = np.asarray(optima.converged, bool), int(optima.chosen)
    tril = np.asarray(approximation.scale_tril, np.float64)

    def whitened(x):
        return scipy.linalg.solve_triangular(tril, x - np.asarray(approximation.loc, np.float64), lower=True)

    points = {i: whitened(ends[i]) for i in np.flatnonzero(converged)}
    found: list[tuple[float, np.ndarray]] = []
    for i in sorted(points, key=lambda i: values[i]):
        gap = float(values[i] - values[chosen])
        if i == chosen or gap > np.log(density_ratio) or np.linalg.norm(points[i]) <= separation:
            continue
        if all(np.linalg.norm(points[i] - other) > separation for _, other in found):
            found.append((gap, points[i]))
    return [(gap, float(np.linalg.norm(point))) for gap, point in found]
