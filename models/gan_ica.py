r"""GAN-ICA: nonlinear ICA by an autoencoder whose codes a discriminator makes independent (Brakel & Bengio 2017).

An encoder :math:`g_\phi` maps each observation to codes standardised over the batch; a decoder :math:`f_\theta`
reconstructs the observation from them under an L1 (Laplace) likelihood; a discriminator :math:`D_\psi` tells
the encoder's joint outputs from the same outputs with each column shuffled independently across the batch
(draws from the product of the marginals), and the encoder is pushed to make the two indistinguishable:

.. math:: z_n = \mathrm{standardise}_{\text{batch}}\big(g_\phi(x_n)\big), \qquad
          x_n \sim \mathrm{Laplace}\big(f_\theta(z_n),\, b\big), \qquad
          \text{penalty}_n = -\gamma\, D_\psi(z_n),

with :math:`D_\psi` trained by logistic regression (joint rows 1, shuffled rows 0), so that its logit
estimates :math:`\log q(z) / \prod_k q(z_k)` and its mean the total correlation of the codes (the
density-ratio trick of Kim & Mnih 2018, Eq. 3; Brakel & Bengio use the GAN loss on the same pair, Sec. 3).

Encoders (the decoder mirrors each): ``"linear"`` (:math:`W x + c`), ``"pnl"`` (post-nonlinear: a small MLP
per channel, then linear; the decoder is linear, then an MLP per channel, the structure of the PNL mixing
:math:`\tanh(A s)`) and ``"mlp"`` (an MLP with ``hidden`` tanh layers).

Design: a program fitted by ``engine="svi"``, not the adversarial engine. GAN-ICA's discriminator compares
the *encoder's* outputs on real data with their column-shuffled copies; nothing is generated from a prior
and compared with data, which is what ``engine="adversarial"`` trains. So the program is an autoencoder
written as a model: the encoder is the model's own amortized ``Delta`` guide (the codes are a point
estimate, as in the paper), the reconstruction is the likelihood, and the independence term is the named
factor ``independence``, whose discriminator is trained between SVI steps through the SVI engine's
extension point (:class:`ppzoo.extensions.SVIExtension`), exactly as FactorVAE's is. The prior
:math:`z \sim N(0, I)` adds only a constant once the codes are standardised; it makes the program generative
(``x=None`` draws data from the decoder). The discriminator's weights come in as the keyword argument
``discriminator``; without it (e.g. when ``fit.to_arviz()`` re-runs the model) the factor is left out.

Sources of new data: :func:`encode` ``(model, fit.params, x)``, rows = samples, columns = sources.

Sites

==================  ==========  =======  ========================================================================================================================
name                shape       support  role
==================  ==========  =======  ========================================================================================================================
``decoder$params``  pytree      real     param: weights of :math:`f_\theta`
``encoder$params``  pytree      real     param of the guide: weights of :math:`g_\phi`
``z``               ``(N, K)``  real     latent (model and guide): the sources, plate ``"data"`` (the guide's Delta at the standardised encoder outputs)
``x``               ``(N, D)``  real     observed: plate ``"data"``
``independence``    ``(N,)``             factor: -:math:`\gamma` x the discriminator's logit, plate ``"data"`` (``x`` and ``discriminator`` given, ``gamma > 0``)
==================  ==========  =======  ========================================================================================================================

References
----------
Brakel, P. & Bengio, Y. (2017). Learning independent features with adversarial nets for non-linear ICA.
arXiv:1710.05050. Sec. 3 (method), Sec. 5.1 (the synthetic signals: ``ppzoo.data.load("signals")``).
Kim, H. & Mnih, A. (2018). Disentangling by factorising. ICML. Eq. 3 (density ratio), Algorithm 2.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Mapping
from functools import partial
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from flax import nnx
from numpy.typing import ArrayLike
from numpyro import handlers

from ppzoo import nn
from ppzoo.buffers import fresh_buffers
from ppzoo.extensions import SVIExtension
from ppzoo.models import Example, Site, ZooModel, check_positive_integer, check_positive_number, make_config
from ppzoo.models._checks import check_non_negative
from ppzoo.models.factor_vae import permute_dims

__all__ = [
    "GANICAConfig", "gan_ica", "gan_ica_guide", "GANICAGuide", "ChannelMLP", "Network", "encode",
    "discriminator_logit", "independence_extension", "DiscriminatorState", "entry", "SITES", "SMALLEST", "ENCODERS",
]

ENCODERS = ("linear", "pnl", "mlp")

#: The site table (rendered in the module docstring).
SITES: tuple[Site, ...] = (
    Site("decoder$params", None, "param", note=r"weights of :math:`f_\theta`"),
    Site("encoder$params", None, "param", note=r"weights of :math:`g_\phi`", program="guide"),
    Site("z", ("N", "K"), "latent", note='the sources, plate ``"data"`` (the guide\'s Delta at the standardised encoder outputs)',
         program="both"),
    Site("x", ("N", "D"), "observed", note='plate ``"data"``'),
    Site("independence", ("N",), "factor", "", note="-:math:`\\gamma` x the discriminator's logit, plate ``\"data\"``",
         when="``x`` and ``discriminator`` given, ``gamma > 0``"),
)

#: The smallest runnable instance: 4 rows of 3 channels, 2 sources, networks of 4 units.
SMALLEST = Example(
    config={"encoder": "mlp", "num_sources": 2, "num_observed": 3, "hidden": (4,), "discriminator_hidden": (4,)},
    generate={"num_data": 4},
    data={"x": np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(4, 3) ** np.array([1, 2, 3], np.float32)},
    sizes={"N": 4, "K": 2, "D": 3},
    size_fields=("num_sources", "num_observed"),
)


def _widths(owner: str, name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple) or not value or any(
        isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in value
    ):
        raise ValueError(f"{owner}.{name} must be a non-empty tuple of positive integers, e.g. (64,); got {value!r}.")
    return value


@dataclasses.dataclass(frozen=True, kw_only=True)
class GANICAConfig:
    """Settings of :func:`gan_ica`.

    Parameters
    ----------
    encoder : {"linear", "pnl", "mlp"}
        The encoder's form (the decoder mirrors it).
    num_sources : int or None
        K. ``None``: as many as observed channels.
    num_observed : int or None
        D, needed only to generate data (``x=None``); checked against ``x`` when given.
    hidden : tuple of int
        Hidden widths: of the MLPs (``"mlp"``), or of each channel's MLP (``"pnl"``, first width).
    reconstruction_scale : float
        Scale b of the Laplace (L1) reconstruction likelihood, in the units of ``x``.
    gamma : float
        Weight of the independence term (>= 0; 0 is a plain autoencoder).
    discriminator_hidden : tuple of int
        Hidden widths of the discriminator MLP (leaky ReLU, one logit).
    discriminator_learning_rate : float
        Adam's learning rate for the discriminator (beta1 = 0.5).
    init_seed : int
        Seed of the networks' initial weights.
    """

    encoder: Literal["linear", "pnl", "mlp"] = "linear"
    num_sources: int | None = None
    num_observed: int | None = None
    hidden: tuple[int, ...] = (64,)
    reconstruction_scale: float = 0.1
    gamma: float = 1.0
    discriminator_hidden: tuple[int, ...] = (64, 64)
    discriminator_learning_rate: float = 1e-3
    init_seed: int = 0

    def __post_init__(self) -> None:
        owner = "GANICAConfig"
        if self.encoder not in ENCODERS:
            raise ValueError(f"{owner}.encoder must be one of {', '.join(map(repr, ENCODERS))}; got {self.encoder!r}.")
        check_positive_integer(owner, "num_sources", self.num_sources, allow_none=True)
        check_positive_integer(owner, "num_observed", self.num_observed, allow_none=True)
        object.__setattr__(self, "hidden", _widths(owner, "hidden", self.hidden))
        object.__setattr__(self, "discriminator_hidden", _widths(owner, "discriminator_hidden", self.discriminator_hidden))
        check_positive_number(owner, "reconstruction_scale", self.reconstruction_scale)
        check_non_negative(owner, "gamma", self.gamma, hint="gamma = 0 is a plain autoencoder, e.g. gamma=1.")
        check_positive_number(owner, "discriminator_learning_rate", self.discriminator_learning_rate)
        if isinstance(self.init_seed, bool) or not isinstance(self.init_seed, numbers.Integral):
            raise TypeError(f"{owner}.init_seed must be an integer; got {self.init_seed!r}.")


class ChannelMLP(nnx.Module):
    """One small MLP per channel, ``y_c = x_c + sum_j v_cj tanh(w_cj x_c + b_cj) + a_c``: an elementwise nonlinearity.

    The residual ``x_c`` makes it start near the identity.
    """

    def __init__(self, channels: int, hidden: int, *, rngs: nnx.Rngs):
        k1, k2 = rngs.params(), rngs.params()
        self.w = nnx.Param(jax.random.normal(k1, (channels, hidden)))
        self.b = nnx.Param(jax.random.normal(k2, (channels, hidden)))
        self.v = nnx.Param(jnp.zeros((channels, hidden)))
        self.a = nnx.Param(jnp.zeros((channels,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jnp.tanh(x[..., None] * self.w[...] + self.b[...])
        return x + jnp.sum(h * self.v[...], axis=-1) + self.a[...]


class Network(nnx.Module):
    """Encoder or decoder of :func:`gan_ica`: linear; channel MLP then linear (``channel_first``) or the reverse; or an MLP."""

    def __init__(self, kind: str, in_features: int, out_features: int, hidden: tuple[int, ...], *,
                 channel_first: bool, rngs: nnx.Rngs):
        self.kind, self.channel_first = kind, channel_first
        if kind == "mlp":
            self.body = nn.MLP(in_features, (*hidden, out_features), activation="tanh", rngs=rngs)
        else:
            self.body = nnx.Linear(in_features, out_features, rngs=rngs)
        if kind == "pnl":
            self.channels = ChannelMLP(in_features if channel_first else out_features, hidden[0], rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.kind != "pnl":
            return self.body(x)
        return self.body(self.channels(x)) if self.channel_first else self.channels(self.body(x))


@functools.lru_cache(maxsize=64)
def _template(kind: str, in_features: int, out_features: int, hidden: tuple[int, ...], channel_first: bool, seed: int):
    with jax.ensure_compile_time_eval():
        return nnx.split(Network(kind, in_features, out_features, hidden, channel_first=channel_first, rngs=nnx.Rngs(seed)))


def _network(name: str, config: GANICAConfig, in_features: int, out_features: int, *, channel_first: bool, seed: int):
    graphdef, state = _template(config.encoder, in_features, out_features, config.hidden, channel_first, seed)
    return nn.module(name, nnx.merge(graphdef, fresh_buffers(state)))


def _sizes(x: ArrayLike | None, num_data: int | None, config: GANICAConfig) -> tuple[int, int, int]:
    if x is not None:
        n, d = np.shape(x)
    elif num_data is None or config.num_observed is None:
        raise ValueError(
            "To generate data from gan_ica (x=None), pass num_data=... and set num_observed in the config, e.g. "
            "ppzoo.models.get('gan_ica', num_observed=6)."
        )
    else:
        n, d = int(num_data), config.num_observed
    return int(n), int(d), int(config.num_sources or d)


class DiscriminatorState(NamedTuple):
    """The extension's state: discriminator weights, their Adam state, and the last discriminator loss."""

    params: Any
    opt_state: Any
    loss: jax.Array


@functools.lru_cache(maxsize=16)
def _discriminator_template(num_sources: int, hidden: tuple[int, ...], seed: int):
    with jax.ensure_compile_time_eval():
        return nnx.split(nn.MLP(num_sources, (*hidden, 1), activation="leaky_relu", rngs=nnx.Rngs(seed)))


def discriminator_logit(config: GANICAConfig, num_sources: int, params: Any, z: jax.Array) -> jax.Array:
    """The discriminator's logit ``(N,)`` that codes ``z`` ``(N, K)`` are joint rows rather than shuffled ones."""
    graphdef, template = _discriminator_template(num_sources, config.discriminator_hidden, config.init_seed + 2)
    state = jax.tree.map(lambda a: a, template)
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state)(z)[:, 0]


def gan_ica(
    x: ArrayLike | None = None,
    *,
    num_data: int | None = None,
    discriminator: Any = None,
    config: GANICAConfig = GANICAConfig(),
) -> None:
    """GAN-ICA as a NumPyro program: codes z ~ N(0, I), x ~ Laplace(decoder(z), b), and the factor ``independence``.

    Parameters
    ----------
    x : array (N, D) or None
        Observations; ``None`` generates ``num_data`` rows.
    num_data : int or None
        Rows to generate when ``x`` is None.
    discriminator : pytree or None
        The discriminator's weights (supplied by the SVI extension during training); ``None`` leaves the factor out.
    config : GANICAConfig
    """
    n, d, k = _sizes(x, num_data, config)
    decoder = _network("decoder", config, k, d, channel_first=False, seed=config.init_seed + 1)
    with numpyro.plate("data", n):
        rows = None if x is None else numpyro.subsample(x, event_dim=1)  # the plate's rows (all, or a minibatch)
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([k]).to_event(1))
        numpyro.sample("x", dist.Laplace(decoder(z), config.reconstruction_scale).to_event(1), obs=rows)
        if x is not None and discriminator is not None and config.gamma > 0:
            # Kim & Mnih's density-ratio estimate of the total correlation, per row: the encoder minimises it.
            numpyro.factor("independence", -config.gamma * discriminator_logit(config, k, discriminator, z))


def _codes(config: GANICAConfig, x: jax.Array) -> jax.Array:
    n, d, k = _sizes(x, None, config)
    h = _network("encoder", config, d, k, channel_first=True, seed=config.init_seed)(x)
    # Standardised over the batch (Brakel & Bengio, Sec. 3): scale and location are not identifiable.
    return (h - jnp.mean(h, axis=0)) / (jnp.std(h, axis=0) + 1e-6)


def gan_ica_guide(x: ArrayLike | None = None, *, num_data: int | None = None, discriminator: Any = None,
                  config: GANICAConfig = GANICAConfig()) -> None:
    """The encoder as an amortized Delta guide: z = standardise(encoder(x)) over the rows of ``x``."""
    del num_data, discriminator
    if x is None:
        raise ValueError("The gan_ica guide encodes observations: pass x.")
    x = jnp.asarray(x)
    with numpyro.plate("data", x.shape[0]):
        z = _codes(config, numpyro.subsample(x, event_dim=1))  # standardised over the plate's rows
        numpyro.sample("z", dist.Delta(z, event_dim=1))


def independence_extension(config: GANICAConfig, guide) -> SVIExtension:
    """The :class:`~ppzoo.extensions.SVIExtension` that trains the discriminator between SVI steps.

    Each update encodes the data with the updated encoder, shuffles each column of a copy across rows
    (:func:`ppzoo.models.factor_vae.permute_dims`), and takes one Adam step on the logistic loss
    :math:`E[\\mathrm{softplus}(-D(z))] + E[\\mathrm{softplus}(D(\\tilde z))]`.
    """
    optimizer = optax.adam(config.discriminator_learning_rate, b1=0.5)

    def init(key, params, data):
        k = config.num_sources or int(np.shape(data["x"])[1])
        _, template = _discriminator_template(k, config.discriminator_hidden, config.init_seed + 2)
        weights = jax.tree.map(jnp.array, nnx.to_pure_dict(template))
        return DiscriminatorState(weights, optimizer.init(weights), jnp.zeros(()))

    def update(state: DiscriminatorState, params, data, key):
        z = jax.lax.stop_gradient(encode(config, params, data["x"]))
        shuffled = permute_dims(key, z)
        k = z.shape[1]

        def loss_fn(weights):
            return (jnp.mean(jax.nn.softplus(-discriminator_logit(config, k, weights, z)))
                    + jnp.mean(jax.nn.softplus(discriminator_logit(config, k, weights, shuffled))))

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return DiscriminatorState(optax.apply_updates(state.params, updates), opt_state, loss), loss

    return SVIExtension(init=init, update=update, model_kwargs=lambda state: {"discriminator": state.params},
                        name="discriminator")


class GANICAGuide:
    """GAN-ICA's own guide: the Delta encoder, carrying the discriminator's ``svi_extension``."""

    def __init__(self, config: GANICAConfig):
        self.config = config
        self.svi_extension = independence_extension(config, self)

    def __call__(self, x: ArrayLike | None = None, *, num_data: int | None = None, discriminator: Any = None) -> None:
        gan_ica_guide(x, num_data=num_data, discriminator=discriminator, config=self.config)


def encode(model: ZooModel | GANICAConfig, params: Mapping[str, Any], x: ArrayLike) -> jax.Array:
    """The sources of ``x`` ``(N, D)``: the encoder's outputs standardised over these rows, ``(N, K)``.

    Parameters
    ----------
    model : ZooModel or GANICAConfig
        The fitted ``gan_ica`` model (``fit.model``) or its config.
    params : mapping
        ``fit.params`` (the encoder's ``"encoder$params"`` is read).
    x : array (N, D)
        Observations, e.g. held-out rows.
    """
    config = model.config if isinstance(model, ZooModel) else model
    if not isinstance(config, GANICAConfig):
        raise TypeError(f"encode() takes a gan_ica model or its GANICAConfig; got {model!r}.")
    if "encoder$params" not in params:
        raise ValueError("`params` lacks 'encoder$params': pass the params of a gan_ica fit (fit.params).")
    x = jnp.asarray(x, jnp.float32)
    if x.ndim != 2:
        raise ValueError(f"`x` must be observations of shape (num_data, num_observed); got shape {x.shape}.")
    return handlers.substitute(partial(_codes, config), data={"encoder$params": params["encoder$params"]})(x)


def check_data(data: Mapping[str, Any], config: GANICAConfig) -> None:
    """Refuse ``x`` that is not ``(N, D)`` with N >= 2 (codes are standardised over rows) or disagrees with the config."""
    x = data.get("x")
    if x is None:
        return
    shape = np.shape(x)
    if len(shape) != 2 or shape[0] < 2:
        raise ValueError(f"gan_ica data `x` must be observations of shape (num_data >= 2, num_observed); got shape {shape}.")
    if config.num_observed is not None and shape[1] != config.num_observed:
        raise ValueError(
            f"gan_ica data `x` has {shape[1]} channels but the config says num_observed={config.num_observed}; "
            f"set num_observed={shape[1]} or None."
        )


def entry(**config: Any) -> ZooModel:
    """The zoo entry ``"gan_ica"``."""
    return ZooModel(
        name="gan_ica",
        model=gan_ica,
        config=make_config(GANICAConfig, "gan_ica", config),
        config_class=GANICAConfig,
        guide=GANICAGuide,
        check_data=check_data,
        description="GAN-ICA: an autoencoder whose standardised codes a discriminator makes independent (fit by SVI).",
        sites=SITES,
        example=SMALLEST,
    )
