r"""SCM-VAE: a VAE whose latent concepts follow a given causal graph with nonlinear additive mechanisms.

Generative story (Komanduri et al. 2022, Sec. III), for images :math:`n = 1..N` and concepts
:math:`j = 1..d` (each a block of ``concept_dim`` = :math:`k` dimensions) in a topological order of the
known graph :math:`\mathcal{G}`:

.. math::

    \epsilon_{n} &\sim \mathcal{N}(0, I_{d \times k}) \\
    z_{n,j} &= f_j\big(z_{n,\mathrm{pa}(j)}\big) + \sigma_j\, \epsilon_{n,j}
        \qquad (f_j = 0 \text{ for root concepts}) \\
    x_n \mid z_n &\sim \mathrm{Bernoulli}\big(\mathrm{sigmoid}(g_\theta(z_n))\big)
        \ \text{or}\ \mathcal{N}\big(\mathrm{sigmoid}(g_\theta(z_n)), s^2\big)

with each mechanism :math:`f_j` a small MLP (``mechanism_<concept>$params``) of the concept's parents only:
the nonlinear additive-noise SCM of SCM-VAE with the structural knowledge (the graph) given a priori.
The labels enter as the label-conditioned prior factor ``label_prior`` :math:`= \sum_{j,k} \log
\mathcal{N}(z_{n,jk} \mid u_{n,j}, \tau^2)` (SCM-VAE's supervised structural causal prior) and, with
``label_scm_weight > 0``, as ``label_scm`` :math:`= \lambda_u \sum_{j \in \text{effects}, k} \log
\mathcal{N}(u_{n,j} \mid f_j(u_{n,\mathrm{pa}(j)})_k, s_j^2)`: each mechanism fitted to the labels of its
parents, the same term as CausalVAE's ``label_scm`` over the given graph. Why: through the ELBO alone the
mechanisms hardly learn (the encoder can absorb any mechanism into ``eps``): on the pendulum, do() on an
angle moved the shadow length 0.15-0.22 sd where the simulator's moves 0.76-0.84. With
``mechanism_gradient="labels"`` (default) the mechanisms get their gradient from ``label_scm`` only; the image
pathway uses them (and passes gradients through them to the encoder) but sends their weights none.

Each concept is its own sample site named after it, generated in a topological order of the graph, so
``numpyro.handlers.do(model, {"pendulum_angle": c})`` sets that concept and its descendants follow
through their mechanisms while the other concepts keep their values (for the same ``eps``: this is
exact, in every order). The concept sites are observed :class:`~numpyro.distributions.Delta` sites (log
density 0) computed from ``eps``, the one random per-datum site, which SVI's guide and NUTS infer.

Sites (those of :mod:`ppzoo.models.causal_vae` without the learned graph's, plus the mechanisms)

==============================  ===============  ========  ==================================================================================================
name                            shape            support   role
==============================  ===============  ========  ==================================================================================================
``noise_scale``                 ``(d,)``         positive  param: :math:`\sigma`
``decoder$params``              pytree           real      param: the decoder (``decoder='joint'``)
``decoder_<concept>$params``    pytree           real      param: one decoder per group, named after its first concept (``decoder`` per concept or in groups)
``encoder$params``              pytree           real      param of the guide: the encoder
``eps``                         ``(N, d, k)``    real      latent: exogenous noise, plate ``"data"``
``<concept>``                   ``(N, k)``       real      observed: Delta, one site per concept (a ``do`` target)
``z``                           ``(N, d*k)``     real      deterministic: the concepts side by side
``label_prior``                 ``(N,)``                   factor: label-conditioned prior (``u`` given)
``x``                           ``(N, *image)``  [0, 1]    observed: images, ``image`` = ``(H, W)`` or ``(H, W, C)``
``mechanism_<concept>$params``  pytree           real      param: :math:`f_j`, one per concept with parents
``label_noise_scale``           ``(d,)``         positive  param: :math:`s` (``u`` given, ``label_scm_weight > 0``)
``label_scm``                   ``(N,)``                   factor: labels under the mechanisms (``u`` given, ``label_scm_weight > 0``)
==============================  ===============  ========  ==================================================================================================

References
----------
Komanduri, A., Wu, Y., Huang, W., Chen, F. & Wu, X. (2022). SCM-VAE: Learning identifiable causal
representations via structural knowledge. IEEE BigData.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpy.typing import ArrayLike

from ppzoo import nn
from ppzoo.graphs import topological_order
from ppzoo.models import Site, ZooModel, make_config
from ppzoo.models.causal_vae import SITES as CAUSAL_VAE_SITES
from ppzoo.models.causal_vae import SMALLEST as CAUSAL_VAE_SMALLEST
from ppzoo.models.causal_vae import (
    LatentSCMConfig,
    check_data,
    concept_site,
    decode,
    encode,
    guide,
    image_shape_of,
    program,
)

__all__ = ["SCMVAEConfig", "scm_vae", "scm_vae_guide", "PENDULUM_GRAPH", "encode", "decode", "entry", "SITES", "SMALLEST"]

#: The site table (rendered in the module docstring): CausalVAE's without the learned graph's sites, plus
#: the mechanisms.
SITES: tuple[Site, ...] = tuple(
    site for site in CAUSAL_VAE_SITES
    if site.name not in ("adjacency", "mechanism$params", "label_noise_scale", "acyclicity", "adjacency_sparsity",
                         "label_scm")
) + (
    Site("mechanism_<concept>$params", None, "param", note=":math:`f_j`, one per concept with parents", each="effects"),
    Site("label_noise_scale", ("d",), "param", "positive", note=":math:`s`", when="``u`` given, ``label_scm_weight > 0``"),
    Site("label_scm", ("N",), "factor", "", note="labels under the mechanisms",
         when="``u`` given, ``label_scm_weight > 0``"),
)

#: The smallest runnable instance: CausalVAE's, with the graph a -> b and mechanisms of 4 units.
SMALLEST = dataclasses.replace(
    CAUSAL_VAE_SMALLEST, config={**CAUSAL_VAE_SMALLEST.config, "graph": (("a", "b"),), "mechanism_hidden": (4,)}
)

#: The pendulum's true graph as (cause, effect) pairs.
PENDULUM_GRAPH: tuple[tuple[str, str], ...] = (
    ("pendulum_angle", "shadow_length"),
    ("pendulum_angle", "shadow_position"),
    ("light_angle", "shadow_length"),
    ("light_angle", "shadow_position"),
)


def _generation_order(concepts: tuple[str, ...], edges: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """``ppzoo.graphs.topological_order`` of the concepts, its errors naming ``SCMVAEConfig.graph``."""
    try:
        return topological_order(concepts, edges)
    except ValueError as error:
        raise ValueError(f"SCMVAEConfig.graph: {error}") from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class SCMVAEConfig(LatentSCMConfig):
    """Settings of :func:`scm_vae`: those of :class:`~ppzoo.models.causal_vae.LatentSCMConfig` and

    Parameters
    ----------
    graph : tuple of (str, str)
        The known causal graph as (cause, effect) pairs of concept names; must be acyclic.
        Default: the pendulum's (both angles cause both shadow factors).
    mechanism_hidden : tuple of int
        Hidden widths of each mechanism MLP :math:`f_j`.
    label_scm_weight : float
        :math:`\\lambda_u`, weight of ``label_scm``, the mechanisms fitted to the labels (0 turns it off: the
        mechanisms then learn from the ELBO alone).
    mechanism_gradient : {"labels", "all"}
        ``"labels"`` (default): the mechanisms' weights learn from ``label_scm`` only; ``"all"``: from the whole
        ELBO too. Use ``"all"`` without labels (else the mechanisms never move).
    """

    graph: tuple[tuple[str, str], ...] = PENDULUM_GRAPH
    mechanism_hidden: tuple[int, ...] = (32, 32)
    label_scm_weight: float = 1.0
    mechanism_gradient: Literal["labels", "all"] = "labels"

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            edges = tuple((str(a), str(b)) for a, b in self.graph) if all(isinstance(e, (tuple, list)) and len(e) == 2 for e in self.graph) else None
        except TypeError:
            edges = None
        if edges is None:
            raise ValueError(f"SCMVAEConfig.graph must be a tuple of (cause, effect) name pairs, e.g. (('a', 'b'),); got {self.graph!r}.")
        object.__setattr__(self, "graph", edges)
        unknown = sorted({n for e in edges for n in e} - set(self.concepts))
        if unknown:
            raise ValueError(f"SCMVAEConfig.graph names unknown concept(s) {unknown}; the concepts are {', '.join(self.concepts)}.")
        loops = [a for a, b in edges if a == b]
        if loops:
            raise ValueError(f"SCMVAEConfig.graph has a self-loop on {loops[0]!r} ({loops[0]} -> {loops[0]}), a cycle; remove it.")
        _generation_order(self.concepts, edges)
        hidden = tuple(self.mechanism_hidden) if isinstance(self.mechanism_hidden, (list, tuple)) else self.mechanism_hidden
        if not isinstance(hidden, tuple) or any(isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in hidden):
            raise ValueError(f"SCMVAEConfig.mechanism_hidden must be a tuple of positive integers, e.g. (32, 32); got {self.mechanism_hidden!r}.")
        object.__setattr__(self, "mechanism_hidden", hidden)
        weight = self.label_scm_weight
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not np.isfinite(weight) or weight < 0:
            raise ValueError(f"SCMVAEConfig.label_scm_weight must be a finite number >= 0; got {weight!r}.")
        if self.mechanism_gradient not in ("labels", "all"):
            raise ValueError(
                f"SCMVAEConfig.mechanism_gradient must be 'labels' or 'all'; got {self.mechanism_gradient!r}."
            )

    @property
    def order(self) -> tuple[str, ...]:
        """The concepts in the topological order in which they are generated."""
        return _generation_order(self.concepts, self.graph)

    def parents(self, concept: str) -> tuple[str, ...]:
        """The given parents of a concept, in concept order."""
        return tuple(c for c in self.concepts if (c, concept) in self.graph)

    @property
    def effects(self) -> tuple[str, ...]:
        """The concepts with parents (each has a mechanism network), in concept order."""
        return tuple(c for c in self.concepts if self.parents(c))

    @property
    def adjacency(self) -> np.ndarray:
        """The graph as a ``(d, d)`` 0/1 matrix, ``[i, j] = 1`` for ``concepts[i] -> concepts[j]``."""
        a = np.zeros((self.num_concepts, self.num_concepts), dtype=np.int8)
        for cause, effect in self.graph:
            a[self.concepts.index(cause), self.concepts.index(effect)] = 1
        return a


def _mechanisms(config: SCMVAEConfig) -> dict[str, Callable[[jax.Array], jax.Array]]:
    """The mechanism networks :math:`f_j` (param sites ``mechanism_<concept>$params``), one per effect."""
    k = config.concept_dim
    return {
        name: nn.mlp(f"mechanism_{name}", len(config.parents(name)) * k, (*config.mechanism_hidden, k),
                     activation="elu", seed=config.init_seed + 2 + config.concepts.index(name))
        for name in config.order if config.parents(name)
    }


def _without_weight_gradient(f: Callable[[jax.Array], jax.Array], inputs: jax.Array) -> jax.Array:
    """``f(inputs)`` with the gradient to ``inputs`` kept and none to the weights ``f`` closes over.

    The first-order expansion around the stopped input, ``stop(f(stop(x))) + J(stop(x)) (x - stop(x))``: equal
    to ``f(x)`` in value and in its input gradient; the weights' gradient is ``(dJ/dw) (x - stop(x)) = 0``.
    """
    fixed = jax.lax.stop_gradient(inputs)
    value, tangent = jax.jvp(f, (fixed,), (inputs - fixed,))
    return jax.lax.stop_gradient(value) + tangent


def _nodes(noise: jax.Array, batch: int, config: SCMVAEConfig, mechanisms: dict) -> jax.Array:
    k = config.concept_dim
    values: dict[str, jax.Array] = {}
    for name in config.order:
        j = config.concepts.index(name)
        value = noise[:, j, :]
        if name in mechanisms:
            inputs = jnp.concatenate([values[p] for p in config.parents(name)], axis=-1)
            if config.mechanism_gradient == "labels":
                value = _without_weight_gradient(mechanisms[name], inputs) + value
            else:
                value = mechanisms[name](inputs) + value
        values[name] = concept_site(name, value, batch, k)
    return jnp.stack([values[c] for c in config.concepts], axis=1)


def _label_terms(u_batch: jax.Array, config: SCMVAEConfig, mechanisms: dict) -> None:
    """``label_scm``: each effect's labels under its mechanism of its parents' labels (see the module docstring)."""
    if config.label_scm_weight <= 0 or not mechanisms:
        return
    k = config.concept_dim
    scale = numpyro.param("label_noise_scale", jnp.ones((config.num_concepts,)), constraint=dist.constraints.positive)
    total = 0.0
    for name, f in mechanisms.items():
        j = config.concepts.index(name)
        parents = jnp.stack([u_batch[:, config.concepts.index(p)] for p in config.parents(name)], axis=-1)
        predicted = f(jnp.repeat(parents, k, axis=-1))  # each parent label fills its k latent dimensions
        total = total + dist.Normal(predicted, scale[j]).log_prob(u_batch[:, j : j + 1]).sum(-1)
    numpyro.factor("label_scm", config.label_scm_weight * total)


def scm_vae(
    x: ArrayLike | None = None,
    u: ArrayLike | None = None,
    *,
    num_data: int | None = None,
    config: SCMVAEConfig = SCMVAEConfig(),
) -> None:
    """SCM-VAE as a NumPyro program (see the module docstring).

    Parameters
    ----------
    x : ArrayLike or None
        Images ``(N, H, W[, C])`` in [0, 1]; ``None`` generates them.
    u : ArrayLike or None
        Standardised concept labels ``(N, d)``; ``None`` drops the label prior factor.
    num_data : int or None
        Number of images to generate when ``x`` is None.
    config : SCMVAEConfig
        Model settings.
    """
    image_shape_of(x, num_data, config)
    mechanisms = _mechanisms(config)
    program(x, u, num_data, config, lambda noise, batch: _nodes(noise, batch, config, mechanisms),
            lambda u_batch: _label_terms(u_batch, config, mechanisms))


def scm_vae_guide(x: ArrayLike | None = None, u: ArrayLike | None = None, *, num_data: int | None = None, config: SCMVAEConfig = SCMVAEConfig()) -> None:
    """The amortized encoder :math:`q(\\epsilon_n \\mid x_n)` of :func:`scm_vae`."""
    guide(x, u, num_data=num_data, config=config)


def entry(**config: Any) -> ZooModel:
    """The zoo entry ``"scm_vae"``."""
    return ZooModel(
        name="scm_vae",
        model=scm_vae,
        config=make_config(SCMVAEConfig, "scm_vae", config),
        config_class=SCMVAEConfig,
        guide=lambda cfg: partial(scm_vae_guide, config=cfg),
        check_data=check_data,
        summary_sites=(),
        description="SCM-VAE: given causal graph, nonlinear additive latent SCM z_j = f_j(z_pa(j)) + eps_j, label-conditioned "
                    "prior, mechanisms fitted to the labels.",
        sites=SITES,
        example=SMALLEST,
    )
