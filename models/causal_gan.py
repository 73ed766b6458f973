r"""CausalGAN: a causal controller (an SCM over concept labels) feeding an image generator (Kocaoglu et al. 2018).

Generative story (data points :math:`n = 1..N`, concepts :math:`j` in topological order of the given DAG,
:math:`\mathrm{pa}(j)` their parents):

.. math::

    u_{nj} &\sim \sum_{m=1}^{M} \pi_{jm}(u_{n,\mathrm{pa}(j)})\,
              \mathcal{N}\big(\mu_{jm}(u_{n,\mathrm{pa}(j)}) + c_m,\ \sigma_{jm}^2\big)
              \qquad \text{(the causal controller)} \\
    z_n &\sim \mathcal{N}(0, I_Z), \qquad
    \bar{x}_n = G_\theta(u_n, z_n), \qquad x_n \sim \mathcal{N}(\bar{x}_n, s^2 I)
              \qquad \text{(the generator)}

:math:`(\pi_j, \mu_j) = g_j(u_{\mathrm{pa}(j)})` is the concept's mechanism: affine in the parents
(``mechanism="linear"``) or an MLP (``"mlp"``); a root's mechanism has the constant 1 as input. The fixed
offsets :math:`c_m` spread the :math:`M` components' means over ``[-1.5, 1.5]`` (standardised labels) so that
they start apart. With ``num_components=1`` a concept is Gaussian around its mechanism, so a linear controller
is a linear-Gaussian SCM. :math:`s` is ``pixel_scale``, a small likelihood around the generator's output that
the adversarial engine differentiates through (a Delta would do for the engine, not for SVI).

Each concept is its own sample site drawn from its parents' *site values*, so ``numpyro.handlers.do`` on a
concept (``handlers.do(model, {"shadow_length": v})``) is an intervention: its mechanism is cut, its
descendants follow, the rest keep their draws (``do`` keeps the random stream, so under the same seed the
non-descendants are the very same numbers), and the generator draws the image. Conditioning on a label
(``handlers.condition``) is a different operation: it changes the law of the label's *ancestors* too;
:func:`condition_labels` samples it by likelihood weighting over the controller.

How each part is fitted, and why (the trainer is ``ppzoo.case_studies._causal_gan``):

* The controller by **maximum likelihood** (NumPyro's SVI with an empty guide on the observed labels). The
  paper trains an implicit controller (noise-fed MLPs) adversarially because it has no density; this one is
  an explicit mixture density per concept, so its likelihood is exact and needs no discriminator.
* The generator on **the adversarial engine's** pieces (``ppzoo.inference.adversarial``: ``generate``, the
  non-saturating ``generator_loss``, the logistic ``discriminator_loss``, its ``GANState`` and its chunked,
  donated, NaN-guarded ``train``), with the controller held fixed, plus the paper's two extra networks: a
  **labeler** :math:`L` trained on real images to read their labels and an **anti-labeler** :math:`A` trained
  on generated images to read the labels they were generated from. The generator minimises
  :math:`-E\log\sigma(D(G(u,z))) + \rho_L \ell(L(G(u,z)), u) - \rho_A \ell(A(G(u,z)), u)` (Kocaoglu et al.
  2018, Sec. 5, Theorem 2; :math:`\ell` the Gaussian label loss, half the squared error, as the labels here
  are continuous): the labeler term makes the label visible in the image, the anti-labeler term keeps the
  generator from collapsing each label to one image. ``ppzoo.fit(model, {"x": x, "u": u},
  engine="adversarial", observed="x")`` also runs, but without the labeler terms the discriminator, which
  sees images only, does not tie the image to its labels.

Sites

==============================  ===============  ========  ==============================================================================================================
name                            shape            support   role
==============================  ===============  ========  ==============================================================================================================
``mechanism_<concept>$params``  pytree           real      param: weights of :math:`g_j` (parents -> mixture logits and means)
``noise_scale``                 ``(D, M)``       positive  param: :math:`\sigma`, one per concept and component (at least ``min_noise_scale``)
``<concept>``                   ``(N,)``         real      observed: a concept label, column of ``u``, plate ``"data"`` (drawn by the controller when ``u`` is not given)
``z``                           ``(N, Z)``       real      latent: the generator's noise, plate ``"data"``
``decoder$params``              pytree           real      param: weights of the generator :math:`G_\theta`
``x_mean``                      ``(N, *image)``  real      deterministic: :math:`\bar{x}`, the generated image before pixel noise
``x``                           ``(N, *image)``  real      observed: images, plate ``"data"``
==============================  ===============  ========  ==============================================================================================================

References
----------
Kocaoglu, M., Snyder, C., Dimakis, A. G. & Vishwanath, S. (2018). CausalGAN: Learning causal implicit
generative models with adversarial training. ICLR. Sec. 4 (causal controller), Sec. 5 (labeler and
anti-labeler, Theorem 2), Sec. 8 (total variation of the label distribution).
Pearl, J. (2009). Causality, 2nd ed., Ch. 3 (do versus conditioning).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpy.typing import ArrayLike
from numpyro import handlers
from numpyro.distributions import constraints

from ppzoo import nn
from ppzoo.graphs import descendants, edges_from_adjacency, topological_order
from ppzoo.models import (
    Example, Site, ZooModel, check_positive_integer, check_positive_number, make_config,
)

__all__ = [
    "CausalGANConfig", "causal_gan", "controller", "check_do", "condition_labels", "labels_of", "entry", "SITES",
    "SMALLEST", "PENDULUM_CONCEPTS", "PENDULUM_EDGES", "RESERVED_NAMES",
]

Mechanism = Literal["linear", "mlp"]
#: The pendulum's concepts and true graph (``ppzoo.data.pendulum.FACTOR_NAMES`` / ``GRAPH``), the default.
PENDULUM_CONCEPTS = ("pendulum_angle", "light_angle", "shadow_length", "shadow_position")
PENDULUM_EDGES = (("pendulum_angle", "shadow_length"), ("pendulum_angle", "shadow_position"),
                  ("light_angle", "shadow_length"), ("light_angle", "shadow_position"))
#: Site and argument names a concept may not take.
RESERVED_NAMES = ("x", "u", "z", "x_mean", "noise_scale", "num_data", "config", "data", "decoder")

SITES: tuple[Site, ...] = (
    Site("mechanism_<concept>$params", None, "param", note=r"weights of :math:`g_j` (parents -> mixture logits and means)",
         each="concepts"),
    Site("noise_scale", ("D", "M"), "param", "positive",
         note=r":math:`\sigma`, one per concept and component (at least ``min_noise_scale``)"),
    Site("<concept>", ("N",), "observed",
         note='a concept label, column of ``u``, plate ``"data"`` (drawn by the controller when ``u`` is not given)',
         each="concepts"),
    Site("z", ("N", "Z"), "latent", note='the generator\'s noise, plate ``"data"``'),
    Site("decoder$params", None, "param", note=r"weights of the generator :math:`G_\theta`"),
    Site("x_mean", ("N", "*image"), "deterministic", note=r":math:`\bar{x}`, the generated image before pixel noise"),
    Site("x", ("N", "*image"), "observed", note='images, plate ``"data"``'),
)

SMALLEST = Example(
    config={"concepts": ("a", "b"), "edges": (("a", "b"),), "image_shape": (2, 2, 1), "noise_dim": 2,
            "hidden": (4,), "mechanism_hidden": (3,), "num_components": 2},
    generate={"num_data": 3},
    data={"x": np.linspace(0.1, 0.9, 12, dtype=np.float32).reshape(3, 2, 2, 1),
          "u": np.array([[0.5, -0.3], [-1.0, 0.2], [0.1, 1.4]], dtype=np.float32)},
    sizes={"N": 3, "D": 2, "M": 2, "Z": 2, "image": (2, 2, 1)},
    size_fields=("noise_dim", "num_components"),
)


def _positive_tuple(owner: str, name: str, value: Any, *, allow_empty: bool) -> tuple[int, ...]:
    items = None if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) else tuple(value)
    if items is None or (not items and not allow_empty) or any(
            isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in items):
        raise ValueError(f"{owner}.{name} must be a tuple of positive integers, e.g. (64, 64); got {value!r}.")
    return tuple(int(v) for v in items)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CausalGANConfig:
    """Settings of :func:`causal_gan`.

    Parameters
    ----------
    concepts : tuple of str
        Concept names (= site names), in the column order of ``u``. Default: the pendulum's four factors.
    edges : tuple of (str, str) or adjacency matrix
        The given causal graph over the concepts, ``(cause, effect)`` pairs; must be a DAG. Default: the
        pendulum's true graph (both angles cause both shadow factors).
    image_shape : tuple of int
        Shape of one image, e.g. ``(32, 32, 3)``.
    noise_dim : int
        Size of the generator's noise ``z``.
    hidden : tuple of int
        Hidden widths of the generator (an MLP with ReLU, sigmoid output).
    mechanism : {"linear", "mlp"}
        The concepts' mechanisms :math:`g_j`: affine in the parents, or an MLP (tanh) with ``mechanism_hidden``.
    mechanism_hidden : tuple of int
        Hidden widths of the mechanisms' MLPs (``mechanism="mlp"``).
    num_components : int
        Mixture components per concept (1: Gaussian around the mechanism).
    min_noise_scale : float
        Lower bound of ``noise_scale`` (labels that are deterministic functions of their parents would send
        the likelihood to infinity without it).
    pixel_scale : float
        Sd of the pixel likelihood around the generator's output.
    init_seed : int
        Seed of the networks' initial weights.
    """

    concepts: tuple[str, ...] = PENDULUM_CONCEPTS
    edges: tuple[tuple[str, str], ...] | Any = PENDULUM_EDGES
    image_shape: tuple[int, ...] = (32, 32, 3)
    noise_dim: int = 16
    hidden: tuple[int, ...] = (256, 256)
    mechanism: Mechanism = "mlp"
    mechanism_hidden: tuple[int, ...] = (32, 32)
    num_components: int = 4
    min_noise_scale: float = 0.02
    pixel_scale: float = 0.05
    init_seed: int = 0

    def __post_init__(self) -> None:
        owner = "CausalGANConfig"
        concepts = None if isinstance(self.concepts, str) or not isinstance(self.concepts, Iterable) else tuple(self.concepts)
        if not concepts or not all(isinstance(c, str) for c in concepts):
            raise TypeError(f"{owner}.concepts must be a non-empty sequence of names, e.g. ('a', 'b'); got {self.concepts!r}.")
        bad = [c for c in concepts if c in RESERVED_NAMES or not c.isidentifier()]
        if bad:
            raise ValueError(f"{owner}.concepts {bad} clash with the model's own names {RESERVED_NAMES} or are not "
                             "identifiers; rename them.")
        object.__setattr__(self, "concepts", concepts)
        edges = self.edges
        if hasattr(edges, "shape") and hasattr(edges, "dtype"):
            edges = edges_from_adjacency(edges, concepts)
        if isinstance(edges, str) or not isinstance(edges, Iterable):
            raise TypeError(f"{owner}.edges must be (cause, effect) pairs or an adjacency matrix; got {self.edges!r}.")
        edges = tuple(tuple(e) for e in edges)
        if not all(len(e) == 2 for e in edges):
            raise TypeError(f"{owner}.edges must be (cause, effect) pairs, e.g. (('a', 'b'),); got {self.edges!r}.")
        object.__setattr__(self, "edges", edges)
        topological_order(concepts, edges)  # names an unknown concept or a cycle
        shape = _positive_tuple(owner, "image_shape", self.image_shape, allow_empty=False)
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "hidden", _positive_tuple(owner, "hidden", self.hidden, allow_empty=True))
        object.__setattr__(self, "mechanism_hidden",
                           _positive_tuple(owner, "mechanism_hidden", self.mechanism_hidden, allow_empty=True))
        if self.mechanism not in ("linear", "mlp"):
            raise ValueError(f"{owner}.mechanism must be 'linear' or 'mlp'; got {self.mechanism!r}.")
        check_positive_integer(owner, "noise_dim", self.noise_dim)
        check_positive_integer(owner, "num_components", self.num_components)
        check_positive_number(owner, "min_noise_scale", self.min_noise_scale)
        check_positive_number(owner, "pixel_scale", self.pixel_scale)
        if isinstance(self.init_seed, bool) or not isinstance(self.init_seed, (int, np.integer)):
            raise TypeError(f"{owner}.init_seed must be an integer; got {self.init_seed!r}.")

    @property
    def order(self) -> tuple[str, ...]:
        """The concepts in topological order (parents first)."""
        return topological_order(self.concepts, self.edges)

    def parents(self, concept: str) -> tuple[str, ...]:
        """The parents of ``concept``, in ``concepts`` order."""
        return tuple(c for c in self.concepts if (c, concept) in self.edges)

    def descendants(self, concept: str) -> tuple[str, ...]:
        """The descendants of ``concept`` (itself excluded)."""
        return descendants(self.concepts, self.edges, concept)


def check_do(config: CausalGANConfig, do: Mapping[str, Any] | None, *, what: str = "do") -> dict[str, Any]:
    """``do`` (or a conditioning dict) checked against the concepts, before anything compiles.

    Raises
    ------
    ValueError
        If a key is not a concept of ``config`` (the message lists the concepts).
    """
    do = dict(do or {})
    unknown = sorted(set(do) - set(config.concepts))
    if unknown:
        raise ValueError(
            f"{what} names unknown concept(s) {', '.join(map(repr, unknown))}. The controller's concepts: "
            f"{', '.join(config.concepts)}; for example {what}={{{config.concepts[-1]!r}: 1.0}}."
        )
    return do


def _num_rows(x: ArrayLike | None, u: ArrayLike | None, num_data: int | None, config: CausalGANConfig) -> int:
    if u is not None:
        if np.ndim(u) != 2 or np.shape(u)[1] != len(config.concepts):
            raise ValueError(f"causal_gan: `u` must have shape (num_data, {len(config.concepts)}), one column per concept "
                             f"{list(config.concepts)}; got {np.shape(u)}.")
        return np.shape(u)[0]
    if x is not None:
        return np.shape(x)[0]
    if num_data is None:
        raise ValueError("To generate from causal_gan, pass num_data=... (or the labels u=... / images x=...).")
    return int(num_data)


def controller(u: ArrayLike | None = None, *, num_data: int | None = None, config: CausalGANConfig) -> jax.Array:
    """The causal controller alone: one site per concept, drawn in topological order (module docstring).

    Returns the labels ``(N, D)`` in ``config.concepts`` order (for the generator; not a site).
    """
    num_data = _num_rows(None, u, num_data, config)
    k = config.num_components
    offsets = jnp.linspace(-1.5, 1.5, k) if k > 1 else jnp.zeros(1)
    noise_scale = numpyro.param("noise_scale", jnp.full((len(config.concepts), k), 0.5),
                                constraint=constraints.greater_than(config.min_noise_scale))
    values: dict[str, jax.Array] = {}
    with numpyro.plate("data", num_data):
        for concept in config.order:
            j = config.concepts.index(concept)
            parents = config.parents(concept)
            inputs = (jnp.stack([values[p] for p in parents], -1) if parents else jnp.ones((num_data, 1)))
            sizes = (2 * k,) if config.mechanism == "linear" else (*config.mechanism_hidden, 2 * k)
            out = nn.mlp(f"mechanism_{concept}", inputs.shape[-1], sizes, activation="tanh",
                         seed=config.init_seed + 1 + j)(inputs)
            logits, means = out[..., :k], out[..., k:] + offsets
            if k == 1:
                law = dist.Normal(means[..., 0], noise_scale[j, 0])
            else:
                law = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(means, noise_scale[j]))
            values[concept] = numpyro.sample(concept, law, obs=None if u is None else u[:, j])
    return jnp.stack([values[c] for c in config.concepts], -1)


def causal_gan(x: ArrayLike | None = None, u: ArrayLike | None = None, *, num_data: int | None = None,
               config: CausalGANConfig) -> None:
    """CausalGAN as a NumPyro program: the causal controller, then the generator (module docstring).

    Parameters
    ----------
    x : ArrayLike or None
        Images ``(N, *config.image_shape)``; ``None`` generates them.
    u : ArrayLike or None
        Concept labels ``(N, D)`` in ``config.concepts`` order; ``None``: the controller draws them.
    num_data : int or None
        Number of data points when neither ``x`` nor ``u`` is given.
    config : CausalGANConfig
    """
    if config is None:
        raise ValueError("causal_gan needs a config: ppzoo.models.get('causal_gan', ...).")
    num_data = _num_rows(x, u, num_data, config)
    if x is not None and tuple(np.shape(x)[1:]) != config.image_shape:
        raise ValueError(f"causal_gan: `x` must have shape (num_data, {', '.join(map(str, config.image_shape))}) "
                         f"(config.image_shape); got {np.shape(x)}. Set image_shape to the images' shape.")
    if x is not None and u is not None and np.shape(x)[0] != np.shape(u)[0]:
        raise ValueError(f"causal_gan: `x` has {np.shape(x)[0]} rows but `u` has {np.shape(u)[0]}; give one label row per image.")
    labels = controller(u, num_data=num_data, config=config)
    width = math.prod(config.image_shape)
    decoder = nn.mlp("decoder", len(config.concepts) + config.noise_dim, (*config.hidden, width), activation="relu",
                     seed=config.init_seed)
    with numpyro.plate("data", num_data):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([config.noise_dim]).to_event(1))
        mean = jax.nn.sigmoid(decoder(jnp.concatenate([labels, z], -1))).reshape(num_data, *config.image_shape)
        mean = numpyro.deterministic("x_mean", mean)
        numpyro.sample("x", dist.Normal(mean, config.pixel_scale).to_event(len(config.image_shape)), obs=x)


def labels_of(trace_values: Mapping[str, Any], config: CausalGANConfig) -> jax.Array:
    """The concept sites of a trace (or of ``Predictive`` draws) stacked as labels ``(..., N, D)``."""
    return jnp.stack([jnp.asarray(trace_values[c]) for c in config.concepts], -1)


def condition_labels(key: jax.Array, config: CausalGANConfig, params: Mapping[str, Any], given: Mapping[str, Any],
                     *, num_samples: int, num_proposals: int | None = None) -> jax.Array:
    """Labels drawn from the controller *conditioned* on ``given`` (``handlers.condition``), by likelihood weighting.

    Proposals come from the controller with the given concepts fixed (``handlers.condition``), each weighted by
    the likelihood of the given values under their mechanisms (the product of their sites' densities), and
    ``num_samples`` are resampled by those weights. Exact in the limit of many proposals; with few given concepts
    of low dimension (one label here) the weights' effective size is large.

    Parameters
    ----------
    key : jax.Array
    config : CausalGANConfig
    params : mapping
        The controller's params (e.g. a fit's ``params``).
    given : mapping
        Concept -> value to condition on.
    num_samples : int
        Draws returned.
    num_proposals : int or None
        Proposals (default ``20 * num_samples``).

    Returns
    -------
    jax.Array
        ``(num_samples, D)`` labels in ``config.concepts`` order.

    Raises
    ------
    ValueError
        If ``given`` names an unknown concept or is empty.
    """
    given = check_do(config, given, what="given")
    if not given:
        raise ValueError("condition_labels: `given` is empty; name at least one concept to condition on.")
    check_positive_integer("condition_labels", "num_samples", num_samples)
    num_proposals = 20 * num_samples if num_proposals is None else num_proposals
    check_positive_integer("condition_labels", "num_proposals", num_proposals, allow_none=False)
    values = {c: jnp.asarray(float(v), jnp.float32) for c, v in given.items()}
    return _likelihood_weighting(config, num_samples, num_proposals, key, dict(params), values)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _likelihood_weighting(config: CausalGANConfig, num_samples: int, num_proposals: int, key: jax.Array,
                          params: Mapping[str, Any], given: Mapping[str, jax.Array]) -> jax.Array:
    """One compiled program: proposals under handlers.condition, their weights, the resampled rows."""
    propose_key, pick_key = jax.random.split(key)
    data = {c: jnp.full((num_proposals,), v) for c, v in given.items()}
    program = handlers.condition(handlers.substitute(controller, data=dict(params)), data=data)
    trace = handlers.trace(handlers.seed(program, propose_key)).get_trace(num_data=num_proposals, config=config)
    log_w = sum(trace[c]["fn"].log_prob(trace[c]["value"]) for c in given)
    # Multinomial resampling by inverse CDF (choice with p): categorical(shape=...) would draw Gumbel noise for
    # every (sample, proposal) pair.
    rows = jax.random.choice(pick_key, num_proposals, (num_samples,), p=jax.nn.softmax(log_w))
    return labels_of({c: trace[c]["value"] for c in config.concepts}, config)[rows]


def _check_data(data: Mapping[str, Any], config: CausalGANConfig) -> None:
    x, u = data.get("x"), data.get("u")
    if x is None:
        raise ValueError("causal_gan needs images `x` (N, *image_shape) in data, e.g. ppzoo.fit(model, {'x': x, 'u': u}).")
    if tuple(np.shape(x)[1:]) != config.image_shape:
        raise ValueError(f"causal_gan data `x` must have shape (N, {', '.join(map(str, config.image_shape))}) "
                         f"(config.image_shape); got {np.shape(x)}.")
    if u is not None and (np.ndim(u) != 2 or np.shape(u) != (np.shape(x)[0], len(config.concepts))):
        raise ValueError(f"causal_gan data `u` must have shape ({np.shape(x)[0]}, {len(config.concepts)}): one label row "
                         f"per image, columns {list(config.concepts)}; got {np.shape(u)}.")


def entry(**config: Any) -> ZooModel:
    """The zoo entry ``"causal_gan"``."""
    cfg = make_config(CausalGANConfig, "causal_gan", config)
    return ZooModel(
        name="causal_gan",
        model=causal_gan,
        config=cfg,
        config_class=CausalGANConfig,
        check_data=_check_data,
        summary_sites=("noise_scale",),
        description="CausalGAN: an SCM over concept labels (do() intervenes) feeding an adversarially trained image generator.",
        sites=SITES,
        example=SMALLEST,
    )
