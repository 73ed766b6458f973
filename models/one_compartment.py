r"""One-compartment pharmacokinetics: first-order absorption, Michaelis-Menten elimination, log-normal error.

Generative story (posteriordb ``one_comp_mm_elim_abs``; the saturable elimination of e.g. phenytoin or
ethanol). A dose :math:`D` enters a compartment of volume :math:`V` at :math:`t_0`; the concentration
:math:`C(t)` is measured at times :math:`t_1 < \dots < t_N`:

.. math::

    k_a, K_m, V_m, \sigma &\sim \text{half-Cauchy}(0, 1)
        && \text{absorption rate, Michaelis constant, max. elimination rate, noise} \\
    \dot C &= \frac{D k_a}{V} e^{-k_a (t - t_0)} - \frac{V_m}{V}\frac{C}{K_m + C},\quad C(t_0) = 0
        && (\text{``C'' = the solution at } t_n) \\
    y_n &\sim \mathrm{LogNormal}(\log C(t_n), \sigma)

posteriordb writes the absorption term as :math:`e^{-k_a t}` with :math:`t_0 = 0`; the two agree there.
With the default :class:`OneCompartmentConfig` (``dose=30``, ``volume=2``, ``t0=0``, unit prior scales)
this program defines the posteriordb posterior (posteriordb calls ``y`` ``C_hat``).

Sites

=========  ========  ========  ==================================================
name       shape     support   role
=========  ========  ========  ==================================================
``k_a``    ``()``    positive  latent: absorption rate (1 / time)
``K_m``    ``()``    positive  latent: Michaelis constant (concentration)
``V_m``    ``()``    positive  latent: maximal elimination rate (mass / time)
``sigma``  ``()``    positive  latent: log-scale noise sd
``C``      ``(N,)``  positive  deterministic: ODE solution at ``times``
``y``      ``(N,)``  positive  observed: measured concentration, plate ``"data"``
=========  ========  ========  ==================================================

Identification. Along the ridge :math:`K_m \to \infty` with :math:`V_m / K_m` fixed the elimination is
linear and the likelihood flat, so the posterior of :math:`K_m` and :math:`V_m` has an infinite-variance
tail (``ppzoo.reference`` compares them on the log scale); only :math:`V_m / K_m` is well determined when
the concentrations stay far below :math:`K_m`.

References
----------
Magnusson, M., Bürkner, P.-C. and Vehtari, A. posteriordb, ``one_comp_mm_elim_abs``.
Wagner, J. G. (1973). Properties of the Michaelis-Menten equation and its integrated form which are
useful in pharmacokinetics. J. Pharmacokinet. Biopharm. 1, 103-121.
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

__all__ = ["OneCompartmentConfig", "one_compartment", "one_compartment_rhs", "entry", "SITES", "SMALLEST"]

#: The site table (rendered in the module docstring).
SITES: tuple[Site, ...] = (
    Site("k_a", (), "latent", "positive", note="absorption rate (1 / time)"),
    Site("K_m", (), "latent", "positive", note="Michaelis constant (concentration)"),
    Site("V_m", (), "latent", "positive", note="maximal elimination rate (mass / time)"),
    Site("sigma", (), "latent", "positive", note="log-scale noise sd"),
    Site("C", ("N",), "deterministic", "positive", note="ODE solution at ``times``"),
    Site("y", ("N",), "observed", "positive", note='measured concentration, plate ``"data"``'),
)

#: The smallest runnable instance: three measured concentrations after posteriordb's dose.
SMALLEST = Example(
    config={},
    generate={"times": np.array([0.5, 1.0, 2.0], dtype=np.float32)},
    data={"times": np.array([0.5, 1.0, 2.0], dtype=np.float32), "y": np.array([1.9, 3.2, 2.6], dtype=np.float32)},
    sizes={"N": 3},
    size_fields=("mxstep",),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class OneCompartmentConfig:
    """Settings of :func:`one_compartment` (defaults: posteriordb's design, priors and tolerances).

    Parameters
    ----------
    dose : float
        :math:`D`, the amount given at ``t0`` (posteriordb: 30 mg).
    volume : float
        :math:`V`, the compartment volume (posteriordb: 2 L).
    t0 : float
        Time of the dose; every measurement time must be later.
    prior_scale : float
        Scale of the half-Cauchy priors of ``k_a``, ``K_m``, ``V_m`` and ``sigma``.
    rtol, atol : float
        Integrator tolerances (1e-6: solution error far below the noise sd ~0.13).
    mxstep : int
        Bound on integrator steps per output interval.
    """

    dose: float = 30.0
    volume: float = 2.0
    t0: float = 0.0
    prior_scale: float = 1.0
    rtol: float = 1e-6
    atol: float = 1e-6
    mxstep: int = 10_000

    def __post_init__(self) -> None:
        owner = "OneCompartmentConfig"
        check_positive(owner, dose=self.dose, volume=self.volume, prior_scale=self.prior_scale, rtol=self.rtol,
                  atol=self.atol)
        if isinstance(self.t0, bool) or not isinstance(self.t0, (int, float)) or not np.isfinite(self.t0):
            raise ValueError(f"{owner}.t0 must be a finite number; got {self.t0!r}.")
        if isinstance(self.mxstep, bool) or not isinstance(self.mxstep, int) or self.mxstep < 1:
            raise ValueError(f"{owner}.mxstep must be a positive integer; got {self.mxstep!r}.")


def one_compartment_rhs(t: Any, c: jax.Array, args: tuple) -> jax.Array:
    """``dC/dt`` at concentration ``c``; ``args = (k_a, K_m, V_m, dose, volume, t0)``."""
    k_a, K_m, V_m, dose, volume, t0 = args
    absorbed = dose * k_a / volume * jnp.exp(-k_a * (t - t0))
    return absorbed - (V_m / volume) * c / (K_m + c)


def _check(times: Any, y: Any, config: OneCompartmentConfig) -> None:
    t = check_time_grid("times", "one_compartment", times, after=config.t0)
    if is_concrete(y):
        array = np.asarray(y, dtype=np.float64)
        if array.shape != t.shape:
            raise ValueError(
                f"one_compartment: `y` must have one concentration per time, shape {t.shape}; got {array.shape}."
            )
        if not np.all(np.isfinite(array)):
            raise ValueError("one_compartment: `y` contains NaN or inf; remove those times (and their `times`).")
        if np.any(array <= 0):
            raise ValueError(
                f"one_compartment: `y` must be positive (log-normal measurements); got a minimum of {array.min():g}. "
                "Measurements below the limit of quantification need a censored likelihood."
            )


def one_compartment(times: Any, y: Any = None, *, config: OneCompartmentConfig = OneCompartmentConfig()) -> None:
    """Concentrations after one oral dose, measured with log-normal error; ``y=None`` generates them.

    See the module docstring for the generative story and the sites.

    Parameters
    ----------
    times : ArrayLike
        Measurement times ``(N,)``, strictly increasing and after ``config.t0``.
    y : ArrayLike or None
        Measured concentrations ``(N,)``.
    config : OneCompartmentConfig
        Dose, volume, start time, priors, tolerances.

    Raises
    ------
    ValueError
        If ``times`` is not 1-D, finite, strictly increasing and after ``t0``, or ``y`` has the wrong
        shape, NaN or non-positive values.
    """
    if is_concrete(times):
        _check(times, y, config)
    times = jnp.asarray(times).astype(jnp.result_type(float))
    k_a = numpyro.sample("k_a", dist.HalfCauchy(config.prior_scale))
    K_m = numpyro.sample("K_m", dist.HalfCauchy(config.prior_scale))
    V_m = numpyro.sample("V_m", dist.HalfCauchy(config.prior_scale))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(config.prior_scale))
    c0 = jnp.zeros((), dtype=times.dtype)
    args = (k_a, K_m, V_m, float(config.dose), float(config.volume), float(config.t0))
    conc = solve_ode(
        one_compartment_rhs, c0, float(config.t0), times, args, rtol=config.rtol, atol=config.atol,
        mxstep=config.mxstep,
    )
    conc = numpyro.deterministic("C", conc)
    # A failed solve (NaN) or a non-positive C must reject the point, not stop the run.
    with numpyro.validation_enabled(False), numpyro.plate("data", times.shape[0]):
        numpyro.sample("y", dist.LogNormal(jnp.log(conc), sigma), obs=y)


def _check_data(data: Mapping[str, Any], config: OneCompartmentConfig) -> None:
    if data.get("times") is None:
        raise ValueError("one_compartment needs the measurement times: ppzoo.fit(model, {'times': times, 'y': y}).")
    _check(data["times"], data.get("y"), config)


def entry(**config: Any):
    """The zoo entry ``"one_compartment"``."""
    from ppzoo.models import ZooModel, make_config

    return ZooModel(
        name="one_compartment",
        model=one_compartment,
        config=make_config(OneCompartmentConfig, "one_compartment", config),
        config_class=OneCompartmentConfig,
        check_data=_check_data,
        summary_sites=("k_a", "K_m", "V_m", "sigma"),
        description="One-compartment pharmacokinetics, Michaelis-Menten elimination (posteriordb one_comp_mm_elim_abs).",
        sites=SITES,
        example=SMALLEST,
    )
