r"""Bayesian linear ICA: independent non-Gaussian sources, a linear mixing, Gaussian noise.

Generative story (for data points :math:`n = 1..N`, sources :math:`k = 1..K`, observed dims :math:`d = 1..D`):

.. math::

    A_{dk} &\sim \mathcal{N}(0, s_A^2) \\
    \sigma &\sim \mathrm{HalfNormal}(s_\sigma) \\
    z_{nk} &\sim p_z \quad \text{(Laplace(0, 1), logistic or Student-t: non-Gaussian, unit scale)} \\
    x_n &\sim \mathcal{N}(A z_n, \sigma^2 I_D)

Sites

=============  ==============  ==============  ==========
name           shape           support         role
=============  ==============  ==============  ==========
``mixing``     ``(D, K)``      real            latent
``noise_scale````()``          positive        latent
``z``          ``(N, K)``      real            latent (plate ``"data"``)
``x``          ``(N, D)``      real            observed (plate ``"data"``)
=============  ==============  ==============  ==========

The posterior is invariant to permuting the sources together with the columns of ``mixing`` and to
flipping the sign of a source with its column (the source prior is symmetric). With independent chains
each may settle in a different one of these :math:`K!\,2^K` modes, so :func:`align_chains` maps every
chain onto the first before anything is summarised; without that, R-hat and posterior means mix modes.

References
----------
Hyvarinen, Karhunen & Oja (2001), *Independent Component Analysis*, Ch. 20 (Bayesian noisy ICA).
Roberts & Everson (2001), *Independent Component Analysis: Principles and Practice*, Ch. 5.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from scipy.optimize import linear_sum_assignment

from ppzoo.models import ZooModel, make_config

__all__ = ["ICAConfig", "ica", "ica_guide", "align_chains", "entry"]

SourcePrior = Literal["laplace", "logistic", "student_t"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ICAConfig:
    """Settings of :func:`ica`.

    Parameters
    ----------
    num_sources : int or None
        K. ``None``: as many sources as observed dimensions.
    num_observed : int or None
        D, needed only to generate data (``x=None``); otherwise read from ``x``.
    source_prior : {"laplace", "logistic", "student_t"}
        Unit-scale, symmetric, non-Gaussian source density.
    mixing_scale : float
        Prior sd of the mixing entries.
    noise_prior_scale : float
        Scale of the half-normal prior on the noise sd.
    """

    num_sources: int | None = None
    num_observed: int | None = None
    source_prior: SourcePrior = "laplace"
    mixing_scale: float = 1.0
    noise_prior_scale: float = 0.5

    def __post_init__(self) -> None:
        for name in ("num_sources", "num_observed"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"ICAConfig.{name} must be a positive integer or None; got {value!r}.")
        if self.source_prior not in ("laplace", "logistic", "student_t"):
            raise ValueError(
                f"ICAConfig.source_prior must be 'laplace', 'logistic' or 'student_t'; got {self.source_prior!r}."
            )
        for name in ("mixing_scale", "noise_prior_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ICAConfig.{name} must be positive; got {getattr(self, name)!r}.")


def _source_distribution(prior: SourcePrior) -> dist.Distribution:
    if prior == "laplace":
        return dist.Laplace(0.0, 1.0)
    if prior == "logistic":
        return dist.Logistic(0.0, 1.0)
    return dist.StudentT(5.0, 0.0, 1.0)


def ica(x=None, *, num_data: int | None = None, config: ICAConfig = ICAConfig()) -> None:
    """Bayesian linear ICA as a NumPyro program (see the module docstring for the sites).

    Parameters
    ----------
    x : ArrayLike or None
        Observations ``(num_data, num_observed)``; ``None`` generates them.
    num_data : int or None
        Number of data points when ``x`` is None.
    config : ICAConfig
        Model settings.
    """
    if x is not None:
        num_data, num_observed = x.shape
    else:
        num_observed = config.num_observed
        if num_data is None or num_observed is None:
            raise ValueError(
                "To generate data from `ica`, pass num_data=... and set ICAConfig(num_observed=...)."
            )
    num_sources = config.num_sources or num_observed
    mixing = numpyro.sample(
        "mixing", dist.Normal(0.0, config.mixing_scale).expand([num_observed, num_sources]).to_event(2)
    )
    noise_scale = numpyro.sample("noise_scale", dist.HalfNormal(config.noise_prior_scale))
    with numpyro.plate("data", num_data):
        z = numpyro.sample("z", _source_distribution(config.source_prior).expand([num_sources]).to_event(1))
        numpyro.sample("x", dist.Normal(jnp.einsum("nk,dk->nd", z, mixing), noise_scale).to_event(1), obs=x)


def ica_guide(x=None, *, num_data: int | None = None, config: ICAConfig = ICAConfig()) -> None:
    """The ICA model's own guide: amortized, linear in ``x``, for SVI.

    ``q(mixing)`` is a mean-field Normal, ``q(noise_scale)`` a LogNormal, and the sources are encoded
    by a learned unmixing matrix, ``q(z_n | x_n) = MultivariateNormal(W x_n + b, L L^T)`` with one
    Cholesky factor ``L`` shared by all points. With a handful of global
    parameters instead of one location per data point, SVI converges in a few thousand steps. The
    mixing starts at the principal axes of ``x`` (scaled by the root eigenvalues) turned by a random
    rotation, the unmixing at its pseudo-inverse.
    """
    if x is None:
        raise ValueError("The ICA guide needs the observations `x`.")
    num_data, num_observed = x.shape
    num_sources = config.num_sources or num_observed

    def init_mixing(key):
        # jnp throughout, so that the guide also initialises under jit/vmap (SBC fits many data sets at once).
        centred = jnp.asarray(x, dtype=jnp.float32) - jnp.mean(jnp.asarray(x, dtype=jnp.float32), 0)
        eigvals, eigvecs = jnp.linalg.eigh(centred.T @ centred / num_data)
        top = jnp.argsort(eigvals)[::-1][:num_sources]
        basis = eigvecs[:, top] * jnp.sqrt(jnp.maximum(eigvals[top], 1e-6))
        rotation, _ = jnp.linalg.qr(jax.random.normal(key, (num_sources, num_sources)))
        return basis @ rotation

    mixing_loc = numpyro.param("mixing_loc", init_mixing)
    mixing_scale = numpyro.param(
        "mixing_scale", jnp.full((num_observed, num_sources), 0.01), constraint=dist.constraints.positive
    )
    numpyro.sample("mixing", dist.Normal(mixing_loc, mixing_scale).to_event(2))
    noise_loc = numpyro.param("noise_loc", jnp.log(0.5))
    noise_spread = numpyro.param("noise_spread", 0.1, constraint=dist.constraints.positive)
    numpyro.sample("noise_scale", dist.LogNormal(noise_loc, noise_spread))
    unmixing = numpyro.param("unmixing", lambda key: jnp.linalg.pinv(init_mixing(key)))
    offset = numpyro.param("source_offset", jnp.zeros(num_sources))
    # One full covariance shared by all points (its Cholesky factor): with little noise the exact posterior of
    # z_n is close to N(W x_n, noise^2 (A^T A)^-1), correlated unless the mixing's columns are orthogonal. A
    # diagonal q would pay for that correlation in the ELBO and so pull the mixing toward orthogonal columns,
    # i.e. rotate the sources (the same bias the iVAE's mean-field encoder had; see models/ivae.py).
    source_tril = numpyro.param(
        "source_scale_tril", 0.1 * jnp.eye(num_sources), constraint=dist.constraints.lower_cholesky
    )
    with numpyro.plate("data", num_data):
        numpyro.sample("z", dist.MultivariateNormal(x @ unmixing.T + offset, scale_tril=source_tril))


def _check_data(data: Mapping[str, Any], config: ICAConfig) -> None:
    x = data.get("x")
    if x is None:
        raise ValueError(
            "ICA needs the observed array `x` (num_data, num_observed) in data, e.g. "
            "ppzoo.fit(model, {'x': x}, ...); got no `x`."
        )
    if np.ndim(x) != 2:
        raise ValueError(f"ICA data `x` must be 2-D (num_data, num_observed); got shape {np.shape(x)}.")
    num_sources = config.num_sources or np.shape(x)[1]
    if num_sources > np.shape(x)[1]:
        raise ValueError(
            f"ICA with num_sources={num_sources} needs at least as many observed dimensions; `x` has "
            f"{np.shape(x)[1]}. Lower num_sources."
        )
    if np.shape(x)[0] < 2:
        raise ValueError(f"ICA data `x` needs at least 2 rows; got {np.shape(x)[0]}.")


def align_chains(samples: dict[str, np.ndarray], config: ICAConfig | None = None) -> tuple[dict[str, np.ndarray], str]:
    """Map every chain onto chain 0's mode: permute and sign-flip sources with their mixing columns.

    Each chain's posterior-mean mixing columns are matched to chain 0's by the Hungarian algorithm on
    absolute cosine similarity; the sign is that of the matched cosine. The same permutation and signs
    are applied to every draw's ``mixing`` columns and ``z`` components of that chain.

    Returns
    -------
    samples : dict
        Aligned copies (``(chain, draw, ...)``).
    note : str
        What was done, for the report.
    """
    mixing = samples["mixing"]
    num_chains = mixing.shape[0]
    if num_chains < 2:
        return samples, "One chain: no alignment needed."
    out = {k: np.array(v, copy=True) for k, v in samples.items()}
    reference = mixing[0].mean(0)
    reference = reference / np.linalg.norm(reference, axis=0, keepdims=True)
    changed = []
    for c in range(1, num_chains):
        mean = mixing[c].mean(0)
        cos = reference.T @ (mean / np.linalg.norm(mean, axis=0, keepdims=True))
        rows, cols = linear_sum_assignment(-np.abs(cos))
        order = cols[np.argsort(rows)]  # reference column k <- chain column order[k]
        signs = np.sign(cos[np.arange(len(order)), order])
        signs[signs == 0] = 1.0
        out["mixing"][c] = mixing[c][..., order] * signs
        if "z" in samples:
            out["z"][c] = samples["z"][c][..., order] * signs
        if not (np.array_equal(order, np.arange(len(order))) and np.all(signs > 0)):
            changed.append(f"chain {c}: permutation {order.tolist()}, signs {signs.astype(int).tolist()}")
    note = (
        "ICA's posterior has symmetric modes (source permutations and sign flips); each chain was mapped "
        "onto chain 0's mode by matching mixing columns before summarising. "
        + ("Changed: " + "; ".join(changed) + "." if changed else "All chains were already in the same mode.")
    )
    return out, note


def entry(**config: Any) -> ZooModel:
    """The zoo entry ``"ica"``."""
    return ZooModel(
        name="ica",
        model=ica,
        config=make_config(ICAConfig, "ica", config),
        config_class=ICAConfig,
        guide=lambda config: partial(ica_guide, config=config),
        check_data=_check_data,
        align=align_chains,
        summary_sites=("mixing", "noise_scale"),
        description="Bayesian linear ICA: Laplace sources, Gaussian mixing prior, Gaussian noise.",
    )
