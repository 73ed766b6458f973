r"""beta-TCVAE: the VAE with its total-correlation term weighted by :math:`\beta` (Chen et al. 2018).

Chen et al. split the ELBO's KL term into index-code mutual information, the total correlation (TC) of the
aggregate posterior :math:`q(z) = \frac1N \sum_n q(z \mid x_n)`, and the dimension-wise KL (their Eq. 2).
With :math:`\alpha = \gamma = 1` their objective (Eq. 4) is

.. math:: \mathcal{L} = \text{ELBO} - (\beta - 1)\, KL\Big(q(z) \,\Big\|\, \prod_k q(z_k)\Big),

the form disentanglement_lib trains. The program is the VAE of :mod:`ppzoo.models.vae` plus one named factor
inside the data plate,

.. math:: \texttt{total\_correlation}_n = -(\beta - 1)\big[\log \hat q(z_n) - \textstyle\sum_k \log \hat q(z_{nk})\big],

with :math:`\hat q` the minibatch-weighted sampling (MWS) estimate of Chen et al. (Sec. 4.1 and
Appendix C.1): for a minibatch of :math:`M` images of a data set of :math:`N`,

.. math:: \log \hat q(z_i) = \log \sum_{j=1}^{M} q(z_i \mid x_j) - \log(N M),

and likewise per dimension. The data set size :math:`N` is an explicit argument of
:func:`total_correlation` (the model passes the plate size). The estimate carries the constant offset
:math:`(K - 1)\log(NM)` relative to dropping the :math:`\log(NM)` terms, as disentanglement_lib does; it
does not change the gradients. MWS is biased: with identical encoder distributions for every image (a
factorized :math:`q(z)`, TC = 0) it returns exactly :math:`(K - 1)\log N` (tested). The factor is scaled by
:math:`N / M` with the rest of the plate, so it enters the dataset-level ELBO as :math:`N` times the
minibatch mean, as the likelihood does.

The model calls the encoder (``encoder$params``, shared with the guide) on the minibatch to evaluate
:math:`q(z_i \mid x_j)` for all pairs. ``regularize=False`` drops the factor.

Sites (those of :mod:`ppzoo.models.vae` and the penalty's)

=====================  =============  =======  =========================================================================================
name                   shape          support  role
=====================  =============  =======  =========================================================================================
``decoder$params``     pytree         real     param: weights of :math:`f_\theta`
``encoder$params``     pytree         real     param of the guide: weights of :math:`m_\phi, v_\phi`
``z``                  ``(N, K)``     real     latent: plate ``"data"``
``x``                  ``(N, H, W)``  {0, 1}   observed: plate ``"data"``
``encoder$params``     pytree         real     param: the encoder, read by the penalty (``regularize=True`` and ``x`` given)
``total_correlation``  ``(N,)``                factor: -(:math:`\beta` - 1) x TC, plate ``"data"`` (``regularize=True`` and ``x`` given)
=====================  =============  =======  =========================================================================================

References
----------
Chen, R. T. Q., Li, X., Grosse, R. & Duvenaud, D. (2018). Isolating sources of disentanglement in
variational autoencoders. NeurIPS. Eq. 2 (decomposition), Eq. 4 (objective), Sec. 4.1 / Appendix C.1 (MWS).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from numpy.typing import ArrayLike

from ppzoo.models import ZooModel
from ppzoo.models import Site
from ppzoo.models._checks import check_non_negative
from ppzoo.models.vae import ENCODER_IN_MODEL, SMALLEST, VAEConfig, encoder_network, make_entry, vae_core
from ppzoo.models.vae import SITES as VAE_SITES

__all__ = ["BetaTCVAEConfig", "beta_tcvae", "total_correlation", "entry", "SITES", "SMALLEST"]

#: The site table (rendered in the module docstring): the VAE's and the penalty's.
SITES: tuple[Site, ...] = VAE_SITES + (
    ENCODER_IN_MODEL,
    Site(
        "total_correlation", ("N",), "factor", "", note=r'-(:math:`\beta` - 1) x TC, plate ``"data"``',
        when="``regularize=True`` and ``x`` given",
    ),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BetaTCVAEConfig(VAEConfig):
    """Settings of :func:`beta_tcvae`: those of :class:`~ppzoo.models.vae.VAEConfig` and

    Parameters
    ----------
    beta : float
        Weight of the total correlation, >= 0 (``1`` is the plain VAE; disentanglement_lib's study: 1-10).
    """

    beta: float = 6.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_non_negative("BetaTCVAEConfig", "beta", self.beta, hint="beta = 1 is the plain VAE, e.g. beta=6.")


def total_correlation(z: jax.Array, loc: jax.Array, scale: jax.Array, *, dataset_size: int) -> jax.Array:
    """Minibatch-weighted sampling estimate of the total correlation, per image (Chen et al. 2018, App. C.1).

    Parameters
    ----------
    z : jax.Array
        ``(M, K)`` draws, ``z[i] ~ q(z | x_i)``.
    loc, scale : jax.Array
        ``(M, K)`` the encoder's Gaussian parameters for the same ``M`` images.
    dataset_size : int
        N, the number of images the minibatch was drawn from (explicit: the estimator's weights depend on it).

    Returns
    -------
    jax.Array
        ``(M,)``: :math:`\\log \\hat q(z_i) - \\sum_k \\log \\hat q(z_{ik})`; its mean is the TC estimate.
    """
    m = z.shape[0]
    if dataset_size < m:
        raise ValueError(f"`dataset_size` ({dataset_size}) must be at least the minibatch size ({m}).")
    # log q(z_i,k | x_j) for all pairs: (M_i, M_j, K).
    log_q = dist.Normal(loc[None, :, :], scale[None, :, :]).log_prob(z[:, None, :])
    log_nm = jnp.log(float(dataset_size) * m)
    log_joint = logsumexp(log_q.sum(-1), axis=1) - log_nm
    log_marginals = (logsumexp(log_q, axis=1) - log_nm).sum(-1)
    return log_joint - log_marginals


def beta_tcvae(x: ArrayLike | None = None, *, num_data: int | None = None, config: BetaTCVAEConfig = BetaTCVAEConfig()) -> None:
    """The beta-TCVAE as a NumPyro program: the VAE plus the named factor ``total_correlation``."""
    batch = vae_core(x, num_data, config)
    if not config.regularize or batch.x is None:
        return
    loc, scale = encoder_network(config, batch.image_shape)(batch.x)
    tc = total_correlation(batch.z, loc, scale, dataset_size=batch.num_data)
    with batch.plate:
        # Eq. 4 of Chen et al. (2018) with alpha = gamma = 1: ELBO - (beta - 1) * TC.
        numpyro.factor("total_correlation", -(config.beta - 1.0) * tc)


def entry(**config: Any) -> ZooModel:
    """The zoo entry ``"beta_tcvae"``."""
    return make_entry(
        "beta_tcvae",
        beta_tcvae,
        BetaTCVAEConfig,
        config,
        "beta-TCVAE: the VAE minus (beta - 1) x total correlation (minibatch-weighted sampling), a named factor.",
        sites=SITES,
    )
