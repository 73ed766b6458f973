r"""DIP-VAE-I and DIP-VAE-II: the VAE with a penalty pushing a latent covariance towards the identity.

Kumar, Sattigeri & Balakrishnan (2018) match moments of the aggregate posterior to the prior. Both variants
add to the ELBO the penalty

.. math:: -\lambda_{od} \sum_{i \ne j} C_{ij}^2 - \lambda_d \sum_i (C_{ii} - 1)^2

on a covariance :math:`C` estimated on each minibatch:

* DIP-VAE-I (Eq. 6 of Kumar et al.): :math:`C = \operatorname{Cov}_{p(x)}[\mu_\phi(x)]`, the covariance of the
  encoder means;
* DIP-VAE-II (Eq. 7): :math:`C = \operatorname{Cov}_{q_\phi(z)}[z] = E_{p(x)}[\Sigma_\phi(x)] +
  \operatorname{Cov}_{p(x)}[\mu_\phi(x)]`, the covariance of the aggregate posterior (their Eq. 5).

As in disentanglement_lib, :math:`\lambda_d = \texttt{lambda\_d\_factor} \times \lambda_{od}` (their study:
``lambda_d_factor`` 10 for type I and 1 for type II, :math:`\lambda_{od}` in 1-50), and the penalty is added
once per minibatch to the per-image loss. The program is the VAE of :mod:`ppzoo.models.vae` plus the named
factor ``dip_penalty`` outside the plate with value :math:`-N \times \text{penalty}`, so that it weighs
against the dataset-level ELBO (:math:`N` times the per-image loss) as in disentanglement_lib.
``regularize=False`` drops it.

Sites (those of :mod:`ppzoo.models.vae` and the penalty's)

==================  =============  =======  =============================================================================
name                shape          support  role
==================  =============  =======  =============================================================================
``decoder$params``  pytree         real     param: weights of :math:`f_\theta`
``encoder$params``  pytree         real     param of the guide: weights of :math:`m_\phi, v_\phi`
``z``               ``(N, K)``     real     latent: plate ``"data"``
``x``               ``(N, H, W)``  {0, 1}   observed: plate ``"data"``
``encoder$params``  pytree         real     param: the encoder, read by the penalty (``regularize=True`` and ``x`` given)
``dip_penalty``     ``()``                  factor: -N x penalty (``regularize=True`` and ``x`` given)
==================  =============  =======  =============================================================================

References
----------
Kumar, A., Sattigeri, P. & Balakrishnan, A. (2018). Variational inference of disentangled latent concepts
from unlabeled observations. ICLR. Eqs. 5-7.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpyro
from numpy.typing import ArrayLike

from ppzoo.models import ZooModel
from ppzoo.models import Site
from ppzoo.models._checks import check_non_negative
from ppzoo.models.vae import ENCODER_IN_MODEL, SMALLEST, VAEConfig, encoder_network, make_entry, vae_core
from ppzoo.models.vae import SITES as VAE_SITES

__all__ = [
    "SITES",
    "SMALLEST",
    "DIPVAEIConfig",
    "DIPVAEIIConfig",
    "dip_vae_i",
    "dip_vae_ii",
    "dip_covariance",
    "dip_penalty",
    "entry_i",
    "entry_ii",
]

#: The site table of both types (rendered in the module docstring): the VAE's and the penalty's.
SITES: tuple[Site, ...] = VAE_SITES + (
    ENCODER_IN_MODEL,
    Site("dip_penalty", (), "factor", "", note="-N x penalty", when="``regularize=True`` and ``x`` given"),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DIPVAEIConfig(VAEConfig):
    """Settings of :func:`dip_vae_i`: those of :class:`~ppzoo.models.vae.VAEConfig` and

    Parameters
    ----------
    lambda_od : float
        Weight of the off-diagonal penalty, >= 0.
    lambda_d_factor : float
        :math:`\\lambda_d = \\texttt{lambda\\_d\\_factor} \\times \\lambda_{od}` (disentanglement_lib: 10 for type I).
    """

    lambda_od: float = 10.0
    lambda_d_factor: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        check_non_negative(name, "lambda_od", self.lambda_od, hint="e.g. lambda_od=10.")
        check_non_negative(name, "lambda_d_factor", self.lambda_d_factor, hint="e.g. lambda_d_factor=10 (type I) or 1 (type II).")

    @property
    def lambda_d(self) -> float:
        return float(self.lambda_d_factor) * float(self.lambda_od)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DIPVAEIIConfig(DIPVAEIConfig):
    """Settings of :func:`dip_vae_ii`; as :class:`DIPVAEIConfig` with ``lambda_d_factor = 1`` by default."""

    lambda_d_factor: float = 1.0


def dip_covariance(loc: jax.Array, scale: jax.Array | None = None) -> jax.Array:
    """The covariance DIP-VAE penalises, from one minibatch.

    Parameters
    ----------
    loc : jax.Array
        ``(M, K)`` encoder means.
    scale : jax.Array or None
        ``(M, K)`` encoder standard deviations; given, the result is DIP-VAE-II's
        :math:`E[\\Sigma(x)] + \\operatorname{Cov}[\\mu(x)]`, else DIP-VAE-I's :math:`\\operatorname{Cov}[\\mu(x)]`.

    Returns
    -------
    jax.Array
        ``(K, K)``; the covariance of the means uses the 1/M (maximum-likelihood) normalisation, as
        disentanglement_lib.
    """
    centred = loc - loc.mean(0)
    cov = centred.T @ centred / loc.shape[0]
    if scale is not None:
        cov = cov + jnp.diag(jnp.mean(scale**2, axis=0))
    return cov


def dip_penalty(covariance: jax.Array, lambda_od: float, lambda_d: float) -> jax.Array:
    """:math:`\\lambda_{od} \\sum_{i \\ne j} C_{ij}^2 + \\lambda_d \\sum_i (C_{ii} - 1)^2` (Kumar et al. 2018, Eqs. 6-7)."""
    diagonal = jnp.diagonal(covariance)
    off = covariance - jnp.diag(diagonal)
    return lambda_od * jnp.sum(off**2) + lambda_d * jnp.sum((diagonal - 1.0) ** 2)


def _dip_program(x, num_data, config: DIPVAEIConfig, kind: Literal["i", "ii"]) -> None:
    batch = vae_core(x, num_data, config)
    if not config.regularize or batch.x is None:
        return
    loc, scale = encoder_network(config, batch.image_shape)(batch.x)
    covariance = dip_covariance(loc, scale if kind == "ii" else None)
    penalty = dip_penalty(covariance, float(config.lambda_od), config.lambda_d)
    # Eq. 6 (type I) / Eq. 7 (type II) of Kumar et al. (2018); N x the per-image weight of disentanglement_lib.
    numpyro.factor("dip_penalty", -batch.num_data * penalty)


def dip_vae_i(x: ArrayLike | None = None, *, num_data: int | None = None, config: DIPVAEIConfig = DIPVAEIConfig()) -> None:
    """DIP-VAE-I as a NumPyro program: the VAE plus the factor ``dip_penalty`` on Cov[encoder mean]."""
    _dip_program(x, num_data, config, "i")


def dip_vae_ii(x: ArrayLike | None = None, *, num_data: int | None = None, config: DIPVAEIIConfig = DIPVAEIIConfig()) -> None:
    """DIP-VAE-II as a NumPyro program: the VAE plus the factor ``dip_penalty`` on Cov[q(z)]."""
    _dip_program(x, num_data, config, "ii")


def entry_i(**config: Any) -> ZooModel:
    """The zoo entry ``"dip_vae_i"``."""
    return make_entry(
        "dip_vae_i", dip_vae_i, DIPVAEIConfig, config,
        "DIP-VAE-I: the VAE plus a penalty pushing Cov[encoder mean] to the identity (named factor).",
        sites=SITES,
    )


def entry_ii(**config: Any) -> ZooModel:
    """The zoo entry ``"dip_vae_ii"``."""
    return make_entry(
        "dip_vae_ii", dip_vae_ii, DIPVAEIIConfig, config,
        "DIP-VAE-II: the VAE plus a penalty pushing the aggregate posterior's covariance to the identity.",
        sites=SITES,
    )
