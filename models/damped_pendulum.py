r"""Damped nonlinear pendulum observed through its angle: an ODE inverse problem for ``g/L`` and damping.

Generative story, for an angle measured with Gaussian error at times :math:`t_1 < \dots < t_N`
(the state at :math:`t_1` is a parameter):

.. math::

    g/L &\sim \mathrm{LogNormal}(\log m_g, s_g)
        && \text{(``gravity_over_length``, 1/time}^2) \\
    c &\sim \mathrm{HalfNormal}(s_c)
        && \text{damping rate (``damping``, 1/time)} \\
    (\theta_1, \omega_1) &\sim \mathcal N(0, s_0^2 I)
        && \text{angle and angular velocity at } t_1 \text{ (``initial_state``)} \\
    \sigma &\sim \mathrm{HalfNormal}(s_\sigma)
        && \text{(``noise_scale``)} \\
    \dot\theta = \omega,\quad &\dot\omega = -(g/L) \sin\theta - c\,\omega
        && (\text{``states'' = } (\theta, \omega)(t_n)) \\
    y_n &\sim \mathcal N(\theta(t_n), \sigma^2)

The same equations as :func:`ppzoo.laws.damped_pendulum` simulates (``dx1/dt = -(g/L) sin(x0) - c x1``),
so a law discovered from a trajectory gives ``g/L`` and ``c`` directly: the negated coefficients of
``sin(x0)`` and ``x1``. This model then asks the inverse question with the full nonlinear ODE and only
the angle observed.

Sites

=======================  ==========  ========  =======================================================
name                     shape       support   role
=======================  ==========  ========  =======================================================
``gravity_over_length``  ``()``      positive  latent: ``g/L`` (1 / time^2)
``damping``              ``()``      positive  latent: damping rate ``c`` (1 / time)
``initial_state``        ``(2,)``    real      latent: angle (rad) and angular velocity at ``t[0]``
``noise_scale``          ``()``      positive  latent: measurement sd ``sigma`` (rad)
``states``               ``(N, 2)``  real      deterministic: ODE solution ``(theta, omega)`` at ``t``
``y``                    ``(N,)``    real      observed: measured angle, plate ``"data"``
=======================  ==========  ========  =======================================================

Like any oscillator fit, the posterior over ``g/L`` has local modes at other frequencies when chains start
far away; start near the mode (``init_strategy=init_to_value(values=...)``, e.g. from a discovered law).

References
----------
Strogatz, S. H. (2015). Nonlinear Dynamics and Chaos, 2nd ed., Sec. 6.7 (the damped pendulum).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ppzoo.models import Example, Site
from ppzoo.models._checks import check_positive, is_concrete
from ppzoo.models.lotka_volterra import check_time_grid, solve_ode

__all__ = ["DampedPendulumConfig", "damped_pendulum", "pendulum_rhs", "entry", "SITES", "SMALLEST"]

#: The site table (rendered in the module docstring).
SITES: tuple[Site, ...] = (
    Site("gravity_over_length", (), "latent", "positive", note="``g/L`` (1 / time^2)"),
    Site("damping", (), "latent", "positive", note="damping rate ``c`` (1 / time)"),
    Site("initial_state", (2,), "latent", note="angle (rad) and angular velocity at ``t[0]``"),
    Site("noise_scale", (), "latent", "positive", note="measurement sd ``sigma`` (rad)"),
    Site("states", ("N", 2), "deterministic", note="ODE solution ``(theta, omega)`` at ``t``"),
    Site("y", ("N",), "observed", note='measured angle, plate ``"data"``'),
)

#: The smallest runnable instance: three measured angles.
SMALLEST = Example(
    config={},
    generate={"t": np.array([0.0, 0.5, 1.0], dtype=np.float32)},
    data={"t": np.array([0.0, 0.5, 1.0], dtype=np.float32), "y": np.array([0.5, -0.3, 0.1], dtype=np.float32)},
    sizes={"N": 3},
    size_fields=("mxstep",),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DampedPendulumConfig:
    """Settings of :func:`damped_pendulum`.

    Parameters
    ----------
    gravity_over_length_median : float
        :math:`m_g`, prior median of ``g/L`` (9.81 for a 1 m pendulum on Earth).
    gravity_over_length_log_scale : float
        :math:`s_g`, prior sd of ``log(g/L)``.
    damping_prior_scale : float
        :math:`s_c`.
    initial_prior_scale : float
        :math:`s_0`.
    noise_prior_scale : float
        :math:`s_\\sigma` (radians).
    rtol, atol : float
        Integrator tolerances.
    mxstep : int
        Bound on integrator steps per output interval.
    """

    gravity_over_length_median: float = 9.81
    gravity_over_length_log_scale: float = 0.5
    damping_prior_scale: float = 1.0
    initial_prior_scale: float = 2.0
    noise_prior_scale: float = 0.5
    rtol: float = 1e-6
    atol: float = 1e-6
    mxstep: int = 10_000

    def __post_init__(self) -> None:
        check_positive(
            "DampedPendulumConfig",
            gravity_over_length_median=self.gravity_over_length_median,
            gravity_over_length_log_scale=self.gravity_over_length_log_scale,
            damping_prior_scale=self.damping_prior_scale,
            initial_prior_scale=self.initial_prior_scale,
            noise_prior_scale=self.noise_prior_scale,
            rtol=self.rtol,
            atol=self.atol,
        )
        if isinstance(self.mxstep, bool) or not isinstance(self.mxstep, int) or self.mxstep < 1:
            raise ValueError(f"DampedPendulumConfig.mxstep must be a positive integer; got {self.mxstep!r}.")


def pendulum_rhs(t: Any, state: jax.Array, args: tuple) -> jax.Array:
    """``d(theta, omega)/dt``; ``args = (gravity_over_length, damping)``."""
    gravity_over_length, damping = args
    theta, omega = state[0], state[1]
    return jnp.stack([omega, -gravity_over_length * jnp.sin(theta) - damping * omega])


def _check(t: Any, y: Any) -> None:
    times = check_time_grid("t", "damped_pendulum", t, min_size=2)
    if is_concrete(y):
        array = np.asarray(y, dtype=np.float64)
        if array.shape != times.shape:
            raise ValueError(
                f"damped_pendulum: `y` must hold one angle per time, shape {times.shape}; got {array.shape}. "
                "Pass the angle column only (states[:, 0])."
            )
        if not np.all(np.isfinite(array)):
            raise ValueError("damped_pendulum: `y` contains NaN or inf; remove those times (and their `t`).")


def damped_pendulum(t: Any, y: Any = None, *, config: DampedPendulumConfig = DampedPendulumConfig()) -> None:
    """Angle of a damped pendulum measured with Gaussian error; ``y=None`` generates it.

    See the module docstring for the generative story and the sites.

    Parameters
    ----------
    t : ArrayLike
        Measurement times ``(N,)``, strictly increasing, at least 2; the state at ``t[0]`` is a parameter.
    y : ArrayLike or None
        Measured angles (radians) ``(N,)``.
    config : DampedPendulumConfig
        Priors and integrator tolerances.

    Raises
    ------
    ValueError
        If ``t`` is not 1-D, finite and strictly increasing, or ``y`` has the wrong shape or NaN.
    """
    if is_concrete(t):
        _check(t, y)
    t = jnp.asarray(t).astype(jnp.result_type(float))
    gravity_over_length = numpyro.sample(
        "gravity_over_length",
        dist.LogNormal(jnp.log(config.gravity_over_length_median), config.gravity_over_length_log_scale),
    )
    damping = numpyro.sample("damping", dist.HalfNormal(config.damping_prior_scale))
    initial_state = numpyro.sample(
        "initial_state", dist.Normal(0.0, config.initial_prior_scale).expand([2]).to_event(1)
    )
    noise_scale = numpyro.sample("noise_scale", dist.HalfNormal(config.noise_prior_scale))
    later = solve_ode(
        pendulum_rhs, initial_state, t[0], t[1:], (gravity_over_length, damping), rtol=config.rtol,
        atol=config.atol, mxstep=config.mxstep,
    )
    states = numpyro.deterministic("states", jnp.concatenate([initial_state[None], later]))
    # A failed solve gives NaN, which must reject the point, not stop the run.
    with numpyro.validation_enabled(False), numpyro.plate("data", t.shape[0]):
        numpyro.sample("y", dist.Normal(states[:, 0], noise_scale), obs=y)


def _check_data(data: Mapping[str, Any], config: DampedPendulumConfig) -> None:
    if data.get("t") is None:
        raise ValueError("damped_pendulum needs the measurement times: ppzoo.fit(model, {'t': t, 'y': angle}).")
    _check(data["t"], data.get("y"))


def entry(**config: Any):
    """The zoo entry ``"damped_pendulum"``."""
    from ppzoo.models import ZooModel, make_config

    return ZooModel(
        name="damped_pendulum",
        model=damped_pendulum,
        config=make_config(DampedPendulumConfig, "damped_pendulum", config),
        config_class=DampedPendulumConfig,
        check_data=_check_data,
        summary_sites=("gravity_over_length", "damping", "initial_state", "noise_scale"),
        description="Damped nonlinear pendulum ODE, angle observed: posterior of g/L and damping.",
        sites=SITES,
        example=SMALLEST,
    )
