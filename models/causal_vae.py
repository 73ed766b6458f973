r"""CausalVAE: a VAE whose latent concepts follow a learned (linear or nonlinear) structural causal model.

Generative story (Yang et al. 2021, Sec. 3-4), for images :math:`n = 1..N`, concepts :math:`i, j = 1..d`
(each a block of ``concept_dim`` = :math:`k` latent dimensions) and standardised concept labels
:math:`u_n \in \mathbb{R}^d`:

.. math::

    A &\in \mathbb{R}^{d \times d},\ A_{ii} = 0 \quad (A_{ij} \ne 0:\ \text{edge } i \to j)\\
    \epsilon_{n} &\sim \mathcal{N}(0, I_{d \times k}) \\
    z_n &= A^\top z_n + \sigma \circ \epsilon_n
        \;\Longleftrightarrow\; z_n = (I - A^\top)^{-1} (\sigma \circ \epsilon_n) \qquad \text{(causal layer, Eq. 1)}\\
    x_n \mid z_n &\sim \mathrm{Bernoulli}\big(\mathrm{sigmoid}(f_\theta(z_n))\big)
        \ \text{or}\ \mathcal{N}\big(\mathrm{sigmoid}(f_\theta(z_n)), s^2\big)

or, with ``mechanism="mlp"``, the paper's nonlinear layer :math:`z_{n,i} = g_i(A_{:,i} \circ z_n) + \sigma_i
\epsilon_{n,i}` (Eq. 3) with one small network :math:`g_i` per concept whose gain on parent :math:`j` is at most
:math:`|A_{ji}|` (see :class:`CausalVAEConfig`), and with three named factors that make the ELBO CausalVAE's
objective (Eq. 10-13 of the paper):

* ``label_prior`` :math:`= \sum_{i,k} \log \mathcal{N}(z_{n,ik} \mid u_{n,i}, \tau^2)`, the label-conditioned
  prior :math:`p(z \mid u)` (CausalVAE's weak supervision; only when labels are given);
* ``label_scm`` :math:`= \lambda_u \sum_j \log \mathcal{N}(u_{n,j} \mid (A^\top u_n)_j, s_j^2)` (or
  :math:`g_j(A_{:,j} \circ u_n)`), the causal layer fitted to the labels (the Gaussian form of the paper's :math:`l_u`; :math:`s` = ``label_noise_scale``);
* ``acyclicity`` :math:`= -N \lambda_h\, h(A)` with :math:`h(A) = \operatorname{tr} e^{A \circ A} - d`
  (NOTEARS; zero exactly on DAGs, Eq. 13), and ``adjacency_sparsity`` :math:`= -N \lambda_1 \lVert A \rVert_1`.

The global penalties are multiplied by N so that their weights are per image, like the plate's terms.

Every concept is its own sample site named after it (``config.concepts``), so
``numpyro.handlers.do(model, {"light_angle": c})`` sets it and its descendants change. The sites are
registered in ``config.concepts`` order; each holds the causal layer's solution with the concepts already
registered held at their (possibly intervened) values — the role of CausalVAE's mask layer at
intervention time. A ``do`` therefore propagates exactly along the learned graph when the concept order
is a topological order of the learned :math:`A` (true for the pendulum's order and graph: causes first);
a learned edge from a later to an earlier concept would not carry an intervention backwards. The concept
sites are observed :class:`~numpyro.distributions.Delta` sites (log density 0): they are functions of
``eps``, which is the one random per-datum site that SVI's guide and NUTS infer. Holding ``eps`` at its
posterior and intervening gives counterfactuals (abduction, action, prediction).

Sites

============================  ===============  ========  ==================================================================================================
name                          shape            support   role
============================  ===============  ========  ==================================================================================================
``adjacency``                 ``(d, d)``       real      param: ``A`` (diagonal held at 0)
``noise_scale``               ``(d,)``         positive  param: :math:`\sigma`
``mechanism$params``          pytree           real      param: :math:`g_i` weights (``mechanism='mlp'``)
``label_noise_scale``         ``(d,)``         positive  param: :math:`s` (``u`` given, ``label_scm_weight > 0``)
``decoder$params``            pytree           real      param: the decoder (``decoder='joint'``)
``decoder_<concept>$params``  pytree           real      param: one decoder per group, named after its first concept (``decoder`` per concept or in groups)
``encoder$params``            pytree           real      param of the guide: the encoder
``acyclicity``                ``()``                     factor: NOTEARS penalty (``acyclicity_weight > 0``)
``adjacency_sparsity``        ``()``                     factor: L1 penalty on ``A`` (``sparsity_weight > 0``)
``eps``                       ``(N, d, k)``    real      latent: exogenous noise, plate ``"data"``
``<concept>``                 ``(N, k)``       real      observed: Delta, one site per concept (a ``do`` target)
``z``                         ``(N, d*k)``     real      deterministic: the concepts side by side
``label_prior``               ``(N,)``                   factor: label-conditioned prior (``u`` given)
``label_scm``                 ``(N,)``                   factor: labels under the causal layer (``u`` given, ``label_scm_weight > 0``)
``x``                         ``(N, *image)``  [0, 1]    observed: images, ``image`` = ``(H, W)`` or ``(H, W, C)``
============================  ===============  ========  ==================================================================================================

The guide (SVI) is the amortized encoder :math:`q(\epsilon_n \mid x_n) = \mathcal{N}(m_\phi(x_n),
\operatorname{diag} e^{v_\phi(x_n)})`; it reads images only (CausalVAE's encoder also reads the labels), so
counterfactuals need no labels.

References
----------
Yang, M., Liu, F., Chen, Z., Shen, X., Hao, J. & Wang, J. (2021). CausalVAE: Disentangled representation
learning via neural structural causal models. CVPR. Eq. 1 (causal layer), 10-13 (objective).
Zheng, X., Aragam, B., Ravikumar, P. & Xing, E. P. (2018). DAGs with NO TEARS. NeurIPS (the acyclicity
function :math:`h`).
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Callable, Mapping, Sequence
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
from ppzoo.models import Example, Site, ZooModel, make_config

__all__ = [
    "SITES",
    "SMALLEST",
    "CausalVAEConfig",
    "LatentSCMConfig",
    "causal_vae",
    "causal_vae_guide",
    "acyclicity",
    "mlp_mechanism",
    "structural_hamming_distance",
    "learned_adjacency",
    "learned_graph",
    "encode",
    "decode",
    "check_data",
    "entry",
    "PENDULUM_CONCEPTS",
]

#: The pendulum's concepts in CausalVAE's order (causes first).
PENDULUM_CONCEPTS: tuple[str, ...] = ("pendulum_angle", "light_angle", "shadow_length", "shadow_position")
_RESERVED = {"x", "u", "z", "eps", "adjacency", "noise_scale", "acyclicity", "adjacency_sparsity", "label_prior", "label_scm"}

_GIVEN_U = "``u`` given"
#: The site table (rendered in the module docstring); SCM-VAE's is built from it.
SITES: tuple[Site, ...] = (
    Site("adjacency", ("d", "d"), "param", note="``A`` (diagonal held at 0)"),
    Site("noise_scale", ("d",), "param", "positive", note=r":math:`\sigma`"),
    Site("mechanism$params", None, "param", note=":math:`g_i` weights", when="``mechanism='mlp'``"),
    Site("label_noise_scale", ("d",), "param", "positive", note=":math:`s`", when=f"{_GIVEN_U}, ``label_scm_weight > 0``"),
    Site("decoder$params", None, "param", note="the decoder", when="``decoder='joint'``"),
    Site(
        "decoder_<concept>$params", None, "param", note="one decoder per group, named after its first concept",
        when="``decoder`` per concept or in groups", each="concepts",
    ),
    Site("encoder$params", None, "param", note="the encoder", program="guide"),
    Site("acyclicity", (), "factor", "", note="NOTEARS penalty", when="``acyclicity_weight > 0``"),
    Site("adjacency_sparsity", (), "factor", "", note="L1 penalty on ``A``", when="``sparsity_weight > 0``"),
    Site("eps", ("N", "d", "k"), "latent", note='exogenous noise, plate ``"data"``'),
    Site("<concept>", ("N", "k"), "observed", note="Delta, one site per concept (a ``do`` target)", each="concepts"),
    Site("z", ("N", "d*k"), "deterministic", note="the concepts side by side"),
    Site("label_prior", ("N",), "factor", "", note="label-conditioned prior", when=_GIVEN_U),
    Site("label_scm", ("N",), "factor", "", note="labels under the causal layer", when=f"{_GIVEN_U}, ``label_scm_weight > 0``"),
    Site("x", ("N", "*image"), "observed", "[0, 1]", note="images, ``image`` = ``(H, W)`` or ``(H, W, C)``"),
)

#: The smallest runnable instance: two concepts, 4 binary 4 x 4 images with labels, MLPs of 4 units.
SMALLEST = Example(
    config={"concepts": ("a", "b"), "mlp_hidden": (4,), "batch_size": None, "image_shape": (4, 4)},
    generate={"num_data": 4},
    data={
        "x": (np.arange(64).reshape(4, 4, 4) % 3 == 0).astype(np.float32),
        "u": np.array([[0.5, -1.0], [1.2, 0.3], [-0.4, 0.9], [-1.3, -0.2]], dtype=np.float32),
    },
    sizes={"N": 4, "d": 2, "k": 1, "image": (4, 4)},
    size_fields=("concept_dim", "batch_size"),
)


def _positive_int(owner: str, name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}.{name} must be a positive integer{' or None' if allow_none else ''}; got {value!r}.")


def _positive_float(owner: str, name: str, value: Any, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"{owner}.{name} must be a finite number; got {value!r}.")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{owner}.{name} must be {'>= 0' if allow_zero else '> 0'}; got {value!r}.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LatentSCMConfig:
    """Settings shared by the causal VAEs (:class:`CausalVAEConfig`, ``SCMVAEConfig``).

    Parameters
    ----------
    concepts : tuple of str
        Names of the latent concepts, one sample site each, in the order they are generated (causes
        first). Default: the pendulum's four factors.
    concept_dim : int
        Latent dimensions per concept (CausalVAE used 4; 1 makes each concept a scalar).
    image_shape : (H, W) or (H, W, C), or None
        Image shape; ``None`` reads it from ``x``. Needed only to generate (``x=None``).
    network : {"mlp", "conv"}
        MLPs on the flattened image (hidden widths ``mlp_hidden``, reversed in the decoder) or
        disentanglement_lib's conv encoder/decoder (sides multiples of 16).
    mlp_hidden : tuple of int
        Hidden widths of the MLP encoder.
    decoder : {"joint", "per_concept"} or tuple of tuples of str
        ``"joint"``: one network decodes all concepts together. ``"per_concept"``: one network per concept, each
        seeing only its own concept's latents, and the image logits are their sum (the structure of CausalVAE's
        own decoder, ``Decoder_DAG``, which averages per-concept decodings). Groups, e.g.
        ``(("pendulum_angle",), ("light_angle",), ("shadow_length", "shadow_position"))``: one network per group
        of concepts (each concept in exactly one group; for concepts that describe one drawn object), logits
        summed. With the joint decoder a do() on one concept can change how the others are drawn (the network
        only saw concepts on the observational manifold); across groups it cannot, up to how the summed logits
        overlap. Weights: ``"decoder$params"``, or ``"decoder_<first concept of the group>$params"`` per group.
    likelihood : {"bernoulli", "gaussian"}
        Pixel likelihood: Bernoulli on [0, 1] (grey values give the binary cross-entropy, as in
        disentanglement_lib) or Gaussian around the decoder's sigmoid output with sd ``pixel_scale``.
    pixel_scale : float
        Pixel noise sd of the Gaussian likelihood.
    label_scale : float
        Sd :math:`\\tau` of the label-conditioned prior :math:`p(z \\mid u) = \\mathcal{N}(u, \\tau^2)`.
    batch_size : int or None
        Images per SVI step (subsampling of the plate ``"data"``); ``None``: all (e.g. for NUTS).
    init_seed : int
        Seed of the networks' initial weights.
    """

    concepts: tuple[str, ...] = PENDULUM_CONCEPTS
    concept_dim: int = 1
    image_shape: tuple[int, ...] | None = None
    network: Literal["mlp", "conv"] = "mlp"
    mlp_hidden: tuple[int, ...] = (256, 256)
    decoder: Literal["joint", "per_concept"] | tuple[tuple[str, ...], ...] = "joint"
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    pixel_scale: float = 0.1
    label_scale: float = 0.1
    batch_size: int | None = 64
    init_seed: int = 0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        concepts = self.concepts
        if isinstance(concepts, list):
            concepts = tuple(concepts)
            object.__setattr__(self, "concepts", concepts)
        if not isinstance(concepts, tuple) or not concepts or not all(isinstance(c, str) and c.isidentifier() for c in concepts):
            raise ValueError(
                f"{owner}.concepts must be a non-empty tuple of identifier names, e.g. ('pendulum_angle', "
                f"'light_angle'); got {self.concepts!r}."
            )
        if len(set(concepts)) != len(concepts):
            raise ValueError(f"{owner}.concepts has repeated names: {concepts!r}.")
        clash = sorted(set(concepts) & _RESERVED)
        if clash:
            raise ValueError(f"{owner}.concepts may not use the model's own site names {clash}; rename them.")
        _positive_int(owner, "concept_dim", self.concept_dim)
        if self.network not in ("mlp", "conv"):
            raise ValueError(f"{owner}.network must be 'mlp' or 'conv'; got {self.network!r}.")
        if isinstance(self.decoder, (list, tuple)):
            groups = tuple(tuple(g) if isinstance(g, (list, tuple)) else g for g in self.decoder)
            flat = [c for g in groups if isinstance(g, tuple) for c in g]
            if not groups or not all(isinstance(g, tuple) and g for g in groups) or sorted(flat) != sorted(concepts):
                raise ValueError(
                    f"{owner}.decoder groups must split the concepts {concepts!r} into non-empty groups, each concept "
                    f"in exactly one, e.g. (('pendulum_angle',), ('light_angle',), ('shadow_length', "
                    f"'shadow_position')); got {self.decoder!r}."
                )
            object.__setattr__(self, "decoder", groups)
        elif self.decoder not in ("joint", "per_concept"):
            raise ValueError(
                f"{owner}.decoder must be 'joint' or 'per_concept' or a tuple of concept groups; got {self.decoder!r}."
            )
        hidden = tuple(self.mlp_hidden) if isinstance(self.mlp_hidden, (list, tuple)) else self.mlp_hidden
        if not isinstance(hidden, tuple) or not hidden or any(isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in hidden):
            raise ValueError(f"{owner}.mlp_hidden must be a non-empty tuple of positive integers, e.g. (256, 256); got {self.mlp_hidden!r}.")
        object.__setattr__(self, "mlp_hidden", hidden)
        if self.likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"{owner}.likelihood must be 'bernoulli' or 'gaussian'; got {self.likelihood!r}.")
        _positive_float(owner, "pixel_scale", self.pixel_scale)
        _positive_float(owner, "label_scale", self.label_scale)
        _positive_int(owner, "batch_size", self.batch_size, allow_none=True)
        if self.image_shape is not None:
            shape = tuple(self.image_shape) if isinstance(self.image_shape, (list, tuple)) else self.image_shape
            if not isinstance(shape, tuple) or len(shape) not in (2, 3) or any(
                isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in shape
            ):
                raise ValueError(f"{owner}.image_shape must be (height, width), (height, width, channels) or None; got {self.image_shape!r}.")
            object.__setattr__(self, "image_shape", shape)
            if self.network == "conv" and any(s % nn.CONV_STRIDE_PRODUCT for s in shape[:2]):
                raise ValueError(
                    f"{owner}.image_shape {shape} does not suit network='conv' (sides must be multiples of "
                    f"{nn.CONV_STRIDE_PRODUCT}); use network='mlp'."
                )
        if isinstance(self.init_seed, bool) or not isinstance(self.init_seed, numbers.Integral):
            raise TypeError(f"{owner}.init_seed must be an integer; got {self.init_seed!r}.")

    @property
    def nodes(self) -> tuple[str, ...]:
        """The causal variables (the concept sites), for ``ppzoo.intervene`` / ``ppzoo.counterfactual``."""
        return self.concepts

    @property
    def num_concepts(self) -> int:
        return len(self.concepts)

    @property
    def latent_dim(self) -> int:
        return len(self.concepts) * self.concept_dim


@dataclasses.dataclass(frozen=True, kw_only=True)
class CausalVAEConfig(LatentSCMConfig):
    """Settings of :func:`causal_vae`: those of :class:`LatentSCMConfig` and

    Parameters
    ----------
    acyclicity_weight : float
        :math:`\\lambda_h`, per-image weight of :math:`h(A)` (0 turns the penalty off).
    sparsity_weight : float
        :math:`\\lambda_1`, per-image weight of :math:`\\lVert A \\rVert_1`.
    label_scm_weight : float
        :math:`\\lambda_u`, weight of the label term ``label_scm``, the log-likelihood of the labels under the
        causal layer, :math:`\\sum_j \\log \\mathcal{N}(u_j \\mid (A^\\top u)_j, s_j^2)` (the Gaussian form
        of CausalVAE's :math:`l_u`). CausalVAE's least-squares :math:`\\lVert u - A^\\top u \\rVert^2` orients the
        pendulum's edges wrongly (it regresses each label on all the others, and a cause is as predictable from
        its effect and the other cause as the effect is from both causes); with the learned noise scales the
        term is the linear SCM's likelihood, which recovers pendulum_angle -> shadow_position <- light_angle
        from the labels (checked on the 5482 training labels with these penalties). shadow_length has no linear
        trace of its causes (R^2 0.017 on the two standardised angles, 0.96 with quadratic terms), so a linear
        SCM cannot find its two edges: SHD 2 is this model's floor on the pendulum.
    edge_threshold : float
        :func:`learned_graph` reads an edge where :math:`|A_{ij}|` exceeds this.
    adjacency_gradient : {"labels", "all"}
        ``"labels"`` (default): :math:`A` is fitted by the label terms (``label_scm``, ``acyclicity``,
        ``adjacency_sparsity``) only; the image pathway (causal layer -> decoder, label prior, KL of ``eps``)
        uses :math:`A` but sends it no gradient (``stop_gradient``). ``"all"``: the whole ELBO's gradient.
        Why: with ``"all"`` the decoder's large, noisy gradient through the causal layer dominates Adam's
        normalisation for :math:`A`, and :math:`A` hardly moves (pendulum, 1000 images, 1500 steps:
        :math:`|A| \\le 0.19`, SHD 4 at threshold 0.3); with ``"labels"`` it reaches the labels' linear SCM
        (pendulum_angle -> shadow_position 0.49, light_angle -> shadow_position 0.85; SHD 2, the two missing
        edges being the ones a linear SCM cannot see, see ``label_scm_weight``). Use ``"all"`` without labels.
        With ``mechanism="mlp"`` the same holds for the mechanisms' weights.
    mechanism : {"linear", "mlp"}
        ``"linear"``: the causal layer :math:`z = A^\\top z + \\sigma \\epsilon` (Eq. 1). ``"mlp"``: the paper's
        nonlinear :math:`z_i = g_i(A_{:,i} \\circ z) + \\sigma_i \\epsilon_i` (Eq. 3 of Yang et al.), each
        :math:`g_i` one hidden tanh layer of ``mechanism_width`` units whose input weights (per parent) and output
        weights have unit norm (times :math:`\\sqrt{H}` and :math:`1/\\sqrt{H}`), so :math:`|A_{ji}|` bounds how
        fast parent :math:`j` can move concept :math:`i` (the Lipschitz constant): the weights cannot carry an
        edge that :math:`A`, its threshold, the L1 and the acyclicity penalty do not see. :math:`A` starts at
        0.5 off the diagonal: at :math:`A = 0` its gradient is the labels' linear trace only, zero for the
        pendulum's V-shaped shadow-length law. Scalar concepts only (``concept_dim=1``).
    mechanism_width : int
        Hidden units :math:`H` of each :math:`g_i` (``mechanism="mlp"``).
    """

    acyclicity_weight: float = 10.0
    sparsity_weight: float = 0.1
    label_scm_weight: float = 1.0
    edge_threshold: float = 0.3
    adjacency_gradient: Literal["labels", "all"] = "labels"
    mechanism: Literal["linear", "mlp"] = "linear"
    mechanism_width: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mechanism not in ("linear", "mlp"):
            raise ValueError(f"CausalVAEConfig.mechanism must be 'linear' or 'mlp'; got {self.mechanism!r}.")
        _positive_int("CausalVAEConfig", "mechanism_width", self.mechanism_width)
        if self.mechanism == "mlp" and self.concept_dim != 1:
            raise ValueError(
                f"CausalVAEConfig.mechanism='mlp' takes scalar concepts (concept_dim=1); got concept_dim="
                f"{self.concept_dim}. Use concept_dim=1 or mechanism='linear'."
            )
        for name in ("acyclicity_weight", "sparsity_weight", "label_scm_weight"):
            _positive_float("CausalVAEConfig", name, getattr(self, name), allow_zero=True)
        _positive_float("CausalVAEConfig", "edge_threshold", self.edge_threshold)
        if self.adjacency_gradient not in ("labels", "all"):
            raise ValueError(f"CausalVAEConfig.adjacency_gradient must be 'labels' or 'all'; got {self.adjacency_gradient!r}.")


# ---------------------------------------------------------------------------------------------------------
# Pieces shared with SCM-VAE
# ---------------------------------------------------------------------------------------------------------


def acyclicity(adjacency: ArrayLike) -> jax.Array:
    """NOTEARS' :math:`h(A) = \\operatorname{tr} \\exp(A \\circ A) - d`: 0 exactly when ``A`` is a DAG, > 0 otherwise."""
    a = jnp.asarray(adjacency)
    return jnp.trace(jax.scipy.linalg.expm(a * a)) - a.shape[-1]


def structural_hamming_distance(learned: ArrayLike, truth: ArrayLike) -> int:
    """Edges to add, remove or reverse to turn the graph ``learned`` into ``truth`` (a reversal counts once).

    Both are ``(d, d)`` adjacency matrices, nonzero ``[i, j]`` meaning ``i -> j``.
    """
    a, b = np.asarray(learned) != 0, np.asarray(truth) != 0
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"Both graphs must be square adjacency matrices of one size; got shapes {a.shape} and {b.shape}.")
    differ = (a != b) | (a.T != b.T)  # an unordered pair differs if either direction differs
    return int(np.triu(differ, 1).sum())


def image_shape_of(x: ArrayLike | None, num_data: int | None, config: LatentSCMConfig) -> tuple[int, tuple[int, ...]]:
    if x is not None:
        shape = np.shape(x)
        if len(shape) not in (3, 4):
            raise ValueError(f"`x` must be images (num_data, height, width[, channels]); got shape {shape}.")
        return int(shape[0]), tuple(int(s) for s in shape[1:])
    if num_data is None or config.image_shape is None:
        raise ValueError(
            "To generate images (x=None), pass num_data=... and set image_shape=(height, width, channels) in the "
            "config, e.g. ppzoo.models.get('causal_vae', image_shape=(32, 32, 3))."
        )
    return int(num_data), tuple(config.image_shape)


def _channels(shape: tuple[int, ...]) -> int:
    return shape[2] if len(shape) == 3 else 1


def encoder_network(config: LatentSCMConfig, shape: tuple[int, ...]) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """Images -> (loc, scale) of ``eps``, each ``(B, d, k)``; weights ``"encoder$params"``."""
    d, k = config.num_concepts, config.concept_dim
    out = 2 * d * k
    if config.network == "conv":
        net = nn.conv_encoder("encoder", shape[:2], out, channels=_channels(shape), seed=config.init_seed)
    else:
        net = nn.mlp_encoder("encoder", shape, out, config.mlp_hidden, seed=config.init_seed)

    def run(images: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = net(images)
        loc, log_var = h[..., : d * k], h[..., d * k :]
        batch = images.shape[0]
        return loc.reshape(batch, d, k), jnp.exp(0.5 * log_var).reshape(batch, d, k)

    return run


def _one_decoder(config: LatentSCMConfig, name: str, latent_dim: int, shape: tuple[int, ...], seed: int):
    if config.network == "conv":
        return nn.conv_decoder(name, latent_dim, shape[:2], channels=_channels(shape), seed=seed)
    return nn.mlp_decoder(name, latent_dim, shape, config.mlp_hidden[::-1], seed=seed)


def decoder_network(config: LatentSCMConfig, shape: tuple[int, ...]) -> Callable[[jax.Array], jax.Array]:
    """Latents ``(B, d k)`` -> pixel logits ``(B, *shape)``; weights ``"decoder$params"`` (or one set per concept)."""
    if config.decoder == "joint":
        return _one_decoder(config, "decoder", config.latent_dim, shape, config.init_seed + 1)
    d, k = config.num_concepts, config.concept_dim
    groups = [(c,) for c in config.concepts] if config.decoder == "per_concept" else config.decoder
    members = [np.array([config.concepts.index(c) for c in group]) for group in groups]
    parts = [
        _one_decoder(config, f"decoder_{group[0]}", k * len(group), shape, config.init_seed + 1 + 101 * i)
        for i, group in enumerate(groups)
    ]

    def run(z: jax.Array) -> jax.Array:
        blocks = z.reshape(z.shape[0], d, k)
        return sum(part(blocks[:, idx].reshape(z.shape[0], -1)) for idx, part in zip(members, parts))

    return run


def _subsample_size(config: LatentSCMConfig, n: int, x: ArrayLike | None) -> int | None:
    if x is None or config.batch_size is None or config.batch_size >= n:
        return None
    return config.batch_size


def node_value(value: Any, batch: int, k: int) -> jax.Array:
    """An intervened (or computed) concept value as ``(B, k)``: scalars and ``(B,)`` arrays are broadcast."""
    v = jnp.asarray(value, dtype=jnp.float32)
    if v.ndim == 1 and k == 1 and v.shape[0] == batch:
        v = v[:, None]
    return jnp.broadcast_to(v, (batch, k))


def concept_site(name: str, value: jax.Array, batch: int, k: int) -> jax.Array:
    """Register a concept as an observed Delta site (log density 0) so that ``handlers.do`` can set it."""
    out = numpyro.sample(name, dist.Delta(value, event_dim=1), obs=value)
    return node_value(out, batch, k)


def program(
    x: ArrayLike | None,
    u: ArrayLike | None,
    num_data: int | None,
    config: LatentSCMConfig,
    make_nodes: Callable[[jax.Array, int], jax.Array],
    label_terms: Callable[[jax.Array], None] | None = None,
) -> None:
    """The shared program: exogenous ``eps``, concepts by ``make_nodes(scaled_eps, batch)``, labels, decoder."""
    n, shape = image_shape_of(x, num_data, config)
    d, k = config.num_concepts, config.concept_dim
    decode_fn = decoder_network(config, shape)
    noise_scale = numpyro.param("noise_scale", jnp.ones((d,)), constraint=dist.constraints.positive)
    with numpyro.plate("data", n, subsample_size=_subsample_size(config, n, x)):
        x_batch = None if x is None else numpyro.subsample(jnp.asarray(x), event_dim=len(shape))
        u_batch = None if u is None else numpyro.subsample(jnp.asarray(u, dtype=jnp.float32), event_dim=1)
        eps = numpyro.sample("eps", dist.Normal(0.0, 1.0).expand([d, k]).to_event(2))
        batch = eps.shape[0]
        z = make_nodes(noise_scale[:, None] * eps, batch)
        numpyro.deterministic("z", z.reshape(batch, d * k))
        if u_batch is not None:
            numpyro.factor("label_prior", dist.Normal(u_batch[:, :, None], config.label_scale).log_prob(z).sum((-2, -1)))
            if label_terms is not None:
                label_terms(u_batch)
        logits = decode_fn(z.reshape(batch, d * k))
        if config.likelihood == "bernoulli":
            # validate_args=False: grey values in [0, 1] score as the binary cross-entropy; NumPyro would
            # otherwise mask them as out of support (-inf).
            pixels = dist.Bernoulli(logits=logits, validate_args=False)
        else:
            pixels = dist.Normal(jax.nn.sigmoid(logits), config.pixel_scale)
        numpyro.sample("x", pixels.to_event(len(shape)), obs=x_batch)


def guide(x: ArrayLike | None = None, u: ArrayLike | None = None, *, num_data: int | None = None, config: LatentSCMConfig) -> None:
    """The amortized encoder :math:`q(\\epsilon_n \\mid x_n)`, the causal VAEs' guide for SVI."""
    if x is None:
        raise ValueError("The causal VAE guide encodes observed images: pass `x`.")
    n, shape = image_shape_of(x, num_data, config)
    encode_fn = encoder_network(config, shape)
    with numpyro.plate("data", n, subsample_size=_subsample_size(config, n, x)):
        x_batch = numpyro.subsample(jnp.asarray(x), event_dim=len(shape))
        loc, scale = encode_fn(x_batch)
        numpyro.sample("eps", dist.Normal(loc, scale).to_event(2))


def check_data(data: Mapping[str, Any], config: LatentSCMConfig) -> None:
    """Raise a clear error for data a causal VAE of this config cannot take (before anything compiles).

    Raises
    ------
    ValueError
        No ``x``; ``x`` not ``(N, H, W[, C])``; pixel values outside [0, 1] for the Bernoulli likelihood; a
        shape that differs from ``config.image_shape``; labels ``u`` not ``(N, number of concepts)``; fewer
        images than ``batch_size``.
    """
    owner = type(config).__name__
    x = data.get("x")
    if x is None:
        raise ValueError("A causal VAE needs the observed images `x` (num_data, height, width[, channels]) in data; got no `x`.")
    shape = np.shape(x)
    if len(shape) not in (3, 4):
        raise ValueError(f"`x` must be images of shape (num_data, height, width[, channels]); got shape {shape}.")
    array = np.asarray(x)
    if config.likelihood == "bernoulli" and (array.min() < 0 or array.max() > 1):
        raise ValueError(
            f"`x` must lie in [0, 1] for likelihood='bernoulli'; got values from {array.min():g} to {array.max():g}. "
            "Rescale the images or use likelihood='gaussian'."
        )
    if config.image_shape is not None and tuple(shape[1:]) != tuple(config.image_shape):
        raise ValueError(f"`x` has images of shape {tuple(shape[1:])} but {owner}.image_shape is {config.image_shape}.")
    if config.network == "conv" and any(s % nn.CONV_STRIDE_PRODUCT for s in shape[1:3]):
        raise ValueError(f"`x` has images of shape {tuple(shape[1:])}, which network='conv' cannot take; use network='mlp'.")
    u = data.get("u")
    if u is not None:
        u_shape = np.shape(u)
        if len(u_shape) != 2 or u_shape[1] != config.num_concepts:
            raise ValueError(
                f"labels `u` must have shape (num_data, {config.num_concepts}), one column per concept "
                f"({', '.join(config.concepts)}); got shape {u_shape}."
            )
        if u_shape[0] != shape[0]:
            raise ValueError(f"labels `u` have {u_shape[0]} rows but `x` has {shape[0]} images; give one label row per image.")
    if config.batch_size is not None and shape[0] < config.batch_size:
        raise ValueError(
            f"`x` has {shape[0]} images, fewer than {owner}.batch_size={config.batch_size}; lower batch_size or use None."
        )


# ---------------------------------------------------------------------------------------------------------
# CausalVAE
# ---------------------------------------------------------------------------------------------------------


def masked_adjacency(raw: jax.Array) -> jax.Array:
    return raw * (1.0 - jnp.eye(raw.shape[-1], dtype=raw.dtype))


def linear_nodes(adjacency: jax.Array, noise: jax.Array, concepts: Sequence[str], k: int) -> jax.Array:
    """Register the concepts of the linear SCM ``z = A^T z + noise`` one by one (see the module docstring)."""
    d = len(concepts)
    batch = noise.shape[0]
    values = jnp.zeros_like(noise)
    eye = jnp.eye(d, dtype=noise.dtype)
    for i, name in enumerate(concepts):
        held = jnp.asarray([1.0] * i + [0.0] * (d - i), dtype=noise.dtype)
        # z = held * values + (1 - held) * (A^T z + noise), solved for z.
        system = eye - (1.0 - held)[:, None] * adjacency.T
        rhs = held[None, :, None] * values + (1.0 - held)[None, :, None] * noise
        solution = jnp.einsum("ij,bjc->bic", jnp.linalg.inv(system), rhs)
        values = values.at[:, i, :].set(concept_site(name, solution[:, i, :], batch, k))
    return values


def mlp_mechanism(adjacency: jax.Array, weights: Mapping[str, jax.Array], values: jax.Array) -> jax.Array:
    r""":math:`g_i(A_{:,i} \circ v)` for every concept ``i`` at once: ``values`` ``(B, d)`` -> ``(B, d)``.

    One tanh layer of ``H`` units per concept; the input weights of each (concept, parent) pair are scaled to
    norm :math:`\sqrt{H}` and each concept's output weights to norm :math:`1/\sqrt{H}`, so the gain of parent
    ``j`` on concept ``i`` is at most :math:`|A_{ji}|`.
    """
    width = weights["w_in"].shape[-1]
    w_in = weights["w_in"] * jnp.sqrt(width) / jnp.linalg.norm(weights["w_in"], axis=-1, keepdims=True)
    w_out = weights["w_out"] / (jnp.sqrt(width) * jnp.linalg.norm(weights["w_out"], axis=-1, keepdims=True))
    gated = values[:, :, None] * adjacency[None]  # (B, parent j, concept i)
    hidden = jnp.tanh(jnp.einsum("bji,ijh->bih", gated, w_in) + weights["b_in"])
    return jnp.einsum("bih,ih->bi", hidden, w_out) + weights["b_out"]


def _mechanism_init(d: int, width: int, seed: int) -> dict[str, jax.Array]:
    k_in, k_out, k_bias = jax.random.split(jax.random.PRNGKey(seed), 3)
    return {
        "w_in": jax.random.normal(k_in, (d, d, width)),
        "b_in": jax.random.uniform(k_bias, (d, width), minval=-2.0, maxval=2.0),  # kinks spread over the inputs
        "w_out": jax.random.normal(k_out, (d, width)),
        "b_out": jnp.zeros((d,)),
    }


def mlp_nodes(adjacency: jax.Array, weights: Mapping[str, jax.Array], noise: jax.Array, concepts: Sequence[str]) -> jax.Array:
    r"""Register the concepts of ``z_i = g_i(A_{:,i} z) + noise_i`` one by one (``k = 1``).

    Like :func:`linear_nodes`, concept ``i`` is registered at the solution with the concepts before it held at
    their registered (possibly intervened) values. The solution is found by ``d`` fixed-point sweeps
    ``z <- held + (1 - held) (g(A z) + noise)``, exact when ``A`` is a DAG (a nilpotent ``A`` settles each
    concept after at most ``d`` sweeps).
    """
    d = len(concepts)
    batch = noise.shape[0]
    eps = noise[..., 0]
    values = jnp.zeros_like(eps)
    for i, name in enumerate(concepts):
        held = jnp.asarray([1.0] * i + [0.0] * (d - i), dtype=eps.dtype)
        fixed = held * values

        def sweep(_, z, fixed=fixed, held=held):
            return fixed + (1.0 - held) * (mlp_mechanism(adjacency, weights, z) + eps)

        z = jax.lax.fori_loop(0, d, sweep, fixed + (1.0 - held) * eps)  # a loop, not d unrolled copies, to compile
        values = values.at[:, i].set(concept_site(name, z[:, i : i + 1], batch, 1)[:, 0])
    return values[..., None]


def causal_vae(
    x: ArrayLike | None = None,
    u: ArrayLike | None = None,
    *,
    num_data: int | None = None,
    config: CausalVAEConfig = CausalVAEConfig(),
) -> None:
    """CausalVAE as a NumPyro program (see the module docstring for the story and the sites).

    Parameters
    ----------
    x : ArrayLike or None
        Images ``(N, H, W[, C])`` in [0, 1]; ``None`` generates them.
    u : ArrayLike or None
        Standardised concept labels ``(N, d)``; ``None`` drops the label terms (generation, unlabelled data).
    num_data : int or None
        Number of images to generate when ``x`` is None.
    config : CausalVAEConfig
        Model settings.
    """
    n, _ = image_shape_of(x, num_data, config)
    d, k = config.num_concepts, config.concept_dim
    mlp = config.mechanism == "mlp"
    start = 0.5 * (1.0 - jnp.eye(d)) if mlp else jnp.zeros((d, d))
    a = masked_adjacency(numpyro.param("adjacency", start))
    weights = numpyro.param("mechanism$params", _mechanism_init(d, config.mechanism_width, config.init_seed + 3)) if mlp else None
    if config.acyclicity_weight > 0:
        numpyro.factor("acyclicity", -config.acyclicity_weight * n * acyclicity(a))
    if config.sparsity_weight > 0:
        numpyro.factor("adjacency_sparsity", -config.sparsity_weight * n * jnp.abs(a).sum())

    def label_terms(u_batch: jax.Array) -> None:
        if config.label_scm_weight > 0:
            # The labels' own residual sds: the latent noise_scale is set by the images (about 1 on the
            # pendulum) while shadow_position's label residual sd is 0.06; sharing it turns the likelihood into
            # least squares, which orients the pendulum's edges wrongly.
            label_scale = numpyro.param("label_noise_scale", jnp.ones((d,)), constraint=dist.constraints.positive)
            predicted = mlp_mechanism(a, weights, u_batch) if mlp else u_batch @ a
            fitted = dist.Normal(predicted, label_scale).log_prob(u_batch).sum(-1)
            numpyro.factor("label_scm", config.label_scm_weight * fitted)

    stop = config.adjacency_gradient == "labels"
    a_images = jax.lax.stop_gradient(a) if stop else a
    if mlp:
        w_images = jax.lax.stop_gradient(weights) if stop else weights
        make_nodes = lambda noise, batch: mlp_nodes(a_images, w_images, noise, config.concepts)  # noqa: E731
    else:
        make_nodes = lambda noise, batch: linear_nodes(a_images, noise, config.concepts, k)  # noqa: E731
    program(x, u, num_data, config, make_nodes, label_terms)


def causal_vae_guide(x: ArrayLike | None = None, u: ArrayLike | None = None, *, num_data: int | None = None, config: CausalVAEConfig = CausalVAEConfig()) -> None:
    """The amortized encoder of :func:`causal_vae`."""
    guide(x, u, num_data=num_data, config=config)


def _latent_scm_config(model: Any, function: str) -> LatentSCMConfig:
    """The config of a causal VAE given as its zoo model (e.g. ``fit.model``) or its config."""
    config = getattr(model, "config", model)
    if not isinstance(config, LatentSCMConfig):
        raise TypeError(
            f"`model` must be a causal VAE (ppzoo.models.get('causal_vae' or 'scm_vae', ...), e.g. fit.model) or its "
            f"config; got {getattr(model, 'name', type(model).__name__)!r}. Call {function}(fit.model, fit.params, ...)."
        )
    return config


def learned_adjacency(model: ZooModel | CausalVAEConfig, params: Mapping[str, Any]) -> np.ndarray:
    """The fitted ``(d, d)`` adjacency of a CausalVAE (diagonal 0): ``learned_adjacency(fit.model, fit.params)``.

    Raises
    ------
    TypeError
        If ``model`` is not the zoo model ``causal_vae`` or its config.
    ValueError
        If ``params`` has no ``'adjacency'`` weights.
    """
    config = _latent_scm_config(model, "learned_adjacency")
    if not isinstance(config, CausalVAEConfig):
        raise TypeError(
            f"`model` must be the zoo model 'causal_vae' (a learned graph) or its CausalVAEConfig; got "
            f"{type(config).__name__}, whose graph is given (its config's `graph`)."
        )
    if not params or "adjacency" not in params:
        raise ValueError(
            "`params` has no 'adjacency' param: pass the params of the causal_vae model's SVI fit, "
            "e.g. learned_adjacency(fit.model, fit.params)."
        )
    return np.asarray(masked_adjacency(jnp.asarray(params["adjacency"])))


def learned_graph(
    model: ZooModel | CausalVAEConfig, params: Mapping[str, Any], threshold: float | None = None
) -> np.ndarray:
    """The learned graph ``|A_ij| > threshold`` (default the config's ``edge_threshold``), as 0/1 integers.

    A pure function of the model and its weights: ``learned_graph(fit.model, fit.params)``.
    """
    adjacency = learned_adjacency(model, params)
    if threshold is None:
        threshold = _latent_scm_config(model, "learned_graph").edge_threshold
    return (np.abs(adjacency) > threshold).astype(np.int8)


# ---------------------------------------------------------------------------------------------------------
# Encoding and decoding with fitted weights (used by counterfactuals and reports)
# ---------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _encoder_program(config: LatentSCMConfig, shape: tuple[int, ...]):
    @jax.jit
    def run(weights, images):
        return handlers.substitute(lambda: encoder_network(config, shape)(images), data=weights)()

    return run


@functools.lru_cache(maxsize=64)
def _generator_program(model: ZooModel, targets: tuple[str, ...]):
    # Compiled once per model, image shape and set of intervened concepts; values and weights are arguments.
    @jax.jit
    def run(params, eps, interventions):
        program_fn = handlers.substitute(handlers.condition(model, data={"eps": eps}), data=params)
        if targets:
            program_fn = handlers.do(program_fn, data=interventions)
        trace = handlers.trace(handlers.seed(program_fn, 0)).get_trace(num_data=eps.shape[0])
        return trace["z"]["value"], trace["x"]["fn"].mean

    return run


def encode(model: ZooModel | LatentSCMConfig, params: Mapping[str, Any], x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Encoder means and sds of ``eps`` for any images, each ``(n, d, k)``, under a fitted causal VAE.

    A pure function of the model (CausalVAE or SCM-VAE, ``fit.model``, or its config) and its fitted weights
    (``fit.params``): ``encode(fit.model, fit.params, x)``.

    Raises
    ------
    TypeError
        If ``model`` is not a causal VAE or its config.
    ValueError
        If ``params`` has no encoder weights.
    """
    config = getattr(model, "config", model)
    if not isinstance(config, LatentSCMConfig):
        raise TypeError(
            "`model` must be a causal VAE (ppzoo.models.get('causal_vae' or 'scm_vae', ...), e.g. fit.model) or its "
            f"config; got {getattr(model, 'name', type(model).__name__)!r}."
        )
    if not params or "encoder$params" not in params:
        raise ValueError(
            "`params` has no encoder weights ('encoder$params'): pass the params of the model's SVI fit, "
            "e.g. encode(fit.model, fit.params, x)."
        )
    x = jnp.asarray(x, dtype=jnp.float32)
    run = _encoder_program(config, tuple(int(s) for s in x.shape[1:]))
    loc, scale = run({"encoder$params": params["encoder$params"]}, x)
    return np.asarray(loc), np.asarray(scale)


def _zoo_model(model: ZooModel | LatentSCMConfig, config: LatentSCMConfig) -> ZooModel:
    """The zoo model behind ``model``: itself, or the registered causal VAE whose config class ``config`` is."""
    return model if isinstance(model, ZooModel) else _zoo_model_of_config(config)


@functools.lru_cache(maxsize=32)
def _zoo_model_of_config(config: LatentSCMConfig) -> ZooModel:
    # Cached so that one config gives one ZooModel, hence one compiled generator program.
    from ppzoo.models import get  # the registry imports this module: look it up at call time

    for name in ("causal_vae", "scm_vae"):
        zoo = get(name)
        if type(config) is zoo.config_class:
            return dataclasses.replace(zoo, config=config)
    raise TypeError(f"`model`: no zoo model has the config class {type(config).__name__}; pass the zoo model itself.")


def decode(
    model: ZooModel | LatentSCMConfig,
    params: Mapping[str, Any],
    eps: ArrayLike,
    do: Mapping[str, ArrayLike] | None = None,
    *,
    image_shape: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Run the fitted generative program with ``eps`` held fixed and ``do`` applied.

    A pure function of the model (CausalVAE or SCM-VAE, ``fit.model``, or its config) and its fitted weights:
    ``decode(fit.model, fit.params, eps, do)``. Returns the concept values ``z`` ``(n, d k)`` and the
    decoder's pixel means ``x_mean`` ``(n, *image)``: with ``eps`` from :func:`encode` and a ``do``, a
    counterfactual (abduction by the encoder, action, prediction); with prior draws of ``eps``, draws under
    the intervention. Compiled once per set of intervened concepts.

    Parameters
    ----------
    model : ZooModel or LatentSCMConfig
        The fitted causal VAE (``fit.model``) or its config.
    params : Mapping
        Its fitted weights (``fit.params``).
    eps : ArrayLike
        Exogenous noise ``(n, d, k)``.
    do : Mapping or None
        Concept name -> value to intervene on.
    image_shape : sequence of int or None
        The images' shape ``(H, W[, C])``; ``None`` takes the config's ``image_shape``. Needed where the config
        leaves it ``None`` (read from the fitted images): pass ``fit.data["x"].shape[1:]``.

    Raises
    ------
    TypeError
        If ``model`` is not a causal VAE or its config.
    ValueError
        If ``do`` names an unknown concept, or the image shape is neither in the config nor passed.
    """
    config = _latent_scm_config(model, "decode")
    unknown = sorted(set(do or {}) - set(config.concepts))
    if unknown:
        raise ValueError(f"do names unknown concept(s) {unknown}; the model's concepts are {', '.join(config.concepts)}.")
    shape = image_shape if image_shape is not None else config.image_shape
    if shape is None:
        raise ValueError(
            f"{type(config).__name__}.image_shape is None (it was read from the fitted images): pass image_shape, "
            "e.g. decode(fit.model, fit.params, eps, do, image_shape=fit.data['x'].shape[1:])."
        )
    program_model = _zoo_model(model, config).with_config(image_shape=tuple(int(s) for s in shape), batch_size=None)
    interventions = {k: jnp.asarray(v, dtype=jnp.float32) for k, v in (do or {}).items()}
    run = _generator_program(program_model, tuple(sorted(interventions)))
    z, mean = run(dict(params), jnp.asarray(eps, dtype=jnp.float32), interventions)
    return {"z": np.asarray(z), "x_mean": np.asarray(mean)}


def entry(**config: Any) -> ZooModel:
    """The zoo entry ``"causal_vae"``."""
    return ZooModel(
        name="causal_vae",
        model=causal_vae,
        config=make_config(CausalVAEConfig, "causal_vae", config),
        config_class=CausalVAEConfig,
        guide=lambda cfg: partial(causal_vae_guide, config=cfg),
        check_data=check_data,
        summary_sites=(),
        description="CausalVAE: latent SCM z = A^T z + eps (or z_i = g_i(A_:i z) + eps_i), learned A under tr(exp(A*A)) - d, "
                    "label-conditioned prior.",
        sites=SITES,
        example=SMALLEST,
    )
