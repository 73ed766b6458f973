"""NumPyro ports of 15 posteriordb models, each defining the same posterior density as its Stan program.

Flat improper priors where Stan has no prior statement, Stan's constrained-space priors on ordered vectors,
GARCH's triangle; every quantity in the reference draws is a sample or ``numpyro.deterministic`` site of the
same name and shape. The table of posteriors, model functions and data keys is in :mod:`ppzoo.reference`.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from ppzoo.models.lotka_volterra import LotkaVolterraConfig, solve_ode
from ppzoo.models.lotka_volterra import lotka_volterra as _lotka_volterra_model
from ppzoo.models.one_compartment import OneCompartmentConfig, one_compartment_rhs

__all__ = [
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
