r"""Bayesian linear ICA: independent non-Gaussian sources, a linear mixing, Gaussian noise.

Generative story (for data points :math:`n = 1..N`, sources :math:`k = 1..K`, observed dims :math:`d = 1..D`):

.. math::

    A_{dk} &\sim \mathcal{N}(0, s_A^2) \\
    \sigma &\sim \mathrm{HalfNormal}(s_\sigma) \\
    z_{nk} &\sim p_z \quad \text{(Laplace(0, 1), logistic or Student-t: non-Gaussian, unit scale)} \\
    x_n &\sim \mathcal{N}(A z_n, \sigma^2 I_D) \quad \text{(noise="isotropic", the default)} \\
    x_n &= A z_n + \sigma P_A \epsilon_n,\ \epsilon_n \sim \mathcal{N}(0, I_D),\ P_A = I - A A^+
          \quad \text{(noise="off_span")}

Sites

===============  ==========  ========  =============================================================================
name             shape       support   role
===============  ==========  ========  =============================================================================
``mixing``       ``(D, K)``  real      latent: the mixing matrix ``A``
``noise_scale``  ``()``      positive  latent: the noise sd ``sigma``
``z``            ``(N, K)``  real      latent: the sources, plate ``"data"`` (``noise='isotropic'``)
``z``            ``(N, K)``  real      deterministic: the sources ``A^+ x``, plate ``"data"`` (``noise='off_span'``)
``x``            ``(N, D)``  real      observed: plate ``"data"``
===============  ==========  ========  =============================================================================

Which noise model
-----------------
``"isotropic"`` is the classical noisy ICA (Hyvarinen et al. 2001, Ch. 15): every source of every point is a
latent site. With as many observed dimensions as sources (``D == K``) the noise scale is identified only
through the sources' non-Gaussianity, and each source sits in a funnel with it: as ``sigma -> 0`` the
likelihood pins ``z_n`` to ``A^{-1} x_n``. On 3 sources seen in 3 dimensions (2000 points, true noise 0.1)
NUTS gave 0.197 +- 0.028 and BlackJAX 0.179 +- 0.024 with r_hat 1.52 / 1.60, SVI 0.188 +- 0.002; SBC on
2 x 2 data piles the noise-scale ranks at 0 (see ``ppzoo check ica``'s setup in ``ppzoo.cli.CHECK_SETUPS``).
Extra observed dimensions identify the noise, but with small noise the mixing is pinned to ~``sigma / sqrt(N)``
given the sources while its rotation within the span moves ~10x more, and only when all ``N K`` sources move
with it: 4 NUTS chains x 500 + 500 on 3 sources in 4 dimensions still had r_hat 10.7 (trees of 128-255 steps).

``"off_span"`` puts the noise only off the mixing's column space, so that ``z_n = A^+ x_n`` exactly and the
likelihood is in closed form (:class:`OffSpanICA`): the noiseless ICA likelihood (MacKay 1996) of the
in-span coordinates times probabilistic PCA's Gaussian for the residuals (Tipping & Bishop 1999). The
posterior is over the ``D K + 1`` global parameters only; with ``D > K`` the residuals identify ``sigma``
(to ~``sigma / sqrt(2 N (D - K))``). This is the ``ppzoo run ica`` default (3 sources seen in 4 dimensions):
NUTS and BlackJAX with a dense mass matrix converge in ~15 leapfrog steps a draw, and SVI with a full-rank
Gaussian matches their sds. Data simulated with isotropic noise (``ppzoo.data.load("linear_ica")``) also
carry noise within the span, which this model reads as part of the sources: sd ``sigma / s_min(A)`` (~0.05
there) against unit-scale sources, so the mixing's bias is of order ``sigma^2`` and below its posterior sd
at these sizes (tests/test_ica.py checks recovery). With ``D == K`` the noise scale has no data and keeps
its prior. Random initial points can leave MCMC chains in local modes whose span misses a strong direction
of the data; start them with :func:`init_to_principal_subspace`.

The posterior is invariant to permuting the sources together with the columns of ``mixing`` and to
flipping the sign of a source with its column (the source prior is symmetric). With independent chains
each may settle in a different one of these :math:`K!\,2^K` modes, so :func:`align_chains` maps every
chain onto the first before anything is summarised; without that, R-hat and posterior means mix modes.

References
----------
Hyvarinen, Karhunen & Oja (2001), *Independent Component Analysis*, Ch. 20 (Bayesian noisy ICA).
Roberts & Everson (2001), *Independent Component Analysis: Principles and Practice*, Ch. 5.
MacKay (1996), *Maximum likelihood and covariant algorithms for independent component analysis*, Eq. 4.
Tipping & Bishop (1999), *Probabilistic principal component analysis*, JRSS B 61(3), Eq. 8.
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

from ppzoo.models import Example, Site, ZooModel, check_positive_integer, check_positive_number, make_config

__all__ = [
    "ICAConfig", "OffSpanICA", "ica", "ica_guide", "ica_off_span_guide", "init_to_principal_subspace", "align_chains",
    "entry", "SITES", "SMALLEST",
]

#: The site table (rendered in the module docstring).
SITES: tuple[Site, ...] = (
    Site("mixing", ("D", "K"), "latent", note="the mixing matrix ``A``"),
    Site("noise_scale", (), "latent", "positive", note="the noise sd ``sigma``"),
    Site("z", ("N", "K"), "latent", note='the sources, plate ``"data"``', when="``noise='isotropic'``"),
    Site("z", ("N", "K"), "deterministic", note='the sources ``A^+ x``, plate ``"data"``', when="``noise='off_span'``"),
    Site("x", ("N", "D"), "observed", note='plate ``"data"``'),
)

#: The smallest runnable instance: 2 sources seen in 3 dimensions, 4 points.
SMALLEST = Example(
    config={"num_sources": 2, "num_observed": 3},
    generate={"num_data": 4},
    data={"x": np.array([[0.3, -1.2, 0.8], [1.1, 0.4, -0.5], [-0.7, 0.9, 1.3], [-0.2, -0.6, -1.0]], dtype=np.float32)},
    sizes={"N": 4, "D": 3, "K": 2},
    size_fields=("num_sources", "num_observed"),
)

SourcePrior = Literal["laplace", "logistic", "student_t"]
NoiseModel = Literal["isotropic", "off_span"]


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
    noise : {"isotropic", "off_span"}
        Where the Gaussian noise lies. ``"isotropic"``: in every observed direction, with the sources as
        per-datum latent sites (the classical noisy ICA). ``"off_span"``: only off the mixing's column
        space, so the sources are ``A^+ x`` and the likelihood is in closed form with no per-datum latent
        (the case study's default; see the module docstring for when to use which).
    """

    num_sources: int | None = None
    num_observed: int | None = None
    source_prior: SourcePrior = "laplace"
    mixing_scale: float = 1.0
    noise_prior_scale: float = 0.5
    noise: NoiseModel = "isotropic"

    def __post_init__(self) -> None:
        for name in ("num_sources", "num_observed"):
            check_positive_integer("ICAConfig", name, getattr(self, name), allow_none=True)
        if self.source_prior not in ("laplace", "logistic", "student_t"):
            raise ValueError(
                f"ICAConfig.source_prior must be 'laplace', 'logistic' or 'student_t'; got {self.source_prior!r}."
            )
        if self.noise not in ("isotropic", "off_span"):
            raise ValueError(f"ICAConfig.noise must be 'isotropic' or 'off_span'; got {self.noise!r}.")
        for name in ("mixing_scale", "noise_prior_scale"):
            check_positive_number("ICAConfig", name, getattr(self, name))


#: Variance of each unit-scale source density (Laplace 2 b^2, logistic pi^2 s^2 / 3, Student-t nu / (nu - 2)).
_SOURCE_VARIANCE: dict[str, float] = {"laplace": 2.0, "logistic": float(np.pi**2 / 3), "student_t": 5.0 / 3.0}


def _source_distribution(prior: SourcePrior) -> dist.Distribution:
    if prior == "laplace":
        return dist.Laplace(0.0, 1.0)
    if prior == "logistic":
        return dist.Logistic(0.0, 1.0)
    return dist.StudentT(5.0, 0.0, 1.0)


class OffSpanICA(dist.Distribution):
    r"""One observation of ICA with its Gaussian noise off the mixing's column space: ``x = A z + sigma P x``.

    ``z`` has independent unit-scale sources, ``P = I - A A^+`` projects onto the orthogonal complement of
    the columns of ``A`` (``D x K``, full column rank, ``K <= D``) and ``x``'s noise is
    ``sigma P epsilon`` with ``epsilon ~ N(0, I_D)``. The map ``(z, U^T epsilon) -> x`` is linear with
    ``|det| = sigma^(D-K) det(A^T A)^(1/2)`` (``U`` an orthonormal basis of the complement), so

    .. math::

        \log p(x) = \sum_k \log p_z\big((A^+ x)_k\big) - \tfrac12 \log\det(A^\top A)
                    - \frac{\lVert x - A A^+ x \rVert^2}{2\sigma^2} - (D-K)\big(\log\sigma + \tfrac12\log 2\pi\big).

    With ``D == K`` this is the noiseless ICA likelihood (MacKay 1996, Eq. 4, with ``W = A^{-1}``).

    Parameters
    ----------
    mixing : ArrayLike
        ``A``, shape ``(D, K)``.
    noise_scale : ArrayLike
        ``sigma``, a positive scalar.
    source : numpyro.distributions.Distribution
        The univariate, unit-scale source density ``p_z``.
    """

    arg_constraints = {"mixing": dist.constraints.real_matrix, "noise_scale": dist.constraints.positive}
    support = dist.constraints.real_vector
    pytree_data_fields = ("mixing", "noise_scale", "source")

    def __init__(self, mixing, noise_scale, source, *, validate_args=None):
        self.mixing, self.noise_scale, self.source = mixing, noise_scale, source
        super().__init__(batch_shape=(), event_shape=(jnp.shape(mixing)[0],), validate_args=validate_args)

    def unmixing(self) -> jax.Array:
        """``A^+ = (A^T A)^{-1} A^T``, shape ``(K, D)``."""
        a = self.mixing
        return jnp.linalg.solve(a.T @ a, a.T)

    def sample(self, key, sample_shape=()):
        source_key, noise_key = jax.random.split(key)
        num_observed, num_sources = jnp.shape(self.mixing)
        shape = sample_shape + self.batch_shape
        z = self.source.sample(source_key, shape + (num_sources,))
        noise = jax.random.normal(noise_key, shape + (num_observed,))
        off_span = noise - (noise @ self.unmixing().T) @ self.mixing.T
        return z @ self.mixing.T + self.noise_scale * off_span

    def log_prob(self, value):
        num_observed, num_sources = jnp.shape(self.mixing)
        sources = value @ self.unmixing().T
        residual = value - sources @ self.mixing.T
        _, log_det = jnp.linalg.slogdet(self.mixing.T @ self.mixing)
        return (
            jnp.sum(self.source.log_prob(sources), -1)
            - 0.5 * log_det
            - 0.5 * jnp.sum(residual**2, -1) / self.noise_scale**2
            - (num_observed - num_sources) * (jnp.log(self.noise_scale) + 0.5 * jnp.log(2 * jnp.pi))
        )


def ica(x=None, *, num_data: int | None = None, config: ICAConfig = ICAConfig()) -> None:
    """Bayesian linear ICA as a NumPyro program (see the module docstring for the sites).

    Parameters
    ----------
    x : ArrayLike or None
        Observations ``(num_data, num_observed)``; ``None`` generates them.
    num_data : int or None
        Number of data points when ``x`` is None.
    config : ICAConfig
        Model settings; ``config.noise`` picks the likelihood (module docstring).
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
    source = _source_distribution(config.source_prior)
    with numpyro.plate("data", num_data):
        if config.noise == "off_span":
            likelihood = OffSpanICA(mixing, noise_scale, source)
            x = numpyro.sample("x", likelihood, obs=x)
            # The sources are a function of x and the mixing: kept as a site so that metrics and reports
            # read them as they read the per-datum latents of the isotropic model.
            numpyro.deterministic("z", x @ likelihood.unmixing().T)
        else:
            z = numpyro.sample("z", source.expand([num_sources]).to_event(1))
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


def _principal_subspace(x, num_sources: int, source_variance: float) -> tuple[jax.Array, jax.Array]:
    """A mixing basis and a noise sd from the principal axes of ``x`` (probabilistic PCA's estimates).

    Returns ``basis`` (``D x K``) such that ``basis @ R`` has the covariance of ``x``'s top ``K`` principal
    axes for any rotation ``R``, given unit-scale sources of variance ``source_variance``; and the root mean
    of the other ``D - K`` eigenvalues, the maximum-likelihood noise sd of Tipping & Bishop (1999), Eq. 8
    (``nan`` when ``D == K``). ``jnp`` throughout, so that it also runs under ``jit``/``vmap``.
    """
    x = jnp.asarray(x, dtype=jnp.float32)
    centred = x - jnp.mean(x, 0)
    eigvals, eigvecs = jnp.linalg.eigh(centred.T @ centred / x.shape[0])  # ascending
    eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]
    rest = eigvals[num_sources:]
    noise_sd = jnp.sqrt(jnp.maximum(jnp.mean(rest), 1e-12)) if rest.size else jnp.asarray(jnp.nan)
    signal = jnp.maximum(eigvals[:num_sources] - (rest.mean() if rest.size else 0.0), 1e-6)
    return eigvecs[:, :num_sources] * jnp.sqrt(signal / source_variance), noise_sd


def _principal_axes(x) -> jax.Array:
    """Eigenvectors of ``x``'s covariance as columns, by decreasing eigenvalue."""
    x = jnp.asarray(x, dtype=jnp.float32)
    centred = x - jnp.mean(x, 0)
    return jnp.linalg.eigh(centred.T @ centred / x.shape[0])[1][:, ::-1]


def _random_rotation(key: jax.Array, size: int) -> jax.Array:
    """A Haar-distributed orthogonal ``size x size`` matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (size, size)))
    return q * jnp.sign(jnp.diag(r))


def init_to_principal_subspace(site=None, *, x=None, config: ICAConfig = ICAConfig()):
    """A NumPyro init strategy for ICA's MCMC chains: each chain starts in ``x``'s principal subspace.

    ``mixing`` starts at ``x``'s top ``K`` principal axes (scaled to the sources' variance) turned by a
    random rotation drawn from the site's key, so chains start spread over the within-span rotations, the
    directions only the sources' non-Gaussianity identifies; ``noise_scale`` at probabilistic PCA's estimate
    (the root mean of the remaining eigenvalues; uniform as usual when ``D == K``). Every other site as
    ``init_to_uniform``. Random starts in the whole space leave chains in local modes whose span misses a
    strong direction of the data (noise sd ~3 instead of 0.1, measured on the case study's data; 3 of 4
    chains there), which their step size (~1e-3) cannot leave.

    Parameters
    ----------
    site : dict or None
        Supplied by NumPyro; ``None`` returns the strategy with ``x`` and ``config`` bound.
    x : ArrayLike
        The observations ``(num_data, num_observed)``.
    config : ICAConfig
        The model's config (for ``num_sources`` and the source variance).

    Examples
    --------
    >>> model = ppzoo.models.get("ica", num_sources=3, noise="off_span")  # doctest: +SKIP
    >>> init = init_to_principal_subspace(x=x, config=model.config)  # doctest: +SKIP
    >>> ppzoo.fit(model, {"x": x}, engine="nuts", init_strategy=init, dense_mass=True)  # doctest: +SKIP
    """
    from numpyro.infer.initialization import init_to_uniform

    if x is None:
        raise ValueError("init_to_principal_subspace needs the observations: init_to_principal_subspace(x=x, config=...).")
    if site is None:
        return partial(init_to_principal_subspace, x=x, config=config)
    if site["type"] != "sample" or site["is_observed"] or site["name"] not in ("mixing", "noise_scale"):
        return init_to_uniform(site)
    num_sources = config.num_sources or np.shape(x)[1]
    basis, noise_sd = _principal_subspace(x, num_sources, _SOURCE_VARIANCE[config.source_prior])
    key = site["kwargs"].get("rng_key")
    if site["name"] == "mixing":
        return basis @ _random_rotation(key, num_sources)
    if np.shape(x)[1] == num_sources:
        return init_to_uniform(site)
    return noise_sd * jnp.exp(0.1 * jax.random.normal(key))


def ica_off_span_guide(x=None, *, num_data: int | None = None, config: ICAConfig = ICAConfig()) -> None:
    """The SVI guide of ``ICAConfig(noise="off_span")``: a full-rank Gaussian over the global parameters.

    With the sources a function of ``x`` and the mixing, the only latent sites are the ``D K + 1`` global
    parameters; one joint ``MultivariateNormal`` keeps their posterior correlations. It lives in the
    coordinates of ``x``'s principal axes, ``A = E_K diag(s) M + sigma_0 E_rest N`` (``E`` the eigenvectors, ``s``
    the signal's root eigenvalues per unit source variance, ``sigma_0`` the PCA noise estimate): ``N`` moves the mixing's span, which the
    residuals pin down to ~``sigma / sqrt(num_data)``, ``M`` rotates and scales within it, which only the
    sources' non-Gaussianity identifies (sds ~10x larger). In the raw entries of ``A`` those two scales
    are mixed and Adam, whose steps are per coordinate, diverged at learning rate 0.02 and had not
    converged after 5000 steps at 0.002 on the case study's data. ``M`` starts at a random rotation, ``N`` at
    0, the noise at probabilistic PCA's estimate (:func:`init_to_principal_subspace`).
    """
    if x is None:
        raise ValueError("The ICA guide needs the observations `x`.")
    num_observed = x.shape[1]
    num_sources = config.num_sources or num_observed
    size = num_observed * num_sources
    basis, noise_sd = _principal_subspace(x, num_sources, _SOURCE_VARIANCE[config.source_prior])
    axes = _principal_axes(x)  # (D, D), columns by decreasing eigenvalue; the first K span `basis`
    scale = jnp.linalg.norm(basis, axis=0)  # (K,)
    # A = axes @ [diag(scale) M; noise_sd N]: one invertible linear map of vec(M, N), its log|det| a constant.
    # The noise sd brings N's posterior sds near M's, so one learning rate suits both.
    span_scale = jnp.where(jnp.isnan(noise_sd), 1.0, noise_sd)
    row_scale = jnp.concatenate([scale, jnp.full(num_observed - num_sources, span_scale)])
    log_det = num_sources * jnp.sum(jnp.log(row_scale))

    def init_loc(key):
        log_noise = jnp.log(jnp.where(jnp.isnan(noise_sd), 0.5 * config.noise_prior_scale, noise_sd))
        coords = jnp.concatenate([_random_rotation(key, num_sources), jnp.zeros((num_observed - num_sources, num_sources))])
        return jnp.concatenate([coords.reshape(-1), log_noise[None]])

    loc = numpyro.param("global_loc", init_loc)
    scale_tril = numpyro.param("global_scale_tril", 0.01 * jnp.eye(size + 1), constraint=dist.constraints.lower_cholesky)
    joint = numpyro.sample(
        "_ica_globals", dist.MultivariateNormal(loc, scale_tril=scale_tril), infer={"is_auxiliary": True}
    )
    coords = joint[..., :size].reshape(joint.shape[:-1] + (num_observed, num_sources))
    mixing = axes @ (row_scale[:, None] * coords)
    numpyro.sample("mixing", dist.Delta(mixing, log_density=-log_det, event_dim=2))
    log_noise = joint[..., size]
    # q(noise_scale) = q(log noise_scale) / noise_scale: the Jacobian of exp enters the guide's density.
    numpyro.sample("noise_scale", dist.Delta(jnp.exp(log_noise), log_density=-log_noise))


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


def _own_guide(config: ICAConfig):
    """The SVI guide for ``config``: :func:`ica_guide` (amortized sources) or :func:`ica_off_span_guide`."""
    return partial(ica_off_span_guide if config.noise == "off_span" else ica_guide, config=config)


def entry(**config: Any) -> ZooModel:
    """The zoo entry ``"ica"``."""
    return ZooModel(
        name="ica",
        model=ica,
        config=make_config(ICAConfig, "ica", config),
        config_class=ICAConfig,
        guide=_own_guide,
        check_data=_check_data,
        align=align_chains,
        summary_sites=("mixing", "noise_scale"),
        description="Bayesian linear ICA: Laplace sources, Gaussian mixing prior, Gaussian noise.",
        sites=SITES,
        example=SMALLEST,
    )
