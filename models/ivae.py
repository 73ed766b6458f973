r"""Identifiable VAE (iVAE): nonlinear ICA with an auxiliary variable, and the plain VAE on the same code.

Generative story (Khemakhem, Kingma, Monti & Hyvärinen 2020, Eqs. 5-7 with a Gaussian exponential family):
for data points :math:`n = 1..N` with auxiliary variable :math:`u_n \in \{0..M-1\}` (a segment index),
sources :math:`k = 1..K`, observed dims :math:`d = 1..D`:

.. math::

    \log \lambda^2_{m} &= g_\phi(e_m) \quad \text{(prior network on the one-hot } e_m\text{; } m = 0..M-1) \\
    \mu_m &= 0 \text{ or the other half of } g_\phi(e_m) \\
    z_{n} \mid u_n &\sim \mathcal{N}\big(\mu_{u_n}, \operatorname{diag}(\lambda^2_{u_n})\big)
        \quad \text{(factorized, conditionally on } u) \\
    x_n \mid z_n &\sim \mathcal{N}\big(f_\theta(z_n), \sigma^2 I_D\big)
        \quad \text{(decoder MLP, fixed or learned } \sigma)

and the amortized guide (the model's own, used by SVI) is

.. math:: q_\psi(z_n \mid x_n, u_n) = \mathcal{N}\big(m_\psi(x_n, e_{u_n}), L_\psi L_\psi^\top\big),
    \quad L_\psi = \operatorname{diag} s_\psi(x_n, e_{u_n}) \, (I + B_\psi(x_n, e_{u_n}))

with :math:`B_\psi` strictly lower triangular (``encoder_covariance="full"``, the default), or :math:`B_\psi = 0`
(``"diagonal"``, the reference code's mean-field encoder). The full covariance matters for identifiability:
with little decoder noise the exact posterior is correlated whenever the decoder's Jacobian has non-orthogonal
columns, and a mean-field encoder's ELBO penalty for that pulls the decoder toward orthogonal columns, i.e.
rotates the sources (see ``IVAEConfig.encoder_covariance``).

The prior network takes the one-hot segment vector, as in the reference code (``ilkhem/iVAE``,
``models/nets.py``, ``iVAE.logl``); because its input is one-hot it is evaluated once on the identity
matrix, giving an ``(M, K)`` table of log-variances that is then indexed by ``u`` (the same numbers as
running it on every one-hot row, at ``M`` instead of ``N`` evaluations). :func:`prior_log_variance` reads the
table of a fitted model. (It is not a deterministic site: it depends on the learned weights only, so every
draw would repeat it, and reports would flag it as a chain that does not move.)

With ``conditional_prior=False`` the same program is the plain VAE baseline: prior :math:`\mathcal{N}(0, I)`,
encoder :math:`q(z_n \mid x_n)` without ``u`` (``u`` may be omitted). Its sources are not identifiable
(any rotation of an isotropic Gaussian prior gives the same likelihood).

Sites

====================  ==========  ========  =============================================================
name                  shape       support   role
====================  ==========  ========  =============================================================
``decoder$params``    pytree      real      param: weights of :math:`f_\theta`
``prior_net$params``  pytree      real      param: weights of :math:`g_\phi` (``conditional_prior=True``)
``noise_scale``       ``()``      positive  param: :math:`\sigma` (``learn_noise=True``)
``encoder$params``    pytree      real      param of the guide: weights of :math:`m_\psi, s_\psi, B_\psi`
``z``                 ``(N, K)``  real      latent: plate ``"data"``
``x``                 ``(N, D)``  real      observed: plate ``"data"``
====================  ==========  ========  =============================================================

``u`` is a covariate (an integer array of segment indices, shape ``(N,)``), not a random site. The
guide adds ``encoder$params``. With ``batch_size`` set, the plate ``"data"`` subsamples ``batch_size``
points per SVI step in model and guide alike (the ELBO is scaled by ``N / batch_size``); predictions and
MCMC use ``model.with_config(batch_size=None)``.

Identifiability (Khemakhem et al. 2020, Theorem 1): with at least :math:`2K + 1` distinct segments whose
variances vary enough, the sources are recovered up to a permutation and elementwise transformations
(for this Gaussian prior with modulated variances: up to permutation, sign and scale of each source). A single
segment gives no such guarantee: the model's data check (run by ``ppzoo.fit``) warns.

References
----------
Khemakhem, Kingma, Monti & Hyvärinen (2020). Variational autoencoders and nonlinear ICA: a unifying
framework. AISTATS. Section 3 (model, Eqs. 5-7), Section 6.1 (experiments). Reference code: GitHub
``ilkhem/iVAE``.
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
from collections.abc import Mapping
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpy.typing import ArrayLike
from numpyro import handlers

from ppzoo import nn
from ppzoo.extensions import SVIExtension
from ppzoo.models import Example, Site, ZooModel, make_config

__all__ = [
    "IVAEConfig", "ivae", "ivae_guide", "encode", "prior_log_variance", "reconstruction_weight", "anneal_extension",
    "entry", "SITES", "SMALLEST",
]

#: The site table (rendered in the module docstring).
SITES: tuple[Site, ...] = (
    Site("decoder$params", None, "param", note=r"weights of :math:`f_\theta`"),
    Site("prior_net$params", None, "param", note=r"weights of :math:`g_\phi`", when="``conditional_prior=True``"),
    Site("noise_scale", (), "param", "positive", note=r":math:`\sigma`", when="``learn_noise=True``"),
    Site("encoder$params", None, "param", note=r"weights of :math:`m_\psi, s_\psi, B_\psi`", program="guide"),
    Site("z", ("N", "K"), "latent", note='plate ``"data"``'),
    Site("x", ("N", "D"), "observed", note='plate ``"data"``'),
)

#: The smallest runnable instance: 2 sources seen in 3 dimensions, 2 segments of 2 points, MLPs of 4 units.
SMALLEST = Example(
    config={"num_sources": 2, "num_observed": 3, "num_segments": 2, "hidden": (4,)},
    generate={"u": np.array([0, 0, 1, 1])},
    data={
        "x": np.array([[0.3, -1.2, 0.8], [1.1, 0.4, -0.5], [-0.7, 0.9, 1.3], [-0.2, -0.6, -1.0]], dtype=np.float32),
        "u": np.array([0, 0, 1, 1]),
    },
    sizes={"N": 4, "K": 2, "D": 3},
    size_fields=("num_sources", "num_observed", "num_segments", "batch_size"),
)

EncoderCovariance = Literal["full", "diagonal"]

#: Log-scales of the encoder and log-variances of the prior are clipped to these bounds, so a few bad
#: steps early in training cannot drive a scale to 0 or infinity (NaN ELBO).
_LOG_SCALE_BOUNDS = (-9.0, 5.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class IVAEConfig:
    """Settings of :func:`ivae`.

    Parameters
    ----------
    num_sources : int or None
        K, the latent dimension. ``None``: as many sources as observed dimensions.
    num_observed : int or None
        D, needed only to generate data (``x=None``); otherwise read from ``x``.
    num_segments : int or None
        M, the number of values of ``u`` (the input size of the prior network and the encoder's one-hot part).
        Required to fit the iVAE (``ppzoo.fit`` says so with the value to use): a ``u`` traced by ``jit`` has
        no readable maximum. ``None`` is allowed for eager calls (``max(u) + 1`` of the data given) and for
        the VAE.
    conditional_prior : bool
        ``True``: iVAE, prior :math:`p(z \\mid u)` and encoder :math:`q(z \\mid x, u)`. ``False``: the plain
        VAE baseline (prior N(0, I), encoder :math:`q(z \\mid x)`).
    prior_mean : bool
        Let the prior network output per-segment means as well as log-variances (for data whose segments
        shift the sources, ``segment_means=True`` in the loader).
    hidden : tuple of int
        Hidden layer widths of the encoder, decoder and prior network (reference: 2 hidden layers of 100).
    activation : str
        Hidden activation (``ppzoo.nn.ACTIVATIONS``; ``"leaky_relu"`` has slope 0.1 as in the reference).
    observation_noise : float
        Decoder noise sd :math:`\\sigma` (reference: variance 0.01, so sd 0.1), or its initial value when
        ``learn_noise``. It is in the units of ``x``: standardize ``x`` (unit sd per column) for the default
        to mean 10% noise. Too large a value lets latents collapse onto the prior; too small slows training.
    learn_noise : bool
        Learn :math:`\\sigma` as the param ``noise_scale``.
    encoder_covariance : {"full", "diagonal"}
        Covariance of the encoder's Gaussian :math:`q(z \\mid x, u)`. ``"full"`` (default): a Cholesky factor
        per point (``K (K + 1) / 2`` outputs). ``"diagonal"``: mean-field, as in the reference code. With little
        decoder noise the exact posterior is close to :math:`\\mathcal{N}(f^{-1}(x), \\sigma^2 (J^\\top J)^{-1})`
        (:math:`J` the decoder's Jacobian), which is correlated unless :math:`J` has orthogonal columns; a
        diagonal :math:`q` pays :math:`\\tfrac12 \\log(\\prod_k \\Sigma_{kk} / \\det \\Sigma)` nats per point for
        that, whatever :math:`\\sigma`, so the mean-field ELBO prefers decoders with orthogonal columns and
        rotates the sources away from the truth (measured on the paper's data: 1.0 nat per point at the true
        solution for linear mixing, 2.7 for 3-layer mixing, more than the rotated solution loses in the prior).
    batch_size : int or None
        Points per SVI step (plate subsampling). ``None``: every point every step. A batch larger than the
        data uses all the data.
    seed : int
        Seed of the networks' initial weights (encoder ``seed``, decoder ``seed + 1``, prior ``seed + 2``).
    anneal_steps : int
        Reconstruction-weight annealing (0, the default: off). During SVI training the likelihood site ``x`` is
        scaled by :math:`w(t) = 1 + (w_0 - 1) \\max(0, 1 - t / T)` at step :math:`t` (:math:`T` = ``anneal_steps``,
        :math:`w_0` = ``anneal_start_weight``), i.e. the reconstruction term is upweighted early and the plain
        ELBO is optimized from step :math:`T` on. This is the idea of the reference code's ``anneal`` option
        (``ilkhem/iVAE``, ``runners/ivae.py``: reconstruction weight ``a`` (config 100) and prior-KL weight ``d``
        (config 10), total-correlation weight ``c = 0``, for the first ``epochs / 1.6`` epochs, then ``b = c = d = 1``
        and ``a`` doubled), reduced to the one weight that a ``numpyro.handlers.scale`` on ``x`` can express and
        decayed linearly instead of switched. Applied through a :class:`ppzoo.extensions.SVIExtension` on the
        guide (a step counter; :func:`reconstruction_weight`); draws and ``log_likelihood`` use weight 1.
    anneal_start_weight : float
        :math:`w_0 > 0`, the reconstruction weight at step 0 (reference: ``a = 100``). A weight above 1 is a
        KL warm-up; below 1 it anneals the decoder noise down, from :math:`\\sigma / \\sqrt{w_0}` to :math:`\\sigma`.
    """

    num_sources: int | None = None
    num_observed: int | None = None
    num_segments: int | None = None
    conditional_prior: bool = True
    prior_mean: bool = False
    hidden: tuple[int, ...] = (100, 100)
    activation: nn.Activation = "leaky_relu"
    observation_noise: float = 0.1
    learn_noise: bool = False
    encoder_covariance: EncoderCovariance = "full"
    batch_size: int | None = None
    seed: int = 0
    anneal_steps: int = 0
    anneal_start_weight: float = 100.0

    def __post_init__(self) -> None:
        for name in ("num_sources", "num_observed", "num_segments", "batch_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
                raise ValueError(f"IVAEConfig.{name} must be a positive integer or None; got {value!r}.")
        for name in ("conditional_prior", "prior_mean", "learn_noise"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"IVAEConfig.{name} must be True or False; got {getattr(self, name)!r}.")
        hidden = self.hidden
        if isinstance(hidden, list):  # e.g. from a TOML file; kept as a tuple so the config stays hashable
            hidden = tuple(hidden)
            object.__setattr__(self, "hidden", hidden)
        if (
            not isinstance(hidden, tuple)
            or not hidden
            or any(isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in hidden)
        ):
            raise ValueError(
                f"IVAEConfig.hidden must be a non-empty tuple of positive integers, e.g. (100, 100); got {hidden!r}."
            )
        if self.encoder_covariance not in ("full", "diagonal"):
            raise ValueError(
                "IVAEConfig.encoder_covariance must be 'full' or 'diagonal'; "
                f"got {self.encoder_covariance!r}."
            )
        if self.activation not in nn.ACTIVATIONS:
            raise ValueError(
                f"IVAEConfig.activation must be one of {', '.join(map(repr, nn.ACTIVATIONS))}; got {self.activation!r}."
            )
        noise = self.observation_noise
        if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not noise > 0:
            raise ValueError(f"IVAEConfig.observation_noise must be a positive number, e.g. 0.1; got {noise!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise TypeError(f"IVAEConfig.seed must be an integer; got {self.seed!r}.")
        steps = self.anneal_steps
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 0:
            raise ValueError(f"IVAEConfig.anneal_steps must be a non-negative integer (0: off); got {steps!r}.")
        weight = self.anneal_start_weight
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not weight > 0:
            raise ValueError(f"IVAEConfig.anneal_start_weight must be a positive number, e.g. 0.01; got {weight!r}.")


def _sizes(x, u, num_data, config: IVAEConfig) -> tuple[int, int, int, int]:
    """``(num_data, num_observed, num_sources, num_segments)`` from the data and the config."""
    if config.conditional_prior and u is None:
        raise ValueError(
            "The iVAE (conditional_prior=True) needs the auxiliary variable `u` (segment indices, shape "
            "(num_data,)); for the plain VAE set conditional_prior=False."
        )
    if x is not None:
        num_data, num_observed = np.shape(x)
    else:
        num_observed = config.num_observed
        if u is not None:
            num_data = np.shape(u)[0]
        if num_data is None or num_observed is None:
            raise ValueError(
                "To generate data from `ivae`, pass u=... (the VAE: num_data=...) and set "
                "IVAEConfig(num_observed=...)."
            )
    num_sources = config.num_sources or num_observed
    num_segments = config.num_segments
    if config.conditional_prior:
        if num_segments is None:
            if isinstance(u, jax.core.Tracer):
                raise ValueError("Set IVAEConfig(num_segments=...) when `u` is traced (inside jit).")
            num_segments = int(np.max(u)) + 1
    return int(num_data), int(num_observed), int(num_sources), int(num_segments or 1)


def _batch(config: IVAEConfig, num_data: int) -> int | None:
    if config.batch_size is None or config.batch_size >= num_data:
        return None
    return config.batch_size


def _prior_table(config: IVAEConfig, num_sources: int, num_segments: int) -> tuple[jax.Array, jax.Array]:
    """Per-segment prior means and log-variances, each ``(M, K)``: the prior network on the one-hot rows."""
    out_size = 2 * num_sources if config.prior_mean else num_sources
    prior_net = nn.mlp(
        "prior_net", num_segments, (*config.hidden, out_size), activation=config.activation, seed=config.seed + 2
    )
    table = prior_net(jnp.eye(num_segments))
    log_variance = jnp.clip(table[:, -num_sources:], 2 * _LOG_SCALE_BOUNDS[0], 2 * _LOG_SCALE_BOUNDS[1])
    mean = table[:, :num_sources] if config.prior_mean else jnp.zeros_like(log_variance)
    return mean, log_variance


def ivae(
    x: ArrayLike | None = None,
    u: ArrayLike | None = None,
    *,
    num_data: int | None = None,
    config: IVAEConfig = IVAEConfig(),
    recon_weight: ArrayLike | None = None,
) -> None:
    """The iVAE (or, with ``conditional_prior=False``, the VAE) as a NumPyro program.

    See the module docstring for the generative story and the sites.

    Parameters
    ----------
    x : ArrayLike or None
        Observations ``(num_data, num_observed)``; ``None`` generates them.
    u : ArrayLike or None
        Segment indices ``(num_data,)``, integers in ``[0, num_segments)``. Required for the iVAE.
    num_data : int or None
        Number of points to generate when both ``x`` and ``u`` are None (VAE only).
    config : IVAEConfig
        Model settings.
    recon_weight : ArrayLike or None
        Scale of the likelihood site ``x`` (set during training by the annealing extension,
        ``IVAEConfig.anneal_steps``). ``None``: 1, the model itself.
    """
    num_data, num_observed, num_sources, num_segments = _sizes(x, u, num_data, config)
    decoder = nn.mlp(
        "decoder", num_sources, (*config.hidden, num_observed), activation=config.activation, seed=config.seed + 1
    )
    if config.learn_noise:
        noise = numpyro.param("noise_scale", jnp.asarray(config.observation_noise), constraint=dist.constraints.positive)
    else:
        noise = config.observation_noise
    if config.conditional_prior:
        mean_table, log_var_table = _prior_table(config, num_sources, num_segments)
    with numpyro.plate("data", num_data, subsample_size=_batch(config, num_data)):
        x_batch = None if x is None else numpyro.subsample(x, event_dim=1)
        if config.conditional_prior:
            u_batch = numpyro.subsample(jnp.asarray(u), event_dim=0)
            loc, scale = mean_table[u_batch], jnp.exp(0.5 * log_var_table[u_batch])
        else:
            loc, scale = jnp.zeros(num_sources), jnp.ones(num_sources)
        z = numpyro.sample("z", dist.Normal(loc, scale).to_event(1))
        with handlers.scale(scale=1.0 if recon_weight is None else recon_weight):
            numpyro.sample("x", dist.Normal(decoder(z), noise).to_event(1), obs=x_batch)


def _encoder_input(x_batch, u_batch, config: IVAEConfig, num_segments: int) -> jax.Array:
    if not config.conditional_prior:
        return x_batch
    return jnp.concatenate([x_batch, jax.nn.one_hot(u_batch, num_segments, dtype=x_batch.dtype)], axis=-1)


def ivae_guide(
    x: ArrayLike | None = None,
    u: ArrayLike | None = None,
    *,
    num_data: int | None = None,
    config: IVAEConfig = IVAEConfig(),
    recon_weight: ArrayLike | None = None,
) -> None:
    """The iVAE's amortized guide :math:`q(z_n \\mid x_n, u_n)` (VAE: :math:`q(z_n \\mid x_n)`).

    One MLP (``"encoder"``) maps ``[x_n, one_hot(u_n)]`` to the mean, the log-sds and (with
    ``encoder_covariance="full"``) the ``K (K - 1) / 2`` relative off-diagonal entries of the Cholesky factor of a
    Gaussian (the reference code uses two MLPs, one for the mean and one for the diagonal variance; one network
    shares the hidden layers). ``recon_weight`` (the annealing weight of the model) is accepted and ignored.
    """
    del recon_weight
    if x is None:
        raise ValueError("The iVAE guide encodes observations: it needs `x`.")
    num_data, num_observed, num_sources, num_segments = _sizes(x, u, num_data, config)
    in_features = num_observed + (num_segments if config.conditional_prior else 0)
    full = config.encoder_covariance == "full"
    num_off_diagonal = num_sources * (num_sources - 1) // 2 if full else 0
    encoder = nn.mlp(
        "encoder",
        in_features,
        (*config.hidden, 2 * num_sources + num_off_diagonal),
        activation=config.activation,
        seed=config.seed,
    )
    with numpyro.plate("data", num_data, subsample_size=_batch(config, num_data)):
        x_batch = jnp.asarray(numpyro.subsample(x, event_dim=1))
        u_batch = numpyro.subsample(jnp.asarray(u), event_dim=0) if config.conditional_prior else None
        out = encoder(_encoder_input(x_batch, u_batch, config, num_segments))
        loc = out[..., :num_sources]
        scale = jnp.exp(jnp.clip(out[..., num_sources : 2 * num_sources], *_LOG_SCALE_BOUNDS))
        if full:
            numpyro.sample("z", dist.MultivariateNormal(loc, scale_tril=_cholesky(scale, out[..., 2 * num_sources :])))
        else:
            numpyro.sample("z", dist.Normal(loc, scale).to_event(1))


def _cholesky(scale: jax.Array, off_diagonal: jax.Array) -> jax.Array:
    """Lower-triangular ``(..., K, K)`` factor ``diag(scale) (I + B)``, ``B`` strictly lower from ``off_diagonal``.

    Row ``k`` of the factor is scaled by ``scale[k]``, so the off-diagonal outputs are relative to the
    diagonal: the network's outputs stay of order one whatever the posterior's scale (an absolute
    parameterization diverged in training when the sds became small).
    """
    num_sources = scale.shape[-1]
    rows, cols = np.tril_indices(num_sources, -1)
    unit = jnp.zeros((*scale.shape, num_sources), scale.dtype).at[..., rows, cols].set(off_diagonal)
    return scale[..., None] * (unit + jnp.eye(num_sources, dtype=scale.dtype))


def reconstruction_weight(config: IVAEConfig, step: ArrayLike) -> jax.Array:
    """The annealed weight of the likelihood site at SVI step ``step`` (``IVAEConfig.anneal_steps``)."""
    if config.anneal_steps == 0:
        return jnp.ones_like(jnp.asarray(step, jnp.float32))
    progress = jnp.clip(1.0 - jnp.asarray(step, jnp.float32) / config.anneal_steps, 0.0, 1.0)
    return 1.0 + (config.anneal_start_weight - 1.0) * progress


def anneal_extension(config: IVAEConfig) -> SVIExtension:
    """The :class:`~ppzoo.extensions.SVIExtension` annealing the reconstruction weight: a step counter."""

    def init(key, params, data):
        return jnp.zeros((), jnp.int32)

    def update(step, params, data, key):
        return step + 1, jnp.zeros(())

    return SVIExtension(
        init=init,
        update=update,
        model_kwargs=lambda step: {"recon_weight": reconstruction_weight(config, step)},
        name="anneal",
    )


def _guide(config: IVAEConfig):
    """The zoo entry's guide: ``ivae_guide``, carrying the annealing extension when ``anneal_steps > 0``."""
    guide = partial(ivae_guide, config=config)
    if config.anneal_steps > 0:
        guide.svi_extension = anneal_extension(config)
    return guide


def encode(
    model: ZooModel | IVAEConfig, params: Mapping[str, Any], x: ArrayLike, u: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Run a fitted iVAE's (or VAE's) encoder on any observations, e.g. held-out ones.

    A pure function of the model and its weights: ``encode(fit.model, fit.params, x, u)``.

    Parameters
    ----------
    model : ZooModel or IVAEConfig
        The zoo model ``ppzoo.models.get("ivae", ...)`` that was fitted (``fit.model``), or its config.
    params : Mapping
        Its fitted weights (``fit.params`` of an SVI fit).
    x : ArrayLike
        Observations ``(n, num_observed)``.
    u : ArrayLike or None
        Their segment indices ``(n,)`` (ignored by the VAE, required by the iVAE).

    Returns
    -------
    mean, sd : numpy.ndarray
        The encoder's Gaussian :math:`q(z \\mid x, u)`: its mean and marginal sds, each ``(n, num_sources)``.

    Raises
    ------
    TypeError
        If ``model`` is not the zoo model ``ivae`` or its config.
    ValueError
        If ``params`` has no encoder weights, or ``x``/``u`` do not fit the model (the checks of ``ppzoo.fit``).
    """
    config = getattr(model, "config", model)
    if not isinstance(config, IVAEConfig):
        raise TypeError(
            "`model` must be the zoo model 'ivae' (ppzoo.models.get('ivae', ...), e.g. fit.model) or its IVAEConfig; "
            f"got {getattr(model, 'name', type(model).__name__)!r}."
        )
    if not params or not any(k.startswith("encoder") for k in params):
        raise ValueError(
            "`params` has no encoder weights: pass the params of the iVAE's SVI fit (engine='svi'), "
            "e.g. encode(fit.model, fit.params, x, u)."
        )
    config = dataclasses.replace(config, batch_size=None)
    x = np.asarray(x, dtype=np.float32)
    data = {"x": x} if u is None else {"x": x, "u": np.asarray(u)}
    _check_data(data, config, warn_single_segment=False)  # encoding one segment is fine; fitting one is not
    guide = handlers.substitute(partial(ivae_guide, config=config), data=params)
    site = handlers.trace(handlers.seed(guide, jax.random.key(0))).get_trace(**data)["z"]
    fn = site["fn"]
    if isinstance(fn, dist.MultivariateNormal):  # encoder_covariance="full": the marginal sds
        return np.asarray(fn.loc), np.sqrt(np.asarray(fn.variance))
    return np.asarray(fn.base_dist.loc), np.asarray(fn.base_dist.scale)


def prior_log_variance(
    model: ZooModel | IVAEConfig,
    params: Mapping[str, Any],
    *,
    num_sources: int | None = None,
    num_segments: int | None = None,
) -> np.ndarray:
    """The fitted iVAE's per-segment prior log-variances, ``(num_segments, num_sources)``.

    A pure function of the model and its weights: ``prior_log_variance(fit.model, fit.params)`` (any engine:
    only the prior network's weights are read).

    Parameters
    ----------
    model : ZooModel or IVAEConfig
        The zoo model ``ppzoo.models.get("ivae", ...)`` that was fitted (``fit.model``), or its config.
    params : Mapping
        Its fitted weights (``fit.params``).
    num_sources, num_segments : int or None
        The table's size; ``None`` takes the config's (``num_sources``, else ``num_observed``). Needed only
        where the config leaves it ``None`` (``num_sources=None`` means ``x.shape[1]`` of the fitted data).

    Raises
    ------
    TypeError
        If ``model`` is not the zoo model ``ivae`` or its config.
    ValueError
        If the model is the VAE (no per-segment prior), ``params`` has no prior network weights, or a size is
        neither in the config nor passed.
    """
    config = getattr(model, "config", model)
    if not isinstance(config, IVAEConfig):
        raise TypeError(
            "`model` must be the zoo model 'ivae' (ppzoo.models.get('ivae', ...), e.g. fit.model) or its IVAEConfig; "
            f"got {getattr(model, 'name', type(model).__name__)!r}."
        )
    if not config.conditional_prior:
        raise ValueError("The VAE (conditional_prior=False) has no per-segment prior.")
    if not params or "prior_net$params" not in params:
        raise ValueError(
            "`params` has no prior network weights ('prior_net$params'): pass the params of the iVAE's fit, "
            "e.g. prior_log_variance(fit.model, fit.params)."
        )
    num_sources = num_sources if num_sources is not None else (config.num_sources or config.num_observed)
    num_segments = num_segments if num_segments is not None else config.num_segments
    if num_sources is None:
        raise ValueError(
            "IVAEConfig.num_sources and num_observed are None (num_sources is then x.shape[1] of the fitted "
            "data): pass num_sources, e.g. prior_log_variance(fit.model, fit.params, num_sources=x.shape[1])."
        )
    if num_segments is None:
        raise ValueError(
            "IVAEConfig.num_segments is None: pass num_segments=max(u) + 1 of the fitted data, e.g. "
            "prior_log_variance(fit.model, fit.params, num_segments=int(u.max()) + 1)."
        )
    table = handlers.substitute(lambda: _prior_table(config, num_sources, num_segments)[1], data=params)
    return np.asarray(table())


def _check_data(data: Mapping[str, Any], config: IVAEConfig, *, warn_single_segment: bool = True) -> None:
    """Reject data the iVAE cannot take, before anything compiles (warn for a single segment when fitting)."""
    x = data.get("x")
    u = data.get("u")
    if x is None:
        if config.conditional_prior and u is None:
            raise ValueError("The iVAE needs `u` (segment indices, shape (num_data,)) to generate or fit data.")
        return
    if np.ndim(x) != 2:
        raise ValueError(f"iVAE data `x` must be 2-D (num_data, num_observed); got shape {np.shape(x)}.")
    num_data, num_observed = np.shape(x)
    num_sources = config.num_sources or num_observed
    if num_sources > num_observed:
        raise ValueError(
            f"num_sources={num_sources} is larger than the observed dimension of `x` ({num_observed}): the "
            "decoder must be injective, so the iVAE needs num_sources <= x.shape[1]. Lower num_sources."
        )
    if not config.conditional_prior:
        if u is not None and np.shape(u)[0] != num_data:
            raise ValueError(f"`u` has {np.shape(u)[0]} entries but `x` has {num_data} rows; they must match.")
        return
    if u is None:
        raise ValueError(
            "The iVAE (conditional_prior=True) needs the auxiliary variable `u`: pass data={'x': x, 'u': u} "
            "with u the segment index of each row (ds.data['u']); for the plain VAE set conditional_prior=False."
        )
    u = np.asarray(u)
    if u.ndim != 1:
        raise ValueError(
            f"`u` must be 1-D integer segment indices of shape (num_data,); got shape {u.shape}. "
            "For a one-hot array pass u.argmax(1)."
        )
    if u.shape[0] != num_data:
        raise ValueError(
            f"`u` has {u.shape[0]} entries but `x` has {num_data} rows; pass one segment index per row of `x`."
        )
    if not np.issubdtype(u.dtype, np.integer):
        raise TypeError(f"`u` must hold integer segment indices; got dtype {u.dtype}. Use u.astype(int).")
    if u.size and u.min() < 0:
        raise ValueError(f"`u` holds a negative segment index ({int(u.min())}); indices start at 0.")
    if config.num_segments is None:
        raise ValueError(
            "IVAEConfig.num_segments is None: the iVAE's networks take one-hot segment vectors, whose length cannot "
            "be read from `u` once it is traced by jit. Set it from the data, e.g. "
            f"ppzoo.models.get('ivae', num_segments={int(u.max()) + 1 if u.size else 1}) (max(u) + 1); keep the "
            "same value for held-out data."
        )
    if u.size and u.max() >= config.num_segments:
        raise ValueError(
            f"`u` holds segment index {int(u.max())} but num_segments={config.num_segments}; raise num_segments "
            "to at least max(u) + 1."
        )
    distinct = np.unique(u).size
    if warn_single_segment and distinct < 2 and config.num_segments < 2:
        warnings.warn(
            f"`u` has a single segment ({distinct} distinct value): the iVAE's sources are not identifiable "
            "without variation of p(z | u) across segments (Khemakhem et al. 2020, Theorem 1 needs at least "
            "2 * num_sources + 1 segments). Results will be no better than a plain VAE.",
            UserWarning,
            stacklevel=4,
        )


def entry(**config: Any) -> ZooModel:
    """The zoo entry ``"ivae"``."""
    cfg = make_config(IVAEConfig, "ivae", config)
    kind = "iVAE: conditional prior p(z | u)" if cfg.conditional_prior else "VAE baseline: prior N(0, I)"
    return ZooModel(
        name="ivae",
        model=ivae,
        config=cfg,
        config_class=IVAEConfig,
        guide=_guide,
        check_data=_check_data,
        align=None,
        summary_sites=(),
        description=f"Identifiable VAE for nonlinear ICA ({kind}), MLP decoder, amortized encoder.",
        sites=SITES,
        example=SMALLEST,
    )
