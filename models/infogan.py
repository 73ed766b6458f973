r"""InfoGAN: a generator whose structured codes are made readable by a Q network on the discriminator's trunk.

Generative story (Chen et al. 2016, Sec. 4-5), for images :math:`n = 1..N` of :math:`H \times W` pixels:

.. math::

    c_n &\sim \mathrm{Categorical}(1/K, \dots, 1/K) \\
    s_{n} &\sim \mathrm{Uniform}(-1, 1)^{C} \\
    z_n &\sim \mathcal{N}(0, I_Z) \\
    x_n &= \sigma\big(G_\theta(\mathrm{onehot}(c_n), s_n, z_n)\big)

with :math:`c` the categorical code (``category``: the three shapes of ``shapes``), :math:`s` the continuous
codes (``code``) and :math:`z` the incompressible noise. The generator is trained on
``engine="adversarial"`` against a discriminator :math:`D` whose trunk it shares with the Q network
:math:`Q(c, s \mid x) = \mathrm{Categorical}(c; \pi(x)) \prod_j \mathcal{N}(s_j; m_j(x), \sigma_j(x))`
(:class:`InfoGANDiscriminator`, with two heads on one trunk). Generator and Q maximise the variational
lower bound of the mutual information :math:`L_I = E_{c, s \sim p, x \sim G}[\log Q(c, s \mid x)]` with
weight :math:`\lambda` (Chen et al. 2016, Eq. 5-6): :math:`\lambda = 1` for the categorical code and, as
the paper advises for continuous codes (Sec. 6: "smaller", so that the differential entropy term stays on
the GAN's scale), :math:`\lambda_{cont} = 0.1` for the continuous ones (``lambda_continuous``; applied as
:func:`numpyro.handlers.scale` on the guide's ``code`` site, the engine's ``info_weight`` is 1). The
discriminator's loss includes :math:`-\lambda L_I` too, which trains the shared trunk and the Q head
(``guide_shares_discriminator=True``). :func:`adversarial_options` gives these engine options.

The observed site is a ``Delta`` at the generator's output (``pixel_scale=None``, for adversarial
training) or a Gaussian pixel likelihood :math:`x_n \sim \mathcal{N}(\sigma(G_\theta(\cdot)), \tau^2)`
(``pixel_scale`` :math:`\tau`). Inverting the trained generator (:func:`posterior_model`) uses the
Gaussian likelihood and sums the categorical code out, so that NUTS samples the continuous codes and the
noise (``marginalize_category=True``; the deterministic ``category_probs`` is then :math:`p(c \mid s, z,
x)`)::

    fit = ppzoo.fit(infogan.posterior_model(model), {"x": x_real}, engine="nuts", params=gan_fit.params)

Codes of new images from the Q network: :func:`encode` ``(model, params, x)``.

Sites

==================  =============  ========  =========================================================================================================
name                shape          support   role
==================  =============  ========  =========================================================================================================
``decoder$params``  pytree         real      param: weights of :math:`G_\theta`
``category``        ``(N,)``       {0..K-1}  latent: the categorical code, plate ``"data"`` (``marginalize_category=False``)
``code``            ``(N, C)``     (-1, 1)   latent: the continuous codes, plate ``"data"``
``z``               ``(N, Z)``     real      latent: the incompressible noise, plate ``"data"``
``x``               ``(N, H, W)``  [0, 1]    observed: plate ``"data"``
``category_probs``  ``(N, K)``     simplex   deterministic: p(category | code, z, x), plate ``"data"`` (``marginalize_category=True`` and ``x`` given)
==================  =============  ========  =========================================================================================================

The Q network's weights are not a NumPyro param: they live in the discriminator module, returned by the
engine as ``fit.params["discriminator$state"]``.

References
----------
Chen, X., Duan, Y., Houthooft, R., Schulman, J., Sutskever, I. & Abbeel, P. (2016). InfoGAN: Interpretable
representation learning by information maximizing generative adversarial nets. NeurIPS. Eq. 5-6, Sec. 6.
Lin, Z., Thekumparampil, K. K., Fanti, G. & Oh, S. (2020). InfoGAN-CR and ModelCentrality: self-supervised
model training and selection for disentangling GANs. ICML. Table 1 (dSprites anchors).
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from flax import nnx
from numpy.typing import ArrayLike
from numpyro import handlers

from ppzoo import nn
from ppzoo.models import Example, Site, ZooModel, check_positive_integer, check_positive_number, make_config

__all__ = [
    "InfoGANConfig",
    "InfoGANDiscriminator",
    "Codes",
    "infogan",
    "infogan_guide",
    "discriminator",
    "adversarial_options",
    "encode",
    "generate",
    "posterior_model",
    "check_data",
    "entry",
    "SITES",
    "SMALLEST",
]

#: The site table (rendered in the module docstring).
SITES: tuple[Site, ...] = (
    Site("decoder$params", None, "param", note=r"weights of :math:`G_\theta`"),
    Site("category", ("N",), "latent", "{0..K-1}", note='the categorical code, plate ``"data"``',
         when="``marginalize_category=False``"),
    Site("code", ("N", "C"), "latent", "(-1, 1)", note='the continuous codes, plate ``"data"``'),
    Site("z", ("N", "Z"), "latent", note='the incompressible noise, plate ``"data"``'),
    Site("x", ("N", "H", "W"), "observed", "[0, 1]", note='plate ``"data"``'),
    Site("category_probs", ("N", "K"), "deterministic", "simplex", note='p(category | code, z, x), plate ``"data"``',
         when="``marginalize_category=True`` and ``x`` given"),
)

#: The smallest runnable instance: 4 images of 4 x 4, 2 categories, 2 codes, 1 noise, networks of 4 units; the
#: Gaussian pixel likelihood with the category summed out, so that SVI's autoguide (the conformance test) applies.
SMALLEST = Example(
    config={"num_categories": 2, "num_continuous": 2, "noise_dim": 1, "network": "mlp", "hidden": (4,),
            "q_hidden": 4, "image_shape": (4, 4), "pixel_scale": 0.1, "marginalize_category": True},
    generate={"num_data": 4},
    data={"x": (np.arange(64).reshape(4, 4, 4) % 3 == 0).astype(np.float32)},
    sizes={"N": 4, "K": 2, "C": 2, "Z": 1, "H": 4, "W": 4},
    size_fields=("num_categories", "num_continuous"),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class InfoGANConfig:
    """Settings of :func:`infogan`.

    Parameters
    ----------
    num_categories : int
        K, the categories of the categorical code (3 for the shapes of ``shapes``; 10 for digits).
    num_continuous : int
        C, the continuous codes, each Uniform(-1, 1).
    noise_dim : int
        Z, the incompressible noise's dimensions (>= 0).
    network : {"mlp", "conv"}
        MLPs on flattened images (generator hidden widths ``hidden`` reversed; discriminator trunk ``hidden``
        with leaky ReLU), or disentanglement_lib's conv decoder and conv encoder as the trunk (``ppzoo.nn``;
        image sides multiples of 16).
    hidden : tuple of int
        Hidden widths of the MLPs (the discriminator's trunk; the generator uses them reversed). With
        ``"conv"`` the last one is the width of the trunk's output.
    q_hidden : int
        Width of the Q head's hidden layer on the trunk (Chen et al.: one FC layer before the outputs).
    image_shape : (int, int) or None
        Height and width; ``None``: read from ``x``. Needed to generate images (``x=None``).
    pixel_scale : float or None
        ``None``: ``x`` is a Delta at the generator's output (adversarial training); a number: the sd of a
        Gaussian pixel likelihood (for inverting the generator, e.g. 0.1).
    marginalize_category : bool
        Sum the categorical code out of the likelihood (needs ``pixel_scale``): NUTS then samples ``code``
        and ``z``, and ``category_probs`` gives p(category | code, z, x).
    lambda_continuous : float
        Weight of the continuous codes' log q in the information term, relative to the categorical's 1.
    init_seed : int
        Seed of the networks' initial weights (the discriminator's: ``init_seed + 2``).
    """

    num_categories: int = 3
    num_continuous: int = 5
    noise_dim: int = 5
    network: Literal["mlp", "conv"] = "mlp"
    hidden: tuple[int, ...] = (256, 256)
    q_hidden: int = 64
    image_shape: tuple[int, int] | None = None
    pixel_scale: float | None = None
    marginalize_category: bool = False
    lambda_continuous: float = 0.1
    init_seed: int = 0

    def __post_init__(self) -> None:
        owner = "InfoGANConfig"
        check_positive_integer(owner, "num_categories", self.num_categories)
        check_positive_integer(owner, "num_continuous", self.num_continuous)
        check_positive_integer(owner, "q_hidden", self.q_hidden)
        if isinstance(self.noise_dim, bool) or not isinstance(self.noise_dim, numbers.Integral) or self.noise_dim < 0:
            raise ValueError(f"{owner}.noise_dim must be an integer >= 0 (0: no incompressible noise); got {self.noise_dim!r}.")
        if self.network not in ("mlp", "conv"):
            raise ValueError(f"{owner}.network must be 'mlp' or 'conv'; got {self.network!r}.")
        hidden = tuple(self.hidden) if isinstance(self.hidden, (list, tuple)) else self.hidden
        if not isinstance(hidden, tuple) or not hidden or any(
                isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in hidden):
            raise ValueError(f"{owner}.hidden must be a non-empty tuple of positive integers, e.g. (256, 256); got {self.hidden!r}.")
        object.__setattr__(self, "hidden", hidden)
        if self.image_shape is not None:
            shape = tuple(self.image_shape) if isinstance(self.image_shape, (list, tuple)) else self.image_shape
            if not isinstance(shape, tuple) or len(shape) != 2 or any(
                    isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in shape):
                raise ValueError(f"{owner}.image_shape must be (height, width) or None; got {self.image_shape!r}.")
            if self.network == "conv" and any(s % nn.CONV_STRIDE_PRODUCT for s in shape):
                raise ValueError(f"{owner}.image_shape {shape} does not suit network='conv' (sides must be multiples of "
                                 f"{nn.CONV_STRIDE_PRODUCT}, e.g. 32 or 64); use network='mlp'.")
            object.__setattr__(self, "image_shape", shape)
        if self.pixel_scale is not None:
            check_positive_number(owner, "pixel_scale", self.pixel_scale)
        if not isinstance(self.marginalize_category, (bool, np.bool_)):
            raise TypeError(f"{owner}.marginalize_category must be True or False; got {self.marginalize_category!r}.")
        if self.marginalize_category and self.pixel_scale is None:
            raise ValueError(f"{owner}.marginalize_category=True needs a Gaussian pixel likelihood: set pixel_scale, "
                             "e.g. pixel_scale=0.1 (see posterior_model).")
        if isinstance(self.lambda_continuous, bool) or not isinstance(self.lambda_continuous, numbers.Real) or not (
                np.isfinite(self.lambda_continuous) and self.lambda_continuous >= 0):
            raise ValueError(f"{owner}.lambda_continuous must be a finite number >= 0 (Chen et al.: below 1, e.g. 0.1); "
                             f"got {self.lambda_continuous!r}.")
        if isinstance(self.init_seed, bool) or not isinstance(self.init_seed, numbers.Integral):
            raise TypeError(f"{owner}.init_seed must be an integer; got {self.init_seed!r}.")


def _sizes(x: ArrayLike | None, num_data: int | None, config: InfoGANConfig) -> tuple[int, tuple[int, int]]:
    if x is not None:
        shape = np.shape(x)
        if len(shape) != 3:
            raise ValueError(f"InfoGAN data `x` must be images of shape (num_data, height, width); got shape {shape}.")
        return int(shape[0]), (int(shape[1]), int(shape[2]))
    if num_data is None or config.image_shape is None:
        raise ValueError("To generate images from infogan (x=None), pass num_data=... and set image_shape in the config, "
                         "e.g. ppzoo.models.get('infogan', image_shape=(32, 32)).")
    return int(num_data), config.image_shape


def _input_dim(config: InfoGANConfig) -> int:
    return config.num_categories + config.num_continuous + config.noise_dim


def _decoder(config: InfoGANConfig, image_shape: tuple[int, int]) -> Callable[[jax.Array], jax.Array]:
    if config.network == "conv":
        return nn.conv_decoder("decoder", _input_dim(config), image_shape, seed=config.init_seed + 1)
    return nn.mlp_decoder("decoder", _input_dim(config), image_shape, config.hidden[::-1], seed=config.init_seed + 1)


def _generator_input(config: InfoGANConfig, category: jax.Array, code: jax.Array, z: jax.Array) -> jax.Array:
    return jnp.concatenate([jax.nn.one_hot(category, config.num_categories), code, z], axis=-1)


def infogan(x: ArrayLike | None = None, *, num_data: int | None = None, config: InfoGANConfig = InfoGANConfig()) -> None:
    """InfoGAN's generator as a NumPyro program (see the module docstring for the story and the sites).

    Parameters
    ----------
    x : array (N, H, W) or None
        Images in [0, 1]; ``None`` generates ``num_data`` of them.
    num_data : int or None
        Images to generate when ``x`` is None.
    config : InfoGANConfig
    """
    n, image_shape = _sizes(x, num_data, config)
    decoder = _decoder(config, image_shape)
    k, c, d = config.num_categories, config.num_continuous, config.noise_dim
    with numpyro.plate("data", n):
        code = numpyro.sample("code", dist.Uniform(-1.0, 1.0).expand([c]).to_event(1))
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
        if config.marginalize_category:
            # Every category's image: (N, K, H, W); the categorical code summed out of the likelihood.
            inputs = jnp.concatenate([_generator_input(config, jnp.full((n,), j), code, z) for j in range(k)])
            means = jax.nn.sigmoid(decoder(inputs)).reshape(k, n, *image_shape).swapaxes(0, 1)
            pixels = dist.Normal(means, config.pixel_scale).to_event(2)
            numpyro.sample("x", dist.MixtureSameFamily(dist.Categorical(probs=jnp.full((n, k), 1.0 / k)), pixels), obs=x)
            if x is not None:
                numpyro.deterministic("category_probs", jax.nn.softmax(pixels.log_prob(jnp.asarray(x)[:, None]), axis=-1))
            return
        category = numpyro.sample("category", dist.Categorical(probs=jnp.full((k,), 1.0 / k)))
        mean = jax.nn.sigmoid(decoder(_generator_input(config, category, code, z)))
        if config.pixel_scale is None:
            numpyro.sample("x", dist.Delta(mean, event_dim=2), obs=x)
        else:
            numpyro.sample("x", dist.Normal(mean, config.pixel_scale).to_event(2), obs=x)


class InfoGANDiscriminator(nnx.Module):
    """Discriminator and Q network on one trunk: ``__call__`` gives the real/generated logit, :meth:`codes` Q's outputs.

    Trunk: an MLP with leaky ReLU on the flattened image (``"mlp"``) or disentanglement_lib's conv encoder
    (``"conv"``), followed by a leaky ReLU. Heads: one linear logit; Q = one hidden layer of ``q_hidden``
    (leaky ReLU), then K category logits, C means and C scale parameters.
    """

    def __init__(self, config: InfoGANConfig, image_shape: tuple[int, int], *, rngs: nnx.Rngs):
        width = config.hidden[-1]
        if config.network == "conv":
            self.trunk = nn.ConvEncoder(image_shape, width, lowering="space_to_depth", rngs=rngs)
        else:
            self.trunk = nn.MLP(int(np.prod(image_shape)), config.hidden, activation="leaky_relu", rngs=rngs)
        self.logit = nnx.Linear(width, 1, rngs=rngs)
        self.q = nn.MLP(width, (config.q_hidden, config.num_categories + 2 * config.num_continuous),
                        activation="leaky_relu", rngs=rngs)
        self.num_categories, self.num_continuous = config.num_categories, config.num_continuous
        self.flatten = config.network == "mlp"

    def features(self, x: jax.Array) -> jax.Array:
        return jax.nn.leaky_relu(self.trunk(x.reshape(x.shape[0], -1) if self.flatten else x), 0.1)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.logit(self.features(x))

    def codes(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Q's category logits ``(B, K)``, code means ``(B, C)`` and code sds ``(B, C)`` (above 0.05)."""
        out = self.q(self.features(x))
        k, c = self.num_categories, self.num_continuous
        return out[:, :k], out[:, k : k + c], 0.05 + jax.nn.softplus(out[:, k + c :])


@functools.lru_cache(maxsize=32)
def _discriminator_template(config: InfoGANConfig, image_shape: tuple[int, int]):
    with jax.ensure_compile_time_eval():
        return nnx.split(InfoGANDiscriminator(config, image_shape, rngs=nnx.Rngs(config.init_seed + 2)))


def discriminator(model: ZooModel | InfoGANConfig, image_shape: tuple[int, int], state: Mapping[str, Any] | None = None
                  ) -> InfoGANDiscriminator:
    """A fresh discriminator (initial weights from ``init_seed + 2``), or one holding ``state`` (``fit.params["discriminator$state"]``)."""
    config = _config_of(model)
    graph, template = _discriminator_template(config, tuple(int(s) for s in image_shape))
    weights = jax.tree.map(jnp.array, template)  # copies: the engine donates what it is given
    if state is not None:
        nnx.replace_by_pure_dict(weights, state)
    return nnx.merge(graph, weights)


def infogan_guide(x: ArrayLike | None = None, *, num_data: int | None = None,
                  discriminator: InfoGANDiscriminator | None = None, config: InfoGANConfig = InfoGANConfig()) -> None:
    """The Q network as a NumPyro guide over ``category`` and ``code`` (the engine passes ``discriminator``).

    ``code``'s log density is scaled by ``lambda_continuous`` (the paper's smaller weight for continuous codes).
    """
    del num_data
    if x is None or discriminator is None:
        raise ValueError("The InfoGAN guide reads images x through the discriminator's trunk: pass x and discriminator=... "
                         "(engine='adversarial' with guide_shares_discriminator=True does; see adversarial_options).")
    logits, loc, scale = discriminator.codes(jnp.asarray(x))
    with numpyro.plate("data", np.shape(x)[0]):
        numpyro.sample("category", dist.Categorical(logits=logits))
        with handlers.scale(scale=config.lambda_continuous):
            numpyro.sample("code", dist.Normal(loc, scale).to_event(1))


def adversarial_options(model: ZooModel, image_shape: tuple[int, int]) -> dict[str, Any]:
    """The ``engine="adversarial"`` options that make ``model`` an InfoGAN: its discriminator with the Q head,
    the Q guide on the shared trunk and lambda = 1 (``info_weight``); pass them with ``steps`` etc. to ``ppzoo.fit``."""
    config = _config_of(model)
    if config.pixel_scale is not None:
        raise ValueError("Adversarial training draws x from the generator's Delta: use the model with pixel_scale=None "
                         f"(got pixel_scale={config.pixel_scale}); posterior_model is for inverting a trained generator.")
    return {"discriminator": discriminator(config, image_shape), "guide": partial(infogan_guide, config=config),
            "info_weight": 1.0, "guide_shares_discriminator": True, "observed": "x"}


class Codes(NamedTuple):
    """The Q network's answer for a batch of images.

    Attributes
    ----------
    category_probs : array (N, K)
    category : array (N,)
        The most probable category.
    code, code_scale : arrays (N, C)
        Means and sds of the continuous codes.
    """

    category_probs: np.ndarray
    category: np.ndarray
    code: np.ndarray
    code_scale: np.ndarray

    def matrix(self) -> np.ndarray:
        """``(N, 1 + C)``: the most probable category, then the code means (what the disentanglement metrics score)."""
        return np.concatenate([self.category[:, None].astype(np.float32), self.code], axis=1)


def _config_of(model: ZooModel | InfoGANConfig) -> InfoGANConfig:
    config = getattr(model, "config", model)
    if not isinstance(config, InfoGANConfig):
        raise TypeError(f"Expected the infogan zoo model or its config; got {type(model).__name__}.")
    return config


@functools.lru_cache(maxsize=16)
def _q_program(config: InfoGANConfig, image_shape: tuple[int, int]):
    graph, _ = _discriminator_template(config, image_shape)

    @jax.jit
    def run(weights, images):
        logits, loc, scale = nnx.merge(graph, weights).codes(images)
        return jax.nn.softmax(logits, axis=-1), loc, scale

    return run


def encode(model: ZooModel | InfoGANConfig, params: Mapping[str, Any], x: ArrayLike, *, batch_size: int = 1024) -> Codes:
    """The Q network's codes of images ``x`` ``(N, H, W)``, from ``params["discriminator$state"]`` of an adversarial fit.

    Raises
    ------
    ValueError
        ``x`` is not ``(N, H, W)``, or ``params`` holds no ``"discriminator$state"``.
    """
    config = _config_of(model)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"infogan.encode: `x` must be images (N, height, width); got shape {x.shape}.")
    if "discriminator$state" not in params:
        raise ValueError("infogan.encode: `params` has no 'discriminator$state' (the Q network's weights); pass the "
                         "params of ppzoo.fit(model, data, engine='adversarial', **adversarial_options(...)).")
    shape = (int(x.shape[1]), int(x.shape[2]))
    graph, template = _discriminator_template(config, shape)
    weights = jax.tree.map(lambda a: a, template)
    nnx.replace_by_pure_dict(weights, params["discriminator$state"])
    run = _q_program(config, shape)
    parts = [run(weights, jnp.asarray(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    probs, loc, scale = (np.concatenate([np.asarray(p[j]) for p in parts]) for j in range(3))
    return Codes(probs, probs.argmax(axis=1), loc, scale)


@functools.lru_cache(maxsize=16)
def _generator_program(config: InfoGANConfig, image_shape: tuple[int, int]):
    @jax.jit
    def run(weights, category, code, z):
        inputs = _generator_input(config, category, code, z)
        return jax.nn.sigmoid(handlers.substitute(lambda: _decoder(config, image_shape)(inputs), data=weights)())

    return run


def generate(model: ZooModel | InfoGANConfig, params: Mapping[str, Any], category: ArrayLike, code: ArrayLike,
             z: ArrayLike, image_shape: tuple[int, int]) -> np.ndarray:
    """The generator's images (pixel means) ``(N, H, W)`` for codes ``category (N,)``, ``code (N, C)``, ``z (N, Z)``."""
    config = _config_of(model)
    category, code, z = np.asarray(category, np.int32), np.asarray(code, np.float32), np.asarray(z, np.float32)
    n = len(category)
    if code.shape != (n, config.num_continuous) or z.shape != (n, config.noise_dim):
        raise ValueError(f"infogan.generate: code must be ({n}, {config.num_continuous}) and z ({n}, {config.noise_dim}); "
                         f"got {code.shape} and {z.shape}.")
    run = _generator_program(config, tuple(int(s) for s in image_shape))
    return np.asarray(run({"decoder$params": params["decoder$params"]}, category, code, z))


def posterior_model(model: ZooModel, pixel_scale: float = 0.1) -> ZooModel:
    """The trained generator as a model for inverting it: Gaussian pixel likelihood (sd ``pixel_scale``) and the
    category summed out; ``ppzoo.fit(posterior_model(m), {"x": x}, engine="nuts", params=gan_fit.params)``."""
    return model.with_config(pixel_scale=pixel_scale, marginalize_category=True)


def check_data(data: Mapping[str, Any], config: InfoGANConfig) -> None:
    """Raise for images that are not ``(N, H, W)`` in [0, 1], or that disagree with the config's ``image_shape``."""
    if "x" not in data or data["x"] is None:
        return
    x = np.asarray(data["x"])
    if x.ndim != 3:
        raise ValueError(f"InfoGAN data `x` must be images of shape (num_data, height, width); got shape {x.shape}.")
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
        raise ValueError("InfoGAN data `x` must hold pixel values in [0, 1] (the generator's output is a sigmoid).")
    if config.image_shape is not None and tuple(x.shape[1:]) != config.image_shape:
        raise ValueError(f"InfoGAN data `x` has images of {tuple(x.shape[1:])}; the config says image_shape="
                         f"{config.image_shape}. Set image_shape=None or to the data's.")


def entry(**config: Any) -> ZooModel:
    """The zoo entry ``"infogan"``."""
    return ZooModel(
        name="infogan",
        model=infogan,
        config=make_config(InfoGANConfig, "infogan", config),
        config_class=InfoGANConfig,
        guide=None,
        check_data=check_data,
        description="InfoGAN: categorical + Uniform codes + noise, generator trained adversarially, Q on the discriminator's trunk.",
        sites=SITES,
        example=SMALLEST,
    )
