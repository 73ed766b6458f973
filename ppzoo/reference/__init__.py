"""Reference posteriors: NumPyro ports of 15 posteriordb models and a comparison against their draws.

posteriordb (Magnusson, Bürkner and Vehtari) ships, for each posterior, a Stan model, its data and
10,000 reference draws made by Stan's NUTS (10 chains x 1,000 draws, thinned by 10 from 10,000). ppzoo
ships 15 of them as package data in ``ppzoo/data/validation/posteriordb/`` (draws stored as float32, read
back as float64; see :func:`ppzoo.data._paths.validation_dir`). This module ports each model to a plain
NumPyro function that defines *the same* posterior density (flat improper priors where Stan has no prior
statement, Stan's constrained-space priors on ordered vectors, GARCH's triangle), loads the data and the
draws, and compares any set of posterior draws against the reference with tolerances derived from Monte
Carlo error.

Every quantity in the reference draws is a sample or ``numpyro.deterministic`` site of the port with the
same name and shape (``theta`` of shape ``(8,)`` for eight schools), so ``fit.samples`` can be compared
directly. The reference name ``theta[1]`` (Stan, 1-based) is our ``theta[..., 0]``.

| posterior | model function | data keys |
| --- | --- | --- |
| ``arK-arK`` | :func:`ark` | ``K``, ``y`` |
| ``arma-arma11`` | :func:`arma11` | ``y`` |
| ``diamonds-diamonds`` | :func:`diamonds` | ``X``, ``Y`` |
| ``earnings-logearn_interaction_z`` | :func:`logearn_interaction_z` | ``earn``, ``height``, ``male`` |
| ``eight_schools-eight_schools_noncentered`` | :func:`eight_schools_noncentered` | ``y``, ``sigma`` |
| ``garch-garch11`` | :func:`garch11` | ``y``, ``sigma1`` |
| ``gp_pois_regr-gp_pois_regr`` | :func:`gp_pois_regr` | ``x``, ``k`` |
| ``hmm_example-hmm_example`` | :func:`hmm_example` | ``y`` |
| ``hudson_lynx_hare-lotka_volterra`` | :func:`lotka_volterra` | ``ts``, ``y_init``, ``y`` |
| ``kidiq-kidscore_interaction`` | :func:`kidscore_interaction` | ``kid_score``, ``mom_hs``, ``mom_iq`` |
| ``kilpisjarvi_mod-kilpisjarvi`` | :func:`kilpisjarvi` | ``x``, ``y``, ``pmualpha``, ... ``psbeta`` |
| ``low_dim_gauss_mix-low_dim_gauss_mix`` | :func:`low_dim_gauss_mix` | ``y`` |
| ``mesquite-logmesquite_logvas`` | :func:`logmesquite_logvas` | ``weight``, ``diam1``, ... ``group`` |
| ``one_comp_mm_elim_abs-one_comp_mm_elim_abs`` | :func:`one_comp_mm_elim_abs` | ``t0``, ... ``C_hat`` |
| ``sblrc-blr`` | :func:`blr` | ``X``, ``y`` |

Data keys are those of posteriordb's ``data.json``; sizes that follow from the arrays (``N``, ``T``,
``J``, ...) and keys the model does not read are dropped.

Floating point: Stan works in double precision. Only the GP (:func:`gp_pois_regr`) needs float64
(``jax.enable_x64``) to define Stan's density exactly, because its covariance is numerically singular in
float32 and gets a larger jitter there; ``ReferencePosterior.x64`` flags it. With NumPyro NUTS (4 x 1000) the
GP matched the reference in both precisions (float64 needed 365 leapfrog steps per draw, float32 636), and
the other fourteen ports matched it in float32.

References
----------
.. [1] Magnusson, M., Bürkner, P.-C. and Vehtari, A. posteriordb: a set of posteriors for Bayesian
   inference and probabilistic programming. https://github.com/stan-dev/posteriordb (commit 28f8d3d,
   BSD-3-Clause; see its CITATION.cff).
.. [2] Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021). Rank-normalization,
   folding, and localization: an improved R-hat for assessing convergence of MCMC. Bayesian Analysis 16(2).
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from numpyro.distributions import constraints

from ppzoo.data._paths import validation_dir
from ppzoo.models.lotka_volterra import LotkaVolterraConfig, solve_ode
from ppzoo.models.lotka_volterra import lotka_volterra as _lotka_volterra_model
from ppzoo.models.one_compartment import OneCompartmentConfig, one_compartment_rhs

__all__ = [
    "ReferencePosterior",
    "reference_names",
    "load_reference",
    "compare_to_reference",
    "reference_table",
    "stan_names",
    "assemble_draws",
    "GP_JITTER",
    "ODE_SETTINGS",
    "ark",
    "arma11",
    "diamonds",
    "logearn_interaction_z",
    "eight_schools_noncentered",
    "garch11",
    "gp_pois_regr",
    "hmm_example",
    "GaussianHMM",
    "lotka_volterra",
    "kidscore_interaction",
    "kilpisjarvi",
    "low_dim_gauss_mix",
    "logmesquite_logvas",
    "one_comp_mm_elim_abs",
    "blr",
]


def _as_float(values: Any) -> jax.Array:
    """``values`` as a JAX array of the default float type (float32, or float64 under ``jax_enable_x64``)."""
    return jnp.asarray(values).astype(jnp.result_type(float))


def _flat(support: constraints.Constraint, shape: tuple[int, ...] = ()) -> dist.ImproperUniform:
    """Stan's implicit prior: a constant density on ``support`` (NumPyro adds the transform's Jacobian)."""
    return dist.ImproperUniform(support, shape, ())


def _flat_vector(support: constraints.Constraint, size: int) -> dist.ImproperUniform:
    """A constant density on a vector-valued support such as an ordered vector."""
    return dist.ImproperUniform(support, (), (size,))


# --------------------------------------------------------------------------------------------------------
# Time series
# --------------------------------------------------------------------------------------------------------


def ark(*, K: int, y: Any) -> None:
    r"""AR(K) regression with a conditional likelihood (posteriordb ``arK``).

    .. math::
        \alpha, \beta_k \sim N(0, 10),\quad \sigma \sim \text{half-Cauchy}(0, 2.5),\quad
        y_t \sim N\big(\alpha + \textstyle\sum_{k=1}^K \beta_k y_{t-k}, \sigma\big),\ t = K+1..T.

    The first ``K`` observations are conditioned on, not modelled.

    ========  ========  ============  ========
    site      shape     support       role
    ========  ========  ============  ========
    alpha     ()        real          latent
    beta      (K,)      real          latent
    sigma     ()        positive      latent
    y         (T - K,)  real          observed (``y[K:]``)
    ========  ========  ============  ========

    Parameters
    ----------
    K : int
        Lag order (static).
    y : array_like, shape (T,)
        The series.
    """
    y = jnp.asarray(y)
    T = y.shape[0]
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 10.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([K]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    # lags[t - K, k] = y[t - 1 - k] for t = K..T-1 (0-based), built with static slices.
    lags = jnp.stack([y[K - 1 - k : T - 1 - k] for k in range(K)], axis=-1)
    numpyro.sample("y", dist.Normal(alpha + lags @ beta, sigma).to_event(1), obs=y[K:])


def arma11(*, y: Any) -> None:
    r"""ARMA(1, 1) with the pre-sample error set to zero (posteriordb ``arma11``).

    .. math::
        \mu \sim N(0, 10),\ \phi, \theta \sim N(0, 2),\ \sigma \sim \text{half-Cauchy}(0, 2.5),\\
        \nu_1 = \mu + \phi\mu,\quad \nu_t = \mu + \phi y_{t-1} + \theta (y_{t-1} - \nu_{t-1}),\quad
        y_t \sim N(\nu_t, \sigma).

    Stan writes the likelihood as ``err ~ normal(0, sigma)`` with ``err = y - nu``; the density of
    ``y ~ normal(nu, sigma)`` is the same number, so ``y`` is an observed site here.

    ========  ======  ========  ========
    site      shape   support   role
    ========  ======  ========  ========
    mu        ()      real      latent
    phi       ()      real      latent
    theta     ()      real      latent
    sigma     ()      positive  latent
    y         (T,)    real      observed
    ========  ======  ========  ========

    Parameters
    ----------
    y : array_like, shape (T,)
        The series.
    """
    y = jnp.asarray(y)
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    phi = numpyro.sample("phi", dist.Normal(0.0, 2.0))
    theta = numpyro.sample("theta", dist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))

    def step(err_prev, y_pair):
        y_prev, y_t = y_pair
        nu_t = mu + phi * y_prev + theta * err_prev
        return y_t - nu_t, nu_t

    # The first step uses y_0 := mu and err_0 := 0, which gives nu_1 = mu + phi * mu.
    y_prev = jnp.concatenate([mu[None], y[:-1]])
    _, nu = jax.lax.scan(step, jnp.zeros_like(mu), (y_prev, y))
    # |theta| > 1 makes the error recursion overflow; like Stan, such a point gets no finite density (and
    # NUTS rejects it) instead of stopping the run, so the arguments are not validated.
    numpyro.sample("y", dist.Normal(nu, sigma, validate_args=False).to_event(1), obs=y)


def garch11(*, y: Any, sigma1: float) -> None:
    r"""GARCH(1, 1) with flat priors on its stationarity triangle (posteriordb ``garch11``).

    .. math::
        s_1 = \sigma_1,\quad s_t^2 = \alpha_0 + \alpha_1 (y_{t-1} - \mu)^2 + \beta_1 s_{t-1}^2,\quad
        y_t \sim N(\mu, s_t),

    with a constant prior density on
    :math:`\{\mu \in \mathbb R, \alpha_0 > 0, 0 < \alpha_1 < 1, 0 < \beta_1 < 1 - \alpha_1\}`.

    Stan declares ``beta1`` with the upper bound ``1 - alpha1`` and no prior statement. Writing
    ``beta1 ~ Uniform(0, 1 - alpha1)`` would add :math:`-\log(1 - \alpha_1)` and change the posterior.
    Here ``beta1_unit`` is flat on (0, 1), ``beta1 = (1 - alpha1) * beta1_unit``, and the factor
    ``beta1_jacobian`` adds :math:`\log(1 - \alpha_1)` = log |d beta1 / d beta1_unit|, so that the density
    is flat in ``beta1`` as in Stan.

    ===========  ======  =================  ========================
    site         shape   support            role
    ===========  ======  =================  ========================
    mu           ()      real               latent
    alpha0       ()      positive           latent
    alpha1       ()      (0, 1)             latent
    beta1_unit   ()      (0, 1)             latent
    beta1        ()      (0, 1 - alpha1)    deterministic
    y            (T,)    real               observed
    ===========  ======  =================  ========================

    Parameters
    ----------
    y : array_like, shape (T,)
        The series.
    sigma1 : float
        Initial volatility :math:`s_1`.
    """
    y = jnp.asarray(y)
    mu = numpyro.sample("mu", _flat(constraints.real))
    alpha0 = numpyro.sample("alpha0", _flat(constraints.positive))
    alpha1 = numpyro.sample("alpha1", _flat(constraints.unit_interval))
    beta1_unit = numpyro.sample("beta1_unit", _flat(constraints.unit_interval))
    beta1 = numpyro.deterministic("beta1", (1.0 - alpha1) * beta1_unit)
    numpyro.factor("beta1_jacobian", jnp.log1p(-alpha1))

    def step(s_prev, y_prev):
        s_t = jnp.sqrt(alpha0 + alpha1 * (y_prev - mu) ** 2 + beta1 * s_prev**2)
        return s_t, s_t

    s1 = jnp.full_like(mu, sigma1)
    _, s_rest = jax.lax.scan(step, s1, y[:-1])
    scale = jnp.concatenate([s1[None], s_rest])
    numpyro.sample("y", dist.Normal(mu, scale, validate_args=False).to_event(1), obs=y)


class GaussianHMM(dist.Distribution):
    r"""A K-state hidden Markov chain with unit-variance Gaussian emissions, states marginalised.

    :math:`z_1 \sim \text{Uniform}\{1..K\}`, :math:`P(z_t = k \mid z_{t-1} = j) = \exp(\text{log\_trans}[j, k])`,
    :math:`y_t \mid z_t = k \sim N(\mu_k, 1)`. ``log_prob`` runs the forward algorithm; ``sample``
    simulates the chain, so the site is an ordinary observed site (prior predictive, log-likelihood).

    Parameters
    ----------
    log_trans : array_like, shape (K, K)
        Log transition matrix, rows summing to one on the probability scale.
    mu : array_like, shape (K,)
        Emission means.
    num_steps : int
        Length of the series (static).
    """

    arg_constraints = {"log_trans": constraints.real_matrix, "mu": constraints.real_vector}
    support = constraints.real_vector
    pytree_data_fields = ("log_trans", "mu")
    pytree_aux_fields = ("num_steps",)

    def __init__(self, log_trans: Any, mu: Any, num_steps: int, *, validate_args: bool | None = None):
        self.log_trans = jnp.asarray(log_trans)
        self.mu = jnp.asarray(mu)
        self.num_steps = int(num_steps)
        super().__init__(batch_shape=(), event_shape=(self.num_steps,), validate_args=validate_args)

    def log_prob(self, value: Any) -> jax.Array:
        num_states = self.mu.shape[-1]
        log_emit = dist.Normal(self.mu, 1.0).log_prob(jnp.asarray(value)[:, None])  # (T, K)

        def forward(log_alpha, log_emit_t):
            return jax.nn.logsumexp(log_alpha[:, None] + self.log_trans, axis=0) + log_emit_t, None

        log_alpha, _ = jax.lax.scan(forward, log_emit[0] - jnp.log(num_states), log_emit[1:])
        return jax.nn.logsumexp(log_alpha)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        num_states = self.mu.shape[-1]

        def one(key):
            key_start, key_path, key_noise = jax.random.split(key, 3)
            z0 = jax.random.randint(key_start, (), 0, num_states)
            gumbel = jax.random.gumbel(key_path, (self.num_steps - 1, num_states))

            def step(z, g):  # Gumbel-max: a categorical draw from row z of the transition matrix
                z = jnp.argmax(self.log_trans[z] + g)
                return z, z

            _, rest = jax.lax.scan(step, z0, gumbel)
            states = jnp.concatenate([z0[None], rest])
            return self.mu[states] + jax.random.normal(key_noise, (self.num_steps,))

        keys = jax.random.split(key, math.prod(sample_shape)) if sample_shape else key[None]
        draws = jax.vmap(one)(keys)
        return draws.reshape(tuple(sample_shape) + (self.num_steps,))


def hmm_example(*, y: Any) -> None:
    r"""Two-state Gaussian hidden Markov model, states marginalised by the forward algorithm.

    posteriordb ``hmm_example``. Transition rows ``theta1``, ``theta2`` (P(z_t = k | z_{t-1} = j) =
    ``theta_j[k]``) are uniform on the simplex (Stan has no prior statement for them);
    :math:`0 < \mu_1 < \mu_2` (``positive_ordered``) with the log densities of N(3, 1) and N(10, 1) added
    for ``mu[0]`` and ``mu[1]`` on that constrained space (not on an unconstrained base variable);
    :math:`y_t \mid z_t = k \sim N(\mu_k, 1)` (:class:`GaussianHMM`). The initial state is uniform; Stan
    drops its constant log(1/2), which does not change the posterior.

    ========  ======  ================  ===============================
    site      shape   support           role
    ========  ======  ================  ===============================
    theta1    (2,)    simplex           latent
    theta2    (2,)    simplex           latent
    mu        (2,)    positive ordered  latent
    mu_prior  ()      --                factor: N(3, 1), N(10, 1) on mu
    y         (N,)    real              observed (states marginalised)
    ========  ======  ================  ===============================

    Parameters
    ----------
    y : array_like, shape (N,)
        Observations.
    """
    y = jnp.asarray(y)
    theta1 = numpyro.sample("theta1", dist.Dirichlet(jnp.ones(2)))
    theta2 = numpyro.sample("theta2", dist.Dirichlet(jnp.ones(2)))
    mu = numpyro.sample("mu", _flat_vector(constraints.positive_ordered_vector, 2))
    numpyro.factor("mu_prior", dist.Normal(jnp.array([3.0, 10.0]), 1.0).log_prob(mu).sum(-1))
    log_trans = jnp.log(jnp.stack([theta1, theta2], axis=-2))  # [j, k] = log P(k | j)
    numpyro.sample("y", GaussianHMM(log_trans, mu, y.shape[0]), obs=y)


# --------------------------------------------------------------------------------------------------------
# Regressions
# --------------------------------------------------------------------------------------------------------


def diamonds(*, X: Any, Y: Any) -> None:
    r"""brms Gaussian regression on the ggplot2 diamonds data (posteriordb ``diamonds``).

    With ``Xc`` the columns ``X[:, 1:]`` centred at their means,

    .. math::
        b_i \sim N(0, 1),\ \text{Intercept} \sim t_3(8, 10),\ \sigma \sim t_3^+(0, 10),\quad
        Y_n \sim N(\text{Intercept} + Xc_n b, \sigma).

    ``Intercept`` is the intercept of the centred design (brms' temporary intercept). The polynomial
    terms are strongly collinear, which makes this posterior badly conditioned for NUTS with a diagonal
    mass matrix.

    =========  =======  ========  ========
    site       shape    support   role
    =========  =======  ========  ========
    b          (K-1,)   real      latent
    Intercept  ()       real      latent
    sigma      ()       positive  latent
    Y          (N,)     real      observed
    =========  =======  ========  ========

    Parameters
    ----------
    X : array_like, shape (N, K)
        Design matrix whose first column is the all-ones intercept column.
    Y : array_like, shape (N,)
        Response (log price).
    """
    X = jnp.asarray(X)
    Xc = X[:, 1:] - X[:, 1:].mean(axis=0)
    b = numpyro.sample("b", dist.Normal(0.0, 1.0).expand([Xc.shape[1]]).to_event(1))
    intercept = numpyro.sample("Intercept", dist.StudentT(3.0, 8.0, 10.0))
    # Half-Student-t: the fold doubles the density on (0, inf), a constant, like brms' lccdf term.
    sigma = numpyro.sample("sigma", dist.FoldedDistribution(dist.StudentT(3.0, 0.0, 10.0)))
    numpyro.sample("Y", dist.Normal(intercept + Xc @ b, sigma).to_event(1), obs=Y)


def logearn_interaction_z(*, earn: Any, height: Any, male: Any) -> None:
    r"""log earnings on standardised height, sex and their interaction; flat priors.

    posteriordb ``logearn_interaction_z``: with :math:`z = (h - \bar h)/\mathrm{sd}(h)` (sd with the
    N - 1 denominator, as Stan's ``sd``), :math:`\log(\text{earn}_n) \sim N(\beta_1 + \beta_2 z_n +
    \beta_3 \text{male}_n + \beta_4 z_n \text{male}_n, \sigma)`. No prior statements in Stan: ``beta`` is
    flat on R^4 and ``sigma`` flat on (0, inf).

    ==========  ======  ========  =========================
    site        shape   support   role
    ==========  ======  ========  =========================
    beta        (4,)    real      latent (flat)
    sigma       ()      positive  latent (flat)
    log_earn    (N,)    real      observed (``log(earn)``)
    ==========  ======  ========  =========================

    Parameters
    ----------
    earn, height, male : array_like, shape (N,)
        Earnings (dollars, > 0), height (inches), and a 0/1 indicator.
    """
    height = _as_float(height)  # jnp, so that the port also runs with traced data (SVI's compiled steps)
    male = _as_float(male)
    z = (height - height.mean()) / height.std(ddof=1)
    design = jnp.stack([jnp.ones_like(z), z, male, z * male], axis=-1)
    beta = numpyro.sample("beta", _flat(constraints.real, (4,)))
    sigma = numpyro.sample("sigma", _flat(constraints.positive))
    numpyro.sample("log_earn", dist.Normal(design @ beta, sigma).to_event(1), obs=jnp.log(jnp.asarray(earn)))


def kidscore_interaction(*, kid_score: Any, mom_hs: Any, mom_iq: Any) -> None:
    r"""Child test score on mother's schooling, IQ and their interaction (posteriordb ``kidscore_interaction``).

    :math:`\text{kid\_score}_n \sim N(\beta_1 + \beta_2 \text{hs}_n + \beta_3 \text{iq}_n +
    \beta_4 \text{hs}_n \text{iq}_n, \sigma)`, ``sigma ~ half-Cauchy(0, 2.5)``; ``beta`` has no prior
    statement in Stan, so it is flat on R^4 here.

    ==========  ======  ========  ========
    site        shape   support   role
    ==========  ======  ========  ========
    beta        (4,)    real      latent (flat)
    sigma       ()      positive  latent
    kid_score   (N,)    real      observed
    ==========  ======  ========  ========

    Parameters
    ----------
    kid_score, mom_hs, mom_iq : array_like, shape (N,)
        Child's score, mother's high-school indicator (0/1), mother's IQ.
    """
    hs = _as_float(mom_hs)
    iq = _as_float(mom_iq)
    design = jnp.stack([jnp.ones_like(hs), hs, iq, hs * iq], axis=-1)
    beta = numpyro.sample("beta", _flat(constraints.real, (4,)))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(2.5))
    numpyro.sample("kid_score", dist.Normal(design @ beta, sigma).to_event(1), obs=kid_score)


def kilpisjarvi(
    *, x: Any, y: Any, pmualpha: float, psalpha: float, pmubeta: float, psbeta: float
) -> None:
    r"""Linear trend of summer temperature on an uncentred year (posteriordb ``kilpisjarvi``).

    :math:`\alpha \sim N(\text{pmualpha}, \text{psalpha})`, :math:`\beta \sim N(\text{pmubeta},
    \text{psbeta})`, ``sigma`` flat on (0, inf) (no prior statement), :math:`y_n \sim N(\alpha + \beta x_n,
    \sigma)`. Because ``x`` is around 4000, ``alpha`` and ``beta`` are correlated close to -1.

    ========  ======  ========  ========
    site      shape   support   role
    ========  ======  ========  ========
    alpha     ()      real      latent
    beta      ()      real      latent
    sigma     ()      positive  latent (flat)
    y         (N,)    real      observed
    ========  ======  ========  ========

    Parameters
    ----------
    x, y : array_like, shape (N,)
        Year (shifted) and mean summer temperature.
    pmualpha, psalpha, pmubeta, psbeta : float
        Prior means and scales of ``alpha`` and ``beta``.
    """
    x = _as_float(x)
    alpha = numpyro.sample("alpha", dist.Normal(pmualpha, psalpha))
    beta = numpyro.sample("beta", dist.Normal(pmubeta, psbeta))
    sigma = numpyro.sample("sigma", _flat(constraints.positive))
    numpyro.sample("y", dist.Normal(alpha + beta * x, sigma).to_event(1), obs=y)


def logmesquite_logvas(
    *,
    weight: Any,
    diam1: Any,
    diam2: Any,
    canopy_height: Any,
    total_height: Any,
    density: Any,
    group: Any,
) -> None:
    r"""log-log regression of mesquite bush weight (posteriordb ``logmesquite_logvas``); flat priors.

    Covariates (natural log): canopy volume ``log(diam1 diam2 canopy_height)``, area ``log(diam1 diam2)``,
    shape ``log(diam1 / diam2)``, ``log(total_height)``, ``log(density)``, and ``group`` (0/1), after an
    intercept: :math:`\log(\text{weight}_n) \sim N(\beta^\top x_n, \sigma)`. No prior statements in Stan:
    ``beta`` flat on R^7, ``sigma`` flat on (0, inf).

    ===========  ======  ========  ===========================
    site         shape   support   role
    ===========  ======  ========  ===========================
    beta         (7,)    real      latent (flat)
    sigma        ()      positive  latent (flat)
    log_weight   (N,)    real      observed (``log(weight)``)
    ===========  ======  ========  ===========================

    Parameters
    ----------
    weight, diam1, diam2, canopy_height, total_height, density, group : array_like, shape (N,)
        The mesquite measurements.
    """
    d1, d2 = _as_float(diam1), _as_float(diam2)
    design = jnp.stack(
        [
            jnp.ones_like(d1),
            jnp.log(d1 * d2 * _as_float(canopy_height)),
            jnp.log(d1 * d2),
            jnp.log(d1 / d2),
            jnp.log(_as_float(total_height)),
            jnp.log(_as_float(density)),
            _as_float(group),
        ],
        axis=-1,
    )
    beta = numpyro.sample("beta", _flat(constraints.real, (7,)))
    sigma = numpyro.sample("sigma", _flat(constraints.positive))
    numpyro.sample(
        "log_weight", dist.Normal(design @ beta, sigma).to_event(1), obs=jnp.log(_as_float(weight))
    )


def blr(*, X: Any, y: Any) -> None:
    r"""Bayesian linear regression without intercept (posteriordb ``blr``, data ``sblrc``).

    :math:`\beta_d \sim N(0, 10)`, :math:`\sigma \sim \text{half-Normal}(0, 10)`,
    :math:`y \sim N(X\beta, \sigma)`.

    ========  ======  ========  ========
    site      shape   support   role
    ========  ======  ========  ========
    beta      (D,)    real      latent
    sigma     ()      positive  latent
    y         (N,)    real      observed
    ========  ======  ========  ========

    Parameters
    ----------
    X : array_like, shape (N, D)
        Design matrix.
    y : array_like, shape (N,)
        Response.
    """
    X = jnp.asarray(X)
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([X.shape[1]]).to_event(1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(10.0))
    numpyro.sample("y", dist.Normal(X @ beta, sigma).to_event(1), obs=y)


def eight_schools_noncentered(*, y: Any, sigma: Any) -> None:
    r"""Eight schools, non-centred (posteriordb ``eight_schools_noncentered``).

    .. math::
        \tilde\theta_j \sim N(0, 1),\ \mu \sim N(0, 5),\ \tau \sim \text{half-Cauchy}(0, 5),\quad
        \theta_j = \mu + \tau\tilde\theta_j,\quad y_j \sim N(\theta_j, \sigma_j).

    ===========  ======  ========  =============
    site         shape   support   role
    ===========  ======  ========  =============
    theta_trans  (J,)    real      latent
    mu           ()      real      latent
    tau          ()      positive  latent
    theta        (J,)    real      deterministic
    y            (J,)    real      observed
    ===========  ======  ========  =============

    Parameters
    ----------
    y, sigma : array_like, shape (J,)
        Estimated effects and their known standard errors.
    """
    sigma = _as_float(sigma)
    theta_trans = numpyro.sample("theta_trans", dist.Normal(0.0, 1.0).expand([sigma.shape[0]]).to_event(1))
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    theta = numpyro.deterministic("theta", mu[..., None] + tau[..., None] * theta_trans)
    numpyro.sample("y", dist.Normal(theta, sigma).to_event(1), obs=y)


def low_dim_gauss_mix(*, y: Any) -> None:
    r"""Two-component Gaussian mixture with ordered means (posteriordb ``low_dim_gauss_mix``).

    :math:`\sigma_k \sim \text{half-Normal}(0, 2)`, :math:`\theta \sim \text{Beta}(5, 5)`,
    :math:`y_n \sim \theta N(\mu_1, \sigma_1) + (1 - \theta) N(\mu_2, \sigma_2)`, and
    :math:`\mu_1 < \mu_2` with the N(0, 2) log densities added for ``mu`` itself on the ordered space
    (Stan's ``ordered[2] mu; mu ~ normal(0, 2)``). A Normal base vector pushed through an ordered
    transform would be a different density; hence the flat ordered site plus the factor ``mu_prior``.

    ========  ======  ================  ================================
    site      shape   support           role
    ========  ======  ================  ================================
    mu        (2,)    ordered vector    latent
    mu_prior  ()      --                factor: N(0, 2) on each ``mu``
    sigma     (2,)    positive          latent
    theta     ()      (0, 1)            latent
    y         (N,)    real              observed (component marginalised)
    ========  ======  ================  ================================

    Parameters
    ----------
    y : array_like, shape (N,)
        Observations.
    """
    mu = numpyro.sample("mu", _flat_vector(constraints.ordered_vector, 2))
    numpyro.factor("mu_prior", dist.Normal(0.0, 2.0).log_prob(mu).sum(-1))
    sigma = numpyro.sample("sigma", dist.HalfNormal(2.0).expand([2]).to_event(1))
    theta = numpyro.sample("theta", dist.Beta(5.0, 5.0))
    weights = jnp.stack([theta, 1.0 - theta], axis=-1)
    mixture = dist.MixtureSameFamily(dist.Categorical(probs=weights), dist.Normal(mu, sigma))
    with numpyro.plate("data", jnp.shape(y)[0]):
        numpyro.sample("y", mixture, obs=y)


# --------------------------------------------------------------------------------------------------------
# Gaussian process
# --------------------------------------------------------------------------------------------------------

#: Diagonal jitter of the GP covariance: Stan's 1e-10 in float64; in float32 the squared-exponential
#: covariance on 11 points 2 apart is numerically singular at the typical length scale (smallest exact
#: eigenvalue ~1e-8 alpha^2, rounding error ~1e-6 alpha^2), so the Cholesky factor would be NaN.
GP_JITTER = {"float64": 1e-10, "float32": 1e-5}


def gp_pois_regr(*, x: Any, k: Any) -> None:
    r"""Latent Gaussian process with a Poisson likelihood, non-centred (posteriordb ``gp_pois_regr``).

    .. math::
        \rho \sim \text{Gamma}(25, 4),\ \alpha \sim \text{half-Normal}(0, 2),\ \tilde f_i \sim N(0, 1),\\
        K_{ij} = \alpha^2 \exp\!\big(-(x_i - x_j)^2 / 2\rho^2\big) + \epsilon\,[i = j],\quad
        f = L\tilde f\ (LL^\top = K),\quad k_i \sim \text{Poisson}(e^{f_i}).

    :math:`\epsilon` is Stan's ``1e-10`` when JAX runs in float64. In float32 that covariance is
    numerically singular and its Cholesky factor is NaN, so :math:`\epsilon = 10^{-5}\alpha^2` is used: it
    adds independent noise of sd :math:`0.003\alpha` to ``f``, well under one percent of ``f``'s
    posterior sd, but it is a (tiny) change of model; use float64 to reproduce Stan's density exactly.

    ========  ======  ========  =============
    site      shape   support   role
    ========  ======  ========  =============
    rho       ()      positive  latent
    alpha     ()      positive  latent
    f_tilde   (N,)    real      latent
    f         (N,)    real      deterministic
    k         (N,)    count     observed
    ========  ======  ========  =============

    Parameters
    ----------
    x : array_like, shape (N,)
        Inputs.
    k : array_like, shape (N,)
        Counts.
    """
    x = _as_float(x)
    rho = numpyro.sample("rho", dist.Gamma(25.0, 4.0))
    alpha = numpyro.sample("alpha", dist.HalfNormal(2.0))
    f_tilde = numpyro.sample("f_tilde", dist.Normal(0.0, 1.0).expand([x.shape[0]]).to_event(1))
    sq_dist = (x[:, None] - x[None, :]) ** 2
    cov = alpha[..., None, None] ** 2 * jnp.exp(-sq_dist / (2.0 * rho[..., None, None] ** 2))
    if x.dtype == jnp.float64:
        jitter = GP_JITTER["float64"]
    else:
        jitter = GP_JITTER["float32"] * alpha[..., None, None] ** 2
    cov = cov + jitter * jnp.eye(x.shape[0], dtype=x.dtype)
    f = numpyro.deterministic("f", jnp.einsum("...ij,...j->...i", jnp.linalg.cholesky(cov), f_tilde))
    # A failed Cholesky factor (NaN) must reject the point, not stop the run: no argument validation.
    numpyro.sample("k", dist.Poisson(jnp.exp(f), validate_args=False).to_event(1), obs=k)


# --------------------------------------------------------------------------------------------------------
# ODE inverse problems
# --------------------------------------------------------------------------------------------------------


# The solver and the right-hand sides live with the zoo's ODE models (ppzoo.models.lotka_volterra,
# ppzoo.models.one_compartment); the ports below define posteriordb's densities with them.


#: Integrator settings. Lotka-Volterra: Stan's ``integrate_ode_rk45(..., 1e-5, 1e-3, 500)`` tolerances
#: (relative error of the solution ~1e-3 at the posterior, < 0.5% of the noise sd ``sigma`` ~ 0.25 on
#: the log scale). Pharmacokinetics: Stan's ``integrate_ode_bdf`` defaults (1e-10) are stricter than the
#: data need; 1e-6 puts the solution error far below the noise sd ``sigma`` ~ 0.13. ``mxstep`` bounds
#: the steps per output interval; by a step-size stability estimate it binds only where the
#: Michaelis-Menten term is extremely stiff (``K_m`` below ~1e-5), a region of negligible posterior mass.
ODE_SETTINGS = {
    "lotka_volterra": {"rtol": LotkaVolterraConfig.rtol, "atol": LotkaVolterraConfig.atol, "mxstep": LotkaVolterraConfig.mxstep},
    "one_comp_mm_elim_abs": {
        "rtol": OneCompartmentConfig.rtol, "atol": OneCompartmentConfig.atol, "mxstep": OneCompartmentConfig.mxstep,
    },
}


def lotka_volterra(*, ts: Any, y_init: Any, y: Any) -> None:
    r"""Lotka-Volterra predator-prey ODE fitted to the Hudson Bay lynx-hare pelts (posteriordb ``lotka_volterra``).

    .. math::
        \dot u = (\alpha - \beta v) u,\quad \dot v = (-\gamma + \delta u) v,\quad (u, v)(0) = z_\text{init};\\
        \alpha, \gamma \sim N^+(1, 0.5),\ \beta, \delta \sim N^+(0.05, 0.05),\
        \sigma_k \sim \text{LogNormal}(-1, 1),\ z_{\text{init},k} \sim \text{LogNormal}(\log 10, 1);\\
        y_{\text{init},k} \sim \text{LogNormal}(\log z_{\text{init},k}, \sigma_k),\quad
        y_{n,k} \sim \text{LogNormal}(\log z_k(t_n), \sigma_k).

    ``theta = (alpha, beta, gamma, delta)``. The truncated normals differ from Stan's untruncated
    statements on (0, inf) only by parameter-free constants. The ODE is solved by an adaptive
    Dormand-Prince method at Stan's tolerances (:data:`ODE_SETTINGS`).

    The posterior has local modes, e.g. a poor fit with ``sigma`` ~ (0.5, 0.6) and ``theta`` ~
    (0.9, 0.06, 1.1, 0.04) whose log density is ~45 units below the main mode's (0.55, 0.028, 0.80, 0.024;
    ``sigma`` ~ 0.25). NUTS chains started at random points or at the prior median stayed in such modes
    through the warmup in our runs (2 of 4 chains with seed 0); start chains near the main mode, or
    detect stuck chains with R-hat.

    ========  =======  ========  =================================
    site      shape    support   role
    ========  =======  ========  =================================
    theta     (4,)     positive  latent
    z_init    (2,)     positive  latent
    sigma     (2,)     positive  latent
    z         (N, 2)   positive  deterministic (ODE solution at ts)
    y_init    (2,)     positive  observed
    y         (N, 2)   positive  observed (column 0 hare, 1 lynx)
    ========  =======  ========  =================================

    Parameters
    ----------
    ts : array_like, shape (N,)
        Measurement times (> 0).
    y_init : array_like, shape (2,)
        Populations measured at t = 0.
    y : array_like, shape (N, 2)
        Populations measured at ``ts``.
    """
    # The zoo model with its default config is this posterior (same sites, priors and tolerances).
    _lotka_volterra_model(ts, y_init, y, config=LotkaVolterraConfig())


def one_comp_mm_elim_abs(*, t0: float, D: float, V: float, times: Any, C_hat: Any) -> None:
    r"""One-compartment pharmacokinetics, first-order absorption, Michaelis-Menten elimination.

    posteriordb ``one_comp_mm_elim_abs``:

    .. math::
        \dot C = \frac{D k_a}{V} e^{-k_a t} - \frac{V_m}{V}\frac{C}{K_m + C},\quad C(t_0) = 0;\quad
        k_a, K_m, V_m, \sigma \sim \text{half-Cauchy}(0, 1);\quad
        \hat C_n \sim \text{LogNormal}(\log C(t_n), \sigma).

    Solved by an adaptive Dormand-Prince method (:data:`ODE_SETTINGS`); Stan used its BDF integrator.

    ========  ======  ========  ======================================
    site      shape   support   role
    ========  ======  ========  ======================================
    k_a       ()      positive  latent
    K_m       ()      positive  latent
    V_m       ()      positive  latent
    sigma     ()      positive  latent
    C         (N,)    positive  deterministic (ODE solution at times)
    C_hat     (N,)    positive  observed
    ========  ======  ========  ======================================

    Parameters
    ----------
    t0 : float
        Initial time (days).
    D : float
        Dose (mg).
    V : float
        Compartment volume (L).
    times : array_like, shape (N,)
        Measurement times (days), all after ``t0``.
    C_hat : array_like, shape (N,)
        Measured concentrations (mg/L).
    """
    times = _as_float(times)
    k_a = numpyro.sample("k_a", dist.HalfCauchy(1.0))
    K_m = numpyro.sample("K_m", dist.HalfCauchy(1.0))
    V_m = numpyro.sample("V_m", dist.HalfCauchy(1.0))
    sigma = numpyro.sample("sigma", dist.HalfCauchy(1.0))
    c0 = jnp.zeros((), dtype=times.dtype)
    conc = solve_ode(
        one_compartment_rhs, c0, float(t0), times, (k_a, K_m, V_m, float(D), float(V), float(t0)),
        **ODE_SETTINGS["one_comp_mm_elim_abs"],
    )
    conc = numpyro.deterministic("C", conc)
    # A failed solve (NaN) or a non-positive C must reject the point, not stop the run.
    with numpyro.validation_enabled(False):
        likelihood = dist.LogNormal(jnp.log(conc), sigma).to_event(1)
    numpyro.sample("C_hat", likelihood, obs=C_hat)


# --------------------------------------------------------------------------------------------------------
# Registry and loading
# --------------------------------------------------------------------------------------------------------


def _arrays(raw: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {key: np.asarray(raw[key], dtype=float) for key in keys}


@dataclass(frozen=True)
class _Case:
    model: Callable[..., None]
    prepare: Callable[[Mapping[str, Any]], dict[str, Any]]
    x64: bool = False
    log_scale: tuple[str, ...] = ()
    #: NUTS target acceptance when Stan's adapt_delta is not enough for NumPyro's and BlackJAX's NUTS.
    target_accept_prob: float | None = None


#: Registry: posteriordb posterior name -> port. Explicit, so an unknown name can list the valid ones.
_CASES: dict[str, _Case] = {
    "arK-arK": _Case(ark, lambda d: {"K": int(d["K"]), "y": np.asarray(d["y"], dtype=float)}),
    "arma-arma11": _Case(arma11, lambda d: _arrays(d, ("y",))),
    "diamonds-diamonds": _Case(diamonds, lambda d: _arrays(d, ("X", "Y"))),
    "earnings-logearn_interaction_z": _Case(logearn_interaction_z, lambda d: _arrays(d, ("earn", "height", "male"))),
    "eight_schools-eight_schools_noncentered": _Case(eight_schools_noncentered, lambda d: _arrays(d, ("y", "sigma"))),
    "garch-garch11": _Case(garch11, lambda d: {"y": np.asarray(d["y"], dtype=float), "sigma1": float(d["sigma1"])}),
    "gp_pois_regr-gp_pois_regr": _Case(
        gp_pois_regr,
        lambda d: {"x": np.asarray(d["x"], dtype=float), "k": np.asarray(d["k"], dtype=np.int32)},
        x64=True,
    ),
    "hmm_example-hmm_example": _Case(hmm_example, lambda d: _arrays(d, ("y",))),
    "hudson_lynx_hare-lotka_volterra": _Case(lotka_volterra, lambda d: _arrays(d, ("ts", "y_init", "y"))),
    "kidiq-kidscore_interaction": _Case(kidscore_interaction, lambda d: _arrays(d, ("kid_score", "mom_hs", "mom_iq"))),
    "kilpisjarvi_mod-kilpisjarvi": _Case(
        kilpisjarvi,
        lambda d: {
            **_arrays(d, ("x", "y")),
            **{key: float(d[key]) for key in ("pmualpha", "psalpha", "pmubeta", "psbeta")},
        },
    ),
    "low_dim_gauss_mix-low_dim_gauss_mix": _Case(low_dim_gauss_mix, lambda d: _arrays(d, ("y",))),
    "mesquite-logmesquite_logvas": _Case(
        logmesquite_logvas,
        lambda d: _arrays(d, ("weight", "diam1", "diam2", "canopy_height", "total_height", "density", "group")),
    ),
    "one_comp_mm_elim_abs-one_comp_mm_elim_abs": _Case(
        one_comp_mm_elim_abs,
        lambda d: {
            "t0": float(d["t0"]),
            "D": float(d["D"]),
            "V": float(d["V"]),
            **_arrays(d, ("times", "C_hat")),
        },
        # Along the ridge K_m -> inf with V_m / K_m fixed the likelihood is flat and the two half-Cauchy
        # priors leave a density ~ K_m^-3: infinite variance (Hill tail index of the reference draws
        # 1.4-1.9 for K_m, 2.3-3 for V_m; 10 of 10,000 draws carry half the sample variance).
        log_scale=("K_m", "V_m"),
        # At Stan's 0.99, NumPyro's NUTS (4 x 500 + 500) diverged 6 times with seed 0 and overstated the sd of
        # log V_m twofold (seeds 1, 2 passed); at 0.995 seeds 0-3 passed (0, 0, 1, 0 divergences).
        target_accept_prob=0.995,
    ),
    "sblrc-blr": _Case(blr, lambda d: _arrays(d, ("X", "y"))),
}


@dataclass(frozen=True)
class ReferencePosterior:
    """A posteriordb posterior: the NumPyro port, its data and Stan's reference draws.

    Attributes
    ----------
    name : str
        posteriordb posterior name, ``"<data>-<model>"``.
    model : Callable
        The NumPyro model; ``model(**data)`` defines the posterior.
    data : dict
        Keyword arguments for ``model`` (numpy arrays and Python scalars).
    draws : dict[str, numpy.ndarray]
        Reference draws by site name, shape ``(chain, draw, *site_shape)`` = ``(10, 1000, ...)``,
        assembled from Stan's scalar names (``theta[1]`` is ``draws["theta"][..., 0]``); float64 (the
        shipped copy stores them as float32, 7 significant digits).
    summary : pandas.DataFrame
        ``reference_summary.csv``: mean, sd (ddof=1), q05, median, q95 per Stan scalar name.
    meta : dict
        ``meta.json``: dimensions, how the reference was made, its diagnostics, source paths.
    adapt_delta : float
        Stan's target acceptance probability for this posterior.
    target_accept_prob : float
        What to pass as NUTS ``target_accept_prob``: Stan's ``adapt_delta``, or higher where a case needs it
        (``one_comp_mm_elim_abs``: 0.995).
    x64 : bool
        Whether the port needs ``jax_enable_x64`` to define exactly Stan's density (see
        :func:`gp_pois_regr`).
    log_scale : tuple of str
        Positive sites that :func:`compare_to_reference` compares on the log scale by default, because
        their posterior tail is so heavy (infinite variance) that sample means and sds obey no central
        limit theorem (``K_m`` and ``V_m`` of the pharmacokinetic model).
    """

    name: str
    model: Callable[..., None]
    data: dict[str, Any]
    draws: dict[str, np.ndarray] = field(repr=False)
    summary: pd.DataFrame = field(repr=False)
    meta: dict[str, Any] = field(repr=False)
    adapt_delta: float = 0.8
    x64: bool = False
    log_scale: tuple[str, ...] = ()
    target_accept_prob: float = 0.8

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {v.shape[2:]}" for k, v in self.draws.items())
        return f"ReferencePosterior({self.name!r}, model={self.model.__name__}, draws={{{shapes}}})"


def reference_names() -> list[str]:
    """Return the names of the 15 ported posteriordb posteriors, sorted."""
    return sorted(_CASES)


def _reference_dir() -> Path:
    return validation_dir() / "posteriordb"


def _packed_or_raw(folder: Path, packed: str, raw: str) -> Path:
    """The packed file of a case folder if present, else the raw one (layouts: :func:`validation_dir`)."""
    for candidate in (folder / packed, folder / raw):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{folder} has neither {packed} (the layout ppzoo ships) nor {raw} (the raw posteriordb layout). "
        f"Unset PPZOO_VALIDATION_DIR to use the shipped data, or point it at a complete validation folder."
    )


def _read_data(folder: Path) -> dict[str, Any]:
    """posteriordb's ``data.json`` of a case folder, from ``data.json.gz`` (packed) or ``data.json`` (raw)."""
    path = _packed_or_raw(folder, "data.json.gz", "data.json")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def _read_draws(folder: Path) -> dict[str, np.ndarray]:
    """Reference draws by Stan scalar name, each float64 of shape (chain, draw), in the file's order.

    The packed ``reference_draws.npz`` holds ``draws``, float32 (chain, draw, parameter), and
    ``parameter_names``; the raw ``reference_draws.json`` is posteriordb's list of chains. float32 draws
    are cast to float64 here, so every statistic computed from them is computed in float64.
    """
    path = _packed_or_raw(folder, "reference_draws.npz", "reference_draws.json")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as packed:
            draws = packed["draws"].astype(np.float64)
            names = [str(n) for n in packed["parameter_names"]]
        return {n: np.ascontiguousarray(draws[..., i]) for i, n in enumerate(names)}
    with open(path) as fh:
        chains = json.load(fh)
    return {key: np.stack([np.asarray(chain[key], dtype=float) for chain in chains]) for key in chains[0]}


_INDEX = re.compile(r"^(?P<site>[^\[\]]+)(?:\[(?P<index>[0-9, ]+)\])?$")


def _parse_stan_name(name: str) -> tuple[str, tuple[int, ...]]:
    match = _INDEX.match(name)
    if match is None:
        raise ValueError(
            f"Cannot parse the Stan parameter name {name!r}: expected 'site' or 'site[i]' / 'site[i,j]' with "
            "1-based integer indices, e.g. 'theta[1]'."
        )
    index = match.group("index")
    idx = tuple(int(i) - 1 for i in index.split(",")) if index else ()
    if any(i < 0 for i in idx):
        raise ValueError(f"Stan parameter name {name!r} has an index below 1; Stan indices start at 1.")
    return match.group("site"), idx


def assemble_draws(columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Assemble Stan-named scalar draws into arrays by site.

    Parameters
    ----------
    columns : Mapping[str, array_like]
        Stan scalar name (``"mu"``, ``"theta[1]"``, ``"z[2,1]"``; 1-based) -> draws of shape
        ``(chain, draw)``.

    Returns
    -------
    dict[str, numpy.ndarray]
        Site name -> array ``(chain, draw, *shape)`` with ``theta[i]`` at ``[..., i - 1]``; the shape is
        the largest index seen along each axis. Sites keep the order of first appearance.

    Raises
    ------
    ValueError
        If a name cannot be parsed, a site mixes scalar and indexed names, or an indexed site has holes.
    """
    parsed: dict[str, dict[tuple[int, ...], np.ndarray]] = {}
    for name, values in columns.items():
        site, idx = _parse_stan_name(name)
        parsed.setdefault(site, {})[idx] = np.asarray(values, dtype=float)
    out: dict[str, np.ndarray] = {}
    for site, entries in parsed.items():
        ranks = {len(i) for i in entries}
        if len(ranks) != 1:
            raise ValueError(
                f"Site {site!r} appears both with and without indices ({sorted(map(str, entries))[:4]}); "
                "each site needs one consistent naming, e.g. only 'theta[1]', 'theta[2]', ..."
            )
        first = next(iter(entries.values()))
        if ranks == {0}:
            out[site] = first
            continue
        shape = tuple(max(i[axis] for i in entries) + 1 for axis in range(ranks.pop()))
        if len(entries) != math.prod(shape):
            raise ValueError(
                f"Site {site!r} has {len(entries)} indexed names but its largest indices imply shape {shape}; "
                "every element of the site must be present."
            )
        array = np.empty(first.shape + shape, dtype=float)
        for idx, values in entries.items():
            array[(..., *idx)] = values
        out[site] = array
    return out


def stan_names(site: str, shape: tuple[int, ...]) -> list[str]:
    """Stan-style scalar names of a site of ``shape``, in C order: ``theta[1]``, ..., ``z[1,2]``.

    Examples
    --------
    >>> stan_names("theta", (2,)), stan_names("mu", ())
    (['theta[1]', 'theta[2]'], ['mu'])
    """
    if not shape:
        return [site]
    return [f"{site}[{','.join(str(i + 1) for i in idx)}]" for idx in np.ndindex(*shape)]


def load_reference(name: str) -> ReferencePosterior:
    """Load a posteriordb reference posterior with its NumPyro port.

    Parameters
    ----------
    name : str
        One of :func:`reference_names`, e.g. ``"eight_schools-eight_schools_noncentered"``.

    Returns
    -------
    ReferencePosterior

    Raises
    ------
    ValueError
        If ``name`` is not one of the ported posteriors (the message lists them).
    FileNotFoundError
        If the validation folder is missing (see :func:`ppzoo.data._paths.validation_dir`).

    Examples
    --------
    >>> ref = load_reference("eight_schools-eight_schools_noncentered")  # doctest: +SKIP
    >>> ref.draws["theta"].shape  # doctest: +SKIP
    (10, 1000, 8)
    """
    if not isinstance(name, str) or name not in _CASES:
        raise ValueError(
            f"Unknown reference posterior {name!r}. Valid names: {', '.join(reference_names())}. "
            "Example: load_reference('eight_schools-eight_schools_noncentered')."
        )
    case = _CASES[name]
    folder = _reference_dir() / name
    raw = _read_data(folder)
    with open(folder / "meta.json") as fh:
        meta = json.load(fh)
    columns = _read_draws(folder)
    summary = pd.read_csv(folder / "reference_summary.csv", index_col="parameter")
    adapt_delta = float(
        meta.get("reference_inference", {}).get("method_arguments", {}).get("control", {}).get("adapt_delta", 0.8)
    )
    return ReferencePosterior(
        name=name,
        model=case.model,
        data=case.prepare(raw),
        draws=assemble_draws(columns),
        summary=summary,
        meta=meta,
        adapt_delta=adapt_delta,
        x64=case.x64,
        log_scale=case.log_scale,
        target_accept_prob=max(adapt_delta, case.target_accept_prob or 0.0),
    )


# --------------------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------------------


def _samples_of(fit_or_samples: Any) -> Mapping[str, Any]:
    if isinstance(fit_or_samples, Mapping):
        return fit_or_samples
    samples = getattr(fit_or_samples, "samples", None)
    if isinstance(samples, Mapping):
        return samples
    raise TypeError(
        "fit_or_samples must be a fit result with a .samples dict or a dict of site -> (chain, draw, *shape) "
        f"arrays; got {type(fit_or_samples).__name__}. Example: compare_to_reference(fit.samples, ref)."
    )


def _stack_sites(
    draws: Mapping[str, Any], sites: Mapping[str, tuple[int, ...]], label: str
) -> tuple[np.ndarray, list[str]]:
    """Flatten the sites' scalars into ``(chain, draw, n_scalars)`` with their Stan names."""
    blocks, names = [], []
    for site, shape in sites.items():
        if site not in draws:
            raise ValueError(
                f"The {label} has no site {site!r}, which the reference has. Sites present: "
                f"{', '.join(sorted(draws))}. Deterministic quantities must be numpyro.deterministic sites."
            )
        values = np.asarray(draws[site], dtype=float)
        if values.ndim < 2 or values.shape[2:] != shape:
            raise ValueError(
                f"Site {site!r} of the {label} has shape {values.shape}; expected (chain, draw, *{shape}) "
                f"= (chain, draw{''.join(', ' + str(s) for s in shape)}). Pass arrays with chain and draw axes "
                "first (add one with x[None] for a single chain of independent draws)."
            )
        blocks.append(values.reshape(values.shape[:2] + (-1,)))
        names.extend(stan_names(site, shape))
    return np.concatenate(blocks, axis=-1), names


def _mc_errors(x: np.ndarray, independent: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MCSE of the mean, MCSE of the sd and bulk ESS per column of ``x`` of shape (chain, draw, n)."""
    import arviz_stats as azs

    if independent:
        flat = x.reshape(-1, x.shape[-1])
        n = flat.shape[0]
        centred = flat - flat.mean(axis=0)
        sd = flat.std(axis=0, ddof=1)
        # Delta method for iid draws: var(s^2) ~ (m4 - s^4) / n and se(s) = se(s^2) / (2 s).
        m4 = (centred**4).mean(axis=0)
        mcse_sd = np.sqrt(np.maximum(m4 - sd**4, 0.0) / n) / (2.0 * sd)
        return sd / np.sqrt(n), mcse_sd, np.full(x.shape[-1], float(n))
    mcse_mean = np.asarray(azs.mcse(x, method="mean", chain_axis=0, draw_axis=1))
    mcse_sd = np.asarray(azs.mcse(x, method="sd", chain_axis=0, draw_axis=1))
    ess = np.asarray(azs.ess(x, method="bulk", chain_axis=0, draw_axis=1))
    return mcse_mean, mcse_sd, ess


def compare_to_reference(
    fit_or_samples: Any,
    reference: ReferencePosterior,
    *,
    z_tol: float = 4.0,
    w1_tol: float = 5.0,
    independent: bool | None = None,
    log_scale: Sequence[str] | None = None,
) -> pd.DataFrame:
    r"""Compare posterior draws with a posteriordb reference, parameter by parameter.

    For every scalar of every reference site (Stan names, ``theta[1]``, ...) the table holds

    * ``mean``, ``ref_mean`` and ``z_mean`` = (mean - ref_mean) / sqrt(mcse^2 + ref_mcse^2), with both
      Monte Carlo standard errors of the mean from ``arviz_stats.mcse`` (rank-normalised ESS [2]_);
    * ``sd``, ``ref_sd``, ``sd_ratio`` = sd / ref_sd and ``z_sd`` = (sd - ref_sd) /
      sqrt(mcse_sd^2 + ref_mcse_sd^2), the MCSEs of the sd from ``arviz_stats.mcse(method="sd")``;
    * ``w1`` = W1(draws, reference draws) / ref_sd, the 1-D Wasserstein distance
      (``scipy.stats.wasserstein_distance``) in units of the reference sd, and its bound
      ``w1_bound`` = w1_tol * sqrt(1/ess + 1/ref_ess) with bulk ESS from ``arviz_stats.ess``;
    * ``passed`` = |z_mean| < z_tol and |z_sd| < z_tol and w1 < w1_bound.

    Why these tolerances. Under a correct sampler ``z_mean`` and ``z_sd`` are approximately standard
    normal, so ``z_tol = 4`` has a false-alarm rate of 6e-5 per scalar, about 1% over the ~120 scalars of
    the 15 posteriors; for a 4 x 1000 NUTS run with ESS >= 1000 against the 10,000 reference draws it
    detects mean shifts above ~0.13 sd and sd errors above ~10%. W1 between two samples of the same
    distribution is not zero: simulating normal, Student-t(5) and exponential samples of n against
    10,000 draws gave E[W1/sd] = 1.2-1.5 sqrt(1/n + 1/10000) with a 99.9% quantile at or below
    3.9 sqrt(1/n + 1/10000) (n = 400, 1000, 4000); ``w1_tol = 5`` sits above that quantile, so W1 is a
    check of shape (skew, tails, modes) that mean and sd miss, at 0.17 sd for ESS 1000. These thresholds
    scale with the ESS, so a reduced run (2 x 500) is judged with the same defaults.

    All of this assumes finite fourth moments. Sites in ``log_scale`` (by default
    ``reference.log_scale``, e.g. the infinite-variance ``K_m`` of the pharmacokinetic model) are
    compared after taking logs, where their moments are finite; their rows say ``scale == "log"``.

    Parameters
    ----------
    fit_or_samples : object with ``.samples`` or Mapping[str, array_like]
        Draws by site name, each of shape ``(chain, draw, *site_shape)`` in the constrained space; a
        ``ppzoo.fit`` result works as it is. Extra sites are ignored.
    reference : ReferencePosterior
        From :func:`load_reference`.
    z_tol : float, default 4.0
        Bound on |z_mean| and |z_sd|.
    w1_tol : float, default 5.0
        Multiplier of sqrt(1/ess + 1/ref_ess) bounding ``w1``.
    independent : bool, optional
        Whether the draws are independent (SVI or other exact samplers): then MCSE = sd / sqrt(n), the
        iid delta-method MCSE of the sd and ESS = n are used. Default: independent if there is one chain
        (arviz needs >= 2 chains to judge mixing), otherwise MCMC (arviz MCSE and ESS).
    log_scale : sequence of str, optional
        Positive reference sites to compare on the log scale. Default ``reference.log_scale``; pass
        ``()`` to compare every site on its own scale.

    Returns
    -------
    pandas.DataFrame
        One row per scalar, indexed by Stan name, with columns ``posterior``, ``site``, ``scale``
        (``"identity"`` or ``"log"``: all statistics of that row are of the logged draws), ``mean``,
        ``ref_mean``, ``mcse``, ``ref_mcse``, ``z_mean``, ``sd``, ``ref_sd``, ``sd_ratio``, ``mcse_sd``,
        ``ref_mcse_sd``, ``z_sd``, ``w1``, ``w1_bound``, ``ess``, ``ref_ess``, ``passed``.

    Raises
    ------
    TypeError
        If ``fit_or_samples`` is neither a mapping nor has a ``.samples`` mapping, or ``reference`` is not
        a :class:`ReferencePosterior`.
    ValueError
        If a reference site is missing or has the wrong shape, if a tolerance is not positive, if there
        are fewer than 4 draws, or if a ``log_scale`` site is not a reference site or has draws <= 0.
    """
    from scipy.stats import wasserstein_distance

    if not isinstance(reference, ReferencePosterior):
        raise TypeError(
            f"reference must be a ReferencePosterior from load_reference(name); got {type(reference).__name__}."
        )
    for label, tol in (("z_tol", z_tol), ("w1_tol", w1_tol)):
        if not (isinstance(tol, (int, float)) and tol > 0):
            raise ValueError(f"{label} must be a positive number, got {tol!r}; e.g. {label}=4.0.")
    samples = _samples_of(fit_or_samples)
    sites = {site: values.shape[2:] for site, values in reference.draws.items()}
    ours, names = _stack_sites(samples, sites, "fit")
    ref, _ = _stack_sites(reference.draws, sites, "reference")
    site_of = [site for site, shape in sites.items() for _ in range(math.prod(shape))]
    logged = tuple(reference.log_scale if log_scale is None else log_scale)
    unknown = sorted(set(logged) - set(sites))
    if unknown:
        raise ValueError(
            f"log_scale names {', '.join(map(repr, unknown))}, which are not sites of the reference; "
            f"valid sites: {', '.join(sites)}."
        )
    on_log = np.array([site in logged for site in site_of])
    if on_log.any():
        for label, values in (("fit", ours), ("reference", ref)):
            if np.any(values[..., on_log] <= 0):
                raise ValueError(
                    f"The {label} has draws <= 0 for a log_scale site ({', '.join(logged)}); only positive "
                    "sites can be compared on the log scale. Pass log_scale=() to compare on the original scale."
                )
        ours, ref = ours.copy(), ref.copy()
        ours[..., on_log] = np.log(ours[..., on_log])
        ref[..., on_log] = np.log(ref[..., on_log])
    if ours.shape[0] * ours.shape[1] < 4:
        raise ValueError(
            f"compare_to_reference needs at least 4 draws; got {ours.shape[0]} chain(s) x {ours.shape[1]} draw(s)."
        )
    if independent is None:
        independent = ours.shape[0] == 1

    mcse, mcse_sd, ess = _mc_errors(ours, independent)
    ref_mcse, ref_mcse_sd, ref_ess = _mc_errors(ref, False)
    flat_ours = ours.reshape(-1, ours.shape[-1])
    flat_ref = ref.reshape(-1, ref.shape[-1])
    mean, ref_mean = flat_ours.mean(axis=0), flat_ref.mean(axis=0)
    sd, ref_sd = flat_ours.std(axis=0, ddof=1), flat_ref.std(axis=0, ddof=1)
    w1 = np.array(
        [wasserstein_distance(flat_ours[:, i], flat_ref[:, i]) for i in range(flat_ours.shape[1])]
    ) / ref_sd
    z_mean = (mean - ref_mean) / np.sqrt(mcse**2 + ref_mcse**2)
    z_sd = (sd - ref_sd) / np.sqrt(mcse_sd**2 + ref_mcse_sd**2)
    w1_bound = w1_tol * np.sqrt(1.0 / ess + 1.0 / ref_ess)
    table = pd.DataFrame(
        {
            "posterior": reference.name,
            "site": site_of,
            "scale": np.where(on_log, "log", "identity"),
            "mean": mean,
            "ref_mean": ref_mean,
            "mcse": mcse,
            "ref_mcse": ref_mcse,
            "z_mean": z_mean,
            "sd": sd,
            "ref_sd": ref_sd,
            "sd_ratio": sd / ref_sd,
            "mcse_sd": mcse_sd,
            "ref_mcse_sd": ref_mcse_sd,
            "z_sd": z_sd,
            "w1": w1,
            "w1_bound": w1_bound,
            "ess": ess,
            "ref_ess": ref_ess,
        },
        index=pd.Index(names, name="parameter"),
    )
    # NaN (e.g. draws that are all NaN) must fail, so test the pass condition rather than the failure.
    table["passed"] = (np.abs(z_mean) < z_tol) & (np.abs(z_sd) < z_tol) & (w1 < w1_bound)
    return table


def reference_table(results: Mapping[str, pd.DataFrame | Mapping[str, pd.DataFrame]]) -> pd.DataFrame:
    """Condense :func:`compare_to_reference` tables to one row per posterior and engine.

    Parameters
    ----------
    results : Mapping[str, DataFrame or Mapping[str, DataFrame]]
        Engine name -> either the concatenation of its ``compare_to_reference`` tables (the ``posterior``
        column tells the cases apart) or a mapping posterior name -> table.

    Returns
    -------
    pandas.DataFrame
        Indexed by (``posterior``, ``engine``), with columns ``n_params``, ``max_abs_z_mean``,
        ``max_abs_z_sd``, ``worst_sd_ratio`` (the ratio farthest from 1), ``max_w1`` (largest W1 / ref sd),
        ``min_ess``, ``n_failed``, ``failed`` (their Stan names) and ``passed`` (all scalars passed).

    Raises
    ------
    TypeError
        If an engine's entry is neither a DataFrame nor a mapping of DataFrames.
    """
    rows = []
    for engine, entry in results.items():
        if isinstance(entry, pd.DataFrame):
            table = entry
        elif isinstance(entry, Mapping) and all(isinstance(t, pd.DataFrame) for t in entry.values()):
            table = pd.concat(list(entry.values())) if entry else pd.DataFrame(columns=["posterior"])
        else:
            raise TypeError(
                f"results[{engine!r}] must be a compare_to_reference DataFrame or a dict posterior -> DataFrame; "
                f"got {type(entry).__name__}."
            )
        for posterior, group in table.groupby("posterior", sort=True):
            worst = group["sd_ratio"].iloc[int(np.argmax(np.abs(np.log(group["sd_ratio"].to_numpy()))))]
            failed = [str(p) for p in group.index[~group["passed"].to_numpy()]]
            rows.append(
                {
                    "posterior": posterior,
                    "engine": engine,
                    "n_params": len(group),
                    "max_abs_z_mean": float(np.abs(group["z_mean"]).max()),
                    "max_abs_z_sd": float(np.abs(group["z_sd"]).max()),
                    "worst_sd_ratio": float(worst),
                    "max_w1": float(group["w1"].max()),
                    "min_ess": float(group["ess"].min()),
                    "n_failed": len(failed),
                    "failed": ", ".join(failed),
                    "passed": not failed,
                }
            )
    columns = [
        "posterior", "engine", "n_params", "max_abs_z_mean", "max_abs_z_sd", "worst_sd_ratio", "max_w1",
        "min_ess", "n_failed", "failed", "passed",
    ]
    return pd.DataFrame(rows, columns=columns).set_index(["posterior", "engine"])
