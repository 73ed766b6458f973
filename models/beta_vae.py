r"""beta-VAE: the VAE with the KL term weighted by :math:`\beta` (Higgins et al. 2017).

Objective (Eq. 4 of Higgins et al. 2017), per image:

.. math:: \mathcal{L}_\beta = E_{q(z \mid x)}[\log p(x \mid z)] - \beta\, KL\big(q(z \mid x) \,\|\, p(z)\big).

The program is the VAE of :mod:`ppzoo.models.vae` with ``z`` sampled under
``numpyro.handlers.scale(scale=beta)`` in the model **and** in the guide. NumPyro's ELBO multiplies each
site's log-density by its scale, so :math:`E_q[\log p(x \mid z) + \beta \log p(z) - \beta \log q(z \mid x)]
= \text{reconstruction} - \beta\, KL`: no loss is re-implemented (the closed-form test in
``tests/test_vae_family.py`` checks the identity on a linear-Gaussian model).

With ``regularize=False`` the scale is dropped and the program is the generative model
:math:`p(z)\,p(x \mid z)` (for MCMC on the exact posterior). Note that the encoder trained with
:math:`\beta \ne 1` targets :math:`q \propto p(x \mid z)^{1/\beta} p(z)`, not :math:`p(z \mid x)`: part of the
amortization gap measured against the exact posterior is this deliberate tempering.

Sites (those of :mod:`ppzoo.models.vae`; ``z`` carries the scale ``beta``)

==================  =============  =======  =====================================================
name                shape          support  role
==================  =============  =======  =====================================================
``decoder$params``  pytree         real     param: weights of :math:`f_\theta`
``encoder$params``  pytree         real     param of the guide: weights of :math:`m_\phi, v_\phi`
``z``               ``(N, K)``     real     latent: plate ``"data"``
``x``               ``(N, H, W)``  {0, 1}   observed: plate ``"data"``
==================  =============  =======  =====================================================

References
----------
Higgins, I. et al. (2017). beta-VAE: Learning basic visual concepts with a constrained variational
framework. ICLR. Eq. 4.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

from numpy.typing import ArrayLike

from ppzoo.models import ZooModel
from ppzoo.models._checks import check_non_negative
from ppzoo.models.vae import SITES, SMALLEST, VAEConfig, make_entry, vae_core, vae_guide

__all__ = ["BetaVAEConfig", "beta_vae", "beta_vae_guide", "latent_scale", "entry", "SITES", "SMALLEST"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class BetaVAEConfig(VAEConfig):
    """Settings of :func:`beta_vae`: those of :class:`~ppzoo.models.vae.VAEConfig` and

    Parameters
    ----------
    beta : float
        Weight of the KL term, > 0 (``1`` is the plain VAE; disentanglement_lib's study used 1-16).
    """

    beta: float = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_non_negative("BetaVAEConfig", "beta", self.beta, strict=True, hint="beta = 1 is the plain VAE; beta > 1 favours disentangling, e.g. beta=4.")


def latent_scale(config: BetaVAEConfig) -> float:
    """The scale on ``z`` in model and guide: ``beta``, or 1 with ``regularize=False``."""
    return float(config.beta) if config.regularize else 1.0


def beta_vae(x: ArrayLike | None = None, *, num_data: int | None = None, config: BetaVAEConfig = BetaVAEConfig()) -> None:
    """The beta-VAE as a NumPyro program (sites as :func:`ppzoo.models.vae.vae`)."""
    vae_core(x, num_data, config, latent_scale=latent_scale(config))


def beta_vae_guide(x: ArrayLike | None = None, *, num_data: int | None = None, config: BetaVAEConfig = BetaVAEConfig()) -> None:
    """The amortized encoder with the same ``beta`` scale on ``z`` as the model."""
    vae_guide(x, num_data=num_data, config=config, latent_scale=latent_scale(config))


def entry(**config: Any) -> ZooModel:
    """The zoo entry ``"beta_vae"``."""
    return make_entry(
        "beta_vae",
        beta_vae,
        BetaVAEConfig,
        config,
        "beta-VAE: the VAE's KL term weighted by beta (handlers.scale on z in model and guide).",
        guide=lambda cfg: partial(beta_vae_guide, config=cfg),
    )
