r"""FactorVAE: the VAE with a total-correlation penalty estimated by a discriminator (Kim & Mnih 2018).

Objective (Eq. 2 of Kim & Mnih 2018), per image:

.. math:: \mathcal{L} = E_q[\log p(x \mid z)] - KL\big(q(z \mid x) \,\|\, p(z)\big)
          - \gamma\, KL\Big(q(z) \,\Big\|\, \bar q(z)\Big), \qquad \bar q(z) = \prod_k q(z_k),

with the total correlation estimated by the density-ratio trick (their Eq. 3): a discriminator
:math:`D_\psi` is trained to tell draws of :math:`q(z)` from draws of :math:`\bar q(z)`, obtained by permuting
each latent dimension independently across a minibatch (their Algorithm 2), and

.. math:: TC(z) \approx E_{q(z)}\Big[\log \frac{D_\psi(z)}{1 - D_\psi(z)}\Big].

As in disentanglement_lib the discriminator outputs two logits (class 0: "from :math:`q(z)`", class 1:
"permuted") and the per-image estimate is :math:`\ell_0(z) - \ell_1(z)`.

In NumPyro the program is the VAE of :mod:`ppzoo.models.vae` plus the named factor ``total_correlation``
(value :math:`-\gamma (\ell_0(z_n) - \ell_1(z_n))` per image, inside the plate). The discriminator's weights
arrive as the keyword argument ``discriminator``: they are not a NumPyro param, because the ELBO optimizer
must not move them (the VAE *minimises* the estimate the discriminator *maximises*). They are trained
alternately with the ELBO inside the SVI engine's compiled loop through its documented extension point
(:class:`ppzoo.extensions.SVIExtension`): the model's own guide carries ``svi_extension``, which after every
ELBO step draws a minibatch of codes from the updated encoder, permutes them, and takes one Adam step on the
discriminator's cross-entropy (disentanglement_lib's settings: learning rate 1e-4, beta1 0.5, beta2 0.9;
six hidden layers of 1000 leaky-ReLU units). The final discriminator is returned in
``fit.params["discriminator$state"]``.

Without ``discriminator`` (e.g. when ``fit.to_arviz()`` re-runs the model) or with ``regularize=False`` the
factor is left out and the program is the plain generative model. Fitting with a guide other than the
model's own (``guide="auto_normal"``) has no discriminator either: pass ``extension=`` then.

Sites (those of :mod:`ppzoo.models.vae` and the penalty's)

=====================  =============  =======  ================================================================================================================================================================
name                   shape          support  role
=====================  =============  =======  ================================================================================================================================================================
``decoder$params``     pytree         real     param: weights of :math:`f_\theta`
``encoder$params``     pytree         real     param of the guide: weights of :math:`m_\phi, v_\phi`
``z``                  ``(N, K)``     real     latent: plate ``"data"``
``x``                  ``(N, H, W)``  {0, 1}   observed: plate ``"data"``
``total_correlation``  ``(N,)``                factor: -:math:`\gamma` x TC (from the discriminator), plate ``"data"`` (``regularize=True``, ``x`` and ``discriminator`` given: SVI with the model's own guide)
=====================  =============  =======  ================================================================================================================================================================

References
----------
Kim, H. & Mnih, A. (2018). Disentangling by factorising. ICML. Eq. 2 (objective), Eq. 3 (density ratio),
Algorithm 2 (permute dims), Appendix A (discriminator).
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpyro
import optax
from flax import nnx
from numpy.typing import ArrayLike
from numpyro import handlers

from ppzoo import nn
from ppzoo.extensions import SVIExtension
from ppzoo.models import Site, ZooModel
from ppzoo.models._checks import check_non_negative
from ppzoo.models.vae import SMALLEST as VAE_SMALLEST
from ppzoo.models.vae import VAEConfig, make_entry, vae_core, vae_guide
from ppzoo.models.vae import SITES as VAE_SITES

__all__ = [
    "FactorVAEConfig",
    "FactorVAEGuide",
    "DiscriminatorState",
    "factor_vae",
    "permute_dims",
    "discriminator_logits",
    "discriminator_extension",
    "entry",
    "SITES",
    "SMALLEST",
]

#: The site table (rendered in the module docstring): the VAE's and the penalty's.
SITES: tuple[Site, ...] = VAE_SITES + (
    Site(
        "total_correlation", ("N",), "factor", "",
        note=r'-:math:`\gamma` x TC (from the discriminator), plate ``"data"``',
        when="``regularize=True``, ``x`` and ``discriminator`` given: SVI with the model's own guide",
    ),
)

#: The smallest runnable instance: the VAE's, with a discriminator of 4 units.
SMALLEST = dataclasses.replace(VAE_SMALLEST, config={**VAE_SMALLEST.config, "discriminator_hidden": (4,)})


@dataclasses.dataclass(frozen=True, kw_only=True)
class FactorVAEConfig(VAEConfig):
    """Settings of :func:`factor_vae`: those of :class:`~ppzoo.models.vae.VAEConfig` and

    Parameters
    ----------
    gamma : float
        Weight of the total correlation, >= 0 (disentanglement_lib's study: 10-100).
    discriminator_hidden : tuple of int
        Hidden widths of the discriminator MLP (Kim & Mnih: six layers of 1000).
    discriminator_learning_rate : float
        Adam's learning rate for the discriminator (beta1 = 0.5, beta2 = 0.9 as in disentanglement_lib).
    """

    gamma: float = 10.0
    discriminator_hidden: tuple[int, ...] = (1000,) * 6
    discriminator_learning_rate: float = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        check_non_negative("FactorVAEConfig", "gamma", self.gamma, hint="gamma = 0 is the plain VAE, e.g. gamma=10.")
        hidden = self.discriminator_hidden
        if isinstance(hidden, list):
            hidden = tuple(hidden)
            object.__setattr__(self, "discriminator_hidden", hidden)
        if not isinstance(hidden, tuple) or not hidden or any(
            isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in hidden
        ):
            raise ValueError(
                f"FactorVAEConfig.discriminator_hidden must be a non-empty tuple of positive integers, e.g. (1000,) * 6; "
                f"got {self.discriminator_hidden!r}."
            )
        check_non_negative("FactorVAEConfig", "discriminator_learning_rate", self.discriminator_learning_rate, strict=True)


class DiscriminatorState(NamedTuple):
    """The extension's state: discriminator weights, their Adam state, and the last discriminator loss."""

    params: Any
    opt_state: Any
    loss: jax.Array


@functools.lru_cache(maxsize=16)
def _discriminator_template(latent_dim: int, hidden: tuple[int, ...], seed: int):
    with jax.ensure_compile_time_eval():
        net = nn.MLP(latent_dim, (*hidden, 2), activation="leaky_relu", rngs=nnx.Rngs(seed))
        return nnx.split(net)


def _template(config: FactorVAEConfig):
    return _discriminator_template(config.latent_dim, config.discriminator_hidden, config.init_seed + 2)


def discriminator_logits(config: FactorVAEConfig, params: Any, z: jax.Array) -> jax.Array:
    """The discriminator's two logits ``(B, 2)`` for codes ``z`` ``(B, K)`` (class 0: from q(z), 1: permuted).

    ``params`` is the pure-dict pytree of an :class:`ppzoo.nn.MLP` (leaky ReLU), e.g.
    ``fit.params["discriminator$state"].params``.
    """
    graphdef, template = _template(config)
    state = jax.tree.map(lambda a: a, template)  # a fresh State to fill, leaving the template untouched
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state)(z)


def permute_dims(key: jax.Array, z: jax.Array) -> jax.Array:
    """Permute each column of ``z`` independently across rows (Algorithm 2 of Kim & Mnih 2018)."""
    keys = jax.random.split(key, z.shape[1])
    columns = [jax.random.permutation(k, z[:, j]) for j, k in enumerate(keys)]
    return jnp.stack(columns, axis=1)


def factor_vae(
    x: ArrayLike | None = None,
    *,
    num_data: int | None = None,
    discriminator: Any = None,
    config: FactorVAEConfig = FactorVAEConfig(),
) -> None:
    """FactorVAE as a NumPyro program: the VAE plus the named factor ``total_correlation``.

    Parameters
    ----------
    x, num_data, config
        As :func:`ppzoo.models.vae.vae`.
    discriminator : pytree or None
        The discriminator's weights (supplied by the SVI extension during training); ``None`` leaves the
        factor out.
    """
    batch = vae_core(x, num_data, config)
    if not config.regularize or batch.x is None or discriminator is None:
        return
    logits = discriminator_logits(config, discriminator, batch.z)
    with batch.plate:
        # Eq. 2 with the density-ratio estimate of Eq. 3 (Kim & Mnih 2018): ELBO - gamma * TC.
        numpyro.factor("total_correlation", -config.gamma * (logits[:, 0] - logits[:, 1]))


def _guide_latents(guide, params: Mapping[str, Any], data: Mapping[str, Any], key: jax.Array) -> jax.Array:
    trace = handlers.trace(handlers.seed(handlers.substitute(guide, data=dict(params)), key)).get_trace(**data)
    return trace["z"]["value"]


def discriminator_extension(config: FactorVAEConfig, guide) -> SVIExtension:
    """The :class:`~ppzoo.extensions.SVIExtension` that trains FactorVAE's discriminator between ELBO steps.

    Each update draws a minibatch of codes from ``guide`` with the current encoder, permutes a copy
    dimension-wise, and takes one Adam step on disentanglement_lib's discriminator loss
    :math:`-\\frac12 E[\\log D_0(z)] - \\frac12 E[\\log D_1(\\tilde z)]`.
    """
    _, template = _template(config)
    optimizer = optax.adam(config.discriminator_learning_rate, b1=0.5, b2=0.9)

    def init(key, params, data):
        weights = jax.tree.map(jnp.array, nnx.to_pure_dict(template))
        return DiscriminatorState(weights, optimizer.init(weights), jnp.zeros(()))

    def update(state: DiscriminatorState, params, data, key):
        draw_key, permute_key = jax.random.split(key)
        z = jax.lax.stop_gradient(_guide_latents(guide, params, data, draw_key))
        z_permuted = permute_dims(permute_key, z)

        def loss_fn(weights):
            real = jax.nn.log_softmax(discriminator_logits(config, weights, z))
            fake = jax.nn.log_softmax(discriminator_logits(config, weights, z_permuted))
            return -0.5 * (jnp.mean(real[:, 0]) + jnp.mean(fake[:, 1]))

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return DiscriminatorState(optax.apply_updates(state.params, updates), opt_state, loss), loss

    return SVIExtension(init=init, update=update, model_kwargs=lambda state: {"discriminator": state.params}, name="discriminator")


class FactorVAEGuide:
    """FactorVAE's own guide: the amortized encoder, carrying the discriminator's ``svi_extension``."""

    def __init__(self, config: FactorVAEConfig):
        self.config = config
        self.svi_extension = discriminator_extension(config, self)

    def __call__(self, x: ArrayLike | None = None, *, num_data: int | None = None, discriminator: Any = None) -> None:
        del discriminator  # the guide does not depend on the discriminator
        vae_guide(x, num_data=num_data, config=self.config)


def entry(**config: Any) -> ZooModel:
    """The zoo entry ``"factor_vae"``."""
    return make_entry(
        "factor_vae",
        factor_vae,
        FactorVAEConfig,
        config,
        "FactorVAE: the VAE minus gamma x total correlation estimated by a discriminator trained alongside.",
        guide=FactorVAEGuide,
        sites=SITES,
        example=SMALLEST,
    )
