r"""Lotka-Volterra predator-prey ODE with log-normal measurement error: an ODE inverse problem.

Generative story (Carpenter 2018, "Predator-prey population dynamics", the Stan case study behind
posteriordb's ``hudson_lynx_hare-lotka_volterra``), for prey :math:`u` and predator :math:`v` observed
at times :math:`t_1 < \dots < t_N` after the start :math:`t_0 = 0`:

.. math::

    \alpha, \gamma &\sim \mathcal N^+(1, 0.5^2), \quad \beta, \delta \sim \mathcal N^+(0.05, 0.05^2)
        && \theta = (\alpha, \beta, \gamma, \delta) \text{ (``theta``)} \\
    z_{\text{init},k} &\sim \mathrm{LogNormal}(\log 10, 1)
        && \text{populations at } t_0 \text{ (``z_init``)} \\
    \sigma_k &\sim \mathrm{LogNormal}(-1, 1)
        && \text{log-scale noise sd of each species (``sigma``)} \\
    \dot u = (\alpha - \beta v)\, u,\quad &\dot v = (-\gamma + \delta u)\, v,\quad (u, v)(t_0) = z_\text{init}
        && \text{(``z`` = the solution at } t_n) \\
    y_{\text{init},k} &\sim \mathrm{LogNormal}(\log z_{\text{init},k}, \sigma_k), \quad
    y_{nk} \sim \mathrm{LogNormal}(\log z_k(t_n), \sigma_k)

The prior numbers are the defaults of :class:`LotkaVolterraConfig`; with them this program defines the
posteriordb posterior exactly (``ppzoo.reference.lotka_volterra`` is a thin wrapper around it). Site
names are posteriordb's, so :func:`ppzoo.reference.compare_to_reference` reads a fit directly.

Sites

==========  ==========  ========  ======================================================
name        shape       support   role
==========  ==========  ========  ======================================================
``theta``   ``(4,)``    positive  latent: alpha, beta, gamma, delta
``z_init``  ``(2,)``    positive  latent: prey, predator at :math:`t_0`
``sigma``   ``(2,)``    positive  latent: log-scale noise sd of each species
``z``       ``(N, 2)``  positive  deterministic: ODE solution at ``ts``
``y_init``  ``(2,)``    positive  observed: populations measured at :math:`t_0`
``y``       ``(N, 2)``  positive  observed: plate ``"data"`` (column 0 prey, 1 predator)
==========  ==========  ========  ======================================================

The posterior of the lynx-hare data has local modes ~45 log-density units below the main one; chains
started at random points can stay there through warmup. Start near the mode
(``ppzoo.fit(..., init_strategy=init_to_value(values=...))``), e.g. at a point from the law discovered by
:func:`ppzoo.laws.discover`, and check R-hat.

This module also holds :func:`solve_ode`, the differentiable ODE solver the zoo's ODE models share.

References
----------
Carpenter, B. (2018). Predator-prey population dynamics: the Lotka-Volterra model in Stan.
https://mc-stan.org/users/documentation/case-studies/lotka-volterra-predator-prey.html
Magnusson, M., Bürkner, P.-C. and Vehtari, A. posteriordb, ``hudson_lynx_hare-lotka_volterra``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ppzoo.models import Example, Site, check_finite_number
from ppzoo.models._checks import check_positive, is_concrete

__all__ = [
    "LotkaVolterraConfig",
    "lotka_volterra",
    "lotka_volterra_rhs",
    "solve_ode",
    "check_time_grid",
    "entry",
    "SITES",
    "SMALLEST",
]

#: The site table (rendered in the module docstring).
SITES: tuple[Site, ...] = (
    Site("theta", (4,), "latent", "positive", note="alpha, beta, gamma, delta"),
    Site("z_init", (2,), "latent", "positive", note="prey, predator at :math:`t_0`"),
    Site("sigma", (2,), "latent", "positive", note="log-scale noise sd of each species"),
    Site("z", ("N", 2), "deterministic", "positive", note="ODE solution at ``ts``"),
    Site("y_init", (2,), "observed", "positive", note="populations measured at :math:`t_0`"),
    Site("y", ("N", 2), "observed", "positive", note='plate ``"data"`` (column 0 prey, 1 predator)'),
)

#: The smallest runnable instance: the first three years of posteriordb's hare and lynx counts.
SMALLEST = Example(
    config={},
    generate={"ts": np.array([1.0, 2.0, 3.0], dtype=np.float32)},
    data={
        "ts": np.array([1.0, 2.0, 3.0], dtype=np.float32),
        "y_init": np.array([30.0, 4.0], dtype=np.float32),
        "y": np.array([[47.2, 6.1], [70.2, 9.8], [77.4, 35.2]], dtype=np.float32),
    },
    sizes={"N": 3},
    size_fields=("mxstep",),
)


def solve_ode(
    rhs: Callable, y0: jax.Array, t0: float, ts: jax.Array, args: Any, *, rtol: float, atol: float, mxstep: int
) -> jax.Array:
    """Solve ``dy/dt = rhs(t, y, args)`` from ``(t0, y0)`` and return the solution at ``ts``, ``(N, *y0.shape)``.

    Uses ``jax.experimental.ode.odeint`` (adaptive Dormand-Prince 5(4), gradients by the adjoint ODE).
    diffrax was the first choice, but its default ``RecursiveCheckpointAdjoint`` fails inside a ``while_loop``
    under ``pmap`` ("Closure-converted function called with different dynamic arguments",
    patrick-kidger/diffrax#765), which is how NumPyro and ppzoo run parallel NUTS chains; its
    ``DirectAdjoint`` and ``BacksolveAdjoint`` work there but took 2.1 ms and 0.44 ms per log-density
    gradient of the Lotka-Volterra port against odeint's 0.19 ms (float32, 2 CPU cores). Non-finite
    solutions give a NaN density, which NUTS rejects (as Stan rejects a proposal when its integrator fails).
    odeint does not report hitting ``mxstep``: it then extrapolates from the last accepted step.
    ``ts`` must be strictly increasing and after ``t0``.
    """
    from jax.experimental.ode import odeint

    grid = jnp.concatenate([jnp.full((1,), t0, dtype=ts.dtype), ts])
    ys = odeint(lambda y, t, a: rhs(t, y, a), y0, grid, args, rtol=rtol, atol=atol, mxstep=mxstep)[1:]
    return jnp.where(jnp.isfinite(ys), ys, jnp.nan)


def check_time_grid(name: str, model: str, t: Any, *, after: float | None = None, min_size: int = 1) -> np.ndarray:
    """Validate a time grid at the Python boundary: 1-D, finite, strictly increasing, after ``after``.

    Raises
    ------
    ValueError
        Naming ``name`` and the model, with what was expected.
    """
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != 1 or t.size < min_size:
        raise ValueError(f"{model}: `{name}` must be a 1-D array of at least {min_size} times; got shape {t.shape}.")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{model}: `{name}` contains NaN or inf; pass finite times.")
    steps = np.diff(t)
    if np.any(steps <= 0):
        where = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(
            f"{model}: `{name}` must be strictly increasing; {name}[{where}] = {t[where]:g} is followed by "
            f"{name}[{where + 1}] = {t[where + 1]:g}. Sort the measurements by time and merge repeated times."
        )
    if after is not None and t[0] <= after:
        raise ValueError(
            f"{model}: every time in `{name}` must be after the start time {after:g}; got {name}[0] = {t[0]:g}. "
            "The state at the start time is a parameter, not a measurement."
        )
    return t


def _positive_tuple(owner: str, name: str, value: Any, size: int) -> None:
    if not isinstance(value, tuple) or len(value) != size:
        raise ValueError(f"{owner}.{name} must be a tuple of {size} numbers; got {value!r}.")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v <= 0:
            raise ValueError(f"{owner}.{name} must hold positive finite numbers; got {value!r}.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LotkaVolterraConfig:
    """Settings of :func:`lotka_volterra` (defaults: posteriordb's priors and Stan's tolerances).

    Parameters
    ----------
    theta_loc, theta_scale : tuple of 4 floats
        Location and scale of the half-normal-like (normal truncated to positive values) priors of
        ``(alpha, beta, gamma, delta)``.
    init_median : float
        Prior median of each initial population (``z_init``).
    init_log_scale : float
        Prior sd of the log initial populations.
    noise_log_median, noise_log_scale : float
        ``sigma_k ~ LogNormal(noise_log_median, noise_log_scale)``; ``noise_log_median`` may be negative.
    rtol, atol : float
        Integrator tolerances (Stan's ``integrate_ode_rk45(..., 1e-5, 1e-3, ...)``: the solution error at the
        posterior is ~1e-3, below 0.5% of the noise sd on the log scale).
    mxstep : int
        Bound on integrator steps per output interval.
    """

    theta_loc: tuple[float, float, float, float] = (1.0, 0.05, 1.0, 0.05)
    theta_scale: tuple[float, float, float, float] = (0.5, 0.05, 0.5, 0.05)
    init_median: float = 10.0
    init_log_scale: float = 1.0
    noise_log_median: float = -1.0
    noise_log_scale: float = 1.0
    rtol: float = 1e-5
    atol: float = 1e-3
    mxstep: int = 10_000

    def __post_init__(self) -> None:
        owner = "LotkaVolterraConfig"
        _positive_tuple(owner, "theta_loc", self.theta_loc, 4)
        _positive_tuple(owner, "theta_scale", self.theta_scale, 4)
        check_positive(owner, init_median=self.init_median, init_log_scale=self.init_log_scale,
                  noise_log_scale=self.noise_log_scale, rtol=self.rtol, atol=self.atol)
        check_finite_number(owner, "noise_log_median", self.noise_log_median)
        if isinstance(self.mxstep, bool) or not isinstance(self.mxstep, int) or self.mxstep < 1:
            raise ValueError(f"{owner}.mxstep must be a positive integer; got {self.mxstep!r}.")


def lotka_volterra_rhs(t: Any, z: jax.Array, theta: jax.Array) -> jax.Array:
    """``dz/dt`` of the Lotka-Volterra system at populations ``z = (u, v)``, ``theta = (alpha, beta, gamma, delta)``."""
    u, v = z[0], z[1]
    alpha, beta, gamma, delta = theta[0], theta[1], theta[2], theta[3]
    return jnp.stack([(alpha - beta * v) * u, (-gamma + delta * u) * v])


def _check_observation(name: str, value: Any, shape: tuple[int, ...]) -> None:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"lotka_volterra: `{name}` must have shape {shape} (one row per time in `ts`); got {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"lotka_volterra: `{name}` contains NaN or inf; remove those times (and their `ts`).")
    if np.any(array <= 0):
        raise ValueError(
            f"lotka_volterra: `{name}` must be positive (log-normal measurements); got a minimum of {array.min():g}. "
            "Populations of zero cannot be modelled on the log scale."
        )


def _check(ts: Any, y_init: Any, y: Any) -> None:
    t = check_time_grid("ts", "lotka_volterra", ts, after=0.0)
    if is_concrete(y_init):
        _check_observation("y_init", y_init, (2,))
    if is_concrete(y):
        _check_observation("y", y, (t.size, 2))


def lotka_volterra(
    ts: Any, y_init: Any = None, y: Any = None, *, config: LotkaVolterraConfig = LotkaVolterraConfig()
) -> None:
    """Lotka-Volterra populations measured with log-normal error; ``y=None`` generates them.

    See the module docstring for the generative story and the sites.

    Parameters
    ----------
    ts : ArrayLike
        Measurement times ``(N,)``, strictly increasing and after the start time 0.
    y_init : ArrayLike or None
        Populations measured at time 0, ``(2,)``.
    y : ArrayLike or None
        Populations measured at ``ts``, ``(N, 2)`` (prey, predator).
    config : LotkaVolterraConfig
        Priors and integrator tolerances.

    Raises
    ------
    ValueError
        If ``ts`` is not 1-D, finite, strictly increasing and positive, or the measurements have the wrong
        shape, NaN or non-positive values.
    """
    if is_concrete(ts):
        _check(ts, y_init, y)
    ts = jnp.asarray(ts).astype(jnp.result_type(float))
    loc, scale = jnp.asarray(config.theta_loc), jnp.asarray(config.theta_scale)
    theta = numpyro.sample("theta", dist.TruncatedNormal(loc, scale, low=0.0).to_event(1))
    z_init = numpyro.sample(
        "z_init", dist.LogNormal(jnp.log(config.init_median), config.init_log_scale).expand([2]).to_event(1)
    )
    sigma = numpyro.sample(
        "sigma", dist.LogNormal(config.noise_log_median, config.noise_log_scale).expand([2]).to_event(1)
    )
    z = solve_ode(
        lotka_volterra_rhs, z_init, 0.0, ts, theta, rtol=config.rtol, atol=config.atol, mxstep=config.mxstep
    )
    z = numpyro.deterministic("z", z)
    numpyro.sample("y_init", dist.LogNormal(jnp.log(z_init), sigma).to_event(1), obs=y_init)
    # A failed solve gives NaN, which must reject the point (as Stan's integrator error does), not stop
    # the run: no argument validation.
    with numpyro.validation_enabled(False), numpyro.plate("data", ts.shape[0]):
        numpyro.sample("y", dist.LogNormal(jnp.log(z), sigma).to_event(1), obs=y)


def _check_data(data: Mapping[str, Any], config: LotkaVolterraConfig) -> None:
    if data.get("ts") is None:
        raise ValueError("lotka_volterra needs the measurement times: ppzoo.fit(model, {'ts': ts, 'y_init': y0, 'y': y}).")
    _check(data["ts"], data.get("y_init"), data.get("y"))


def entry(**config: Any):
    """The zoo entry ``"lotka_volterra"``."""
    from ppzoo.models import ZooModel, make_config

    return ZooModel(
        name="lotka_volterra",
        model=lotka_volterra,
        config=make_config(LotkaVolterraConfig, "lotka_volterra", config),
        config_class=LotkaVolterraConfig,
        check_data=_check_data,
        summary_sites=("theta", "z_init", "sigma"),
        description="Lotka-Volterra predator-prey ODE, log-normal counts (posteriordb hudson_lynx_hare).",
        sites=SITES,
        example=SMALLEST,
    )
