r"""Variational autoencoder for binary images: standard normal prior, Bernoulli decoder, amortized encoder.

Generative story (Kingma & Welling 2014, Sec. 3 and Appendix C.1; Rezende et al. 2014), for images
:math:`n = 1..N` of :math:`H \times W` pixels and latent dimensions :math:`k = 1..K`:

.. math::

    z_{n} &\sim \mathcal{N}(0, I_K) \\
    x_{n,ij} \mid z_n &\sim \mathrm{Bernoulli}\big(\sigma(f_\theta(z_n)_{ij})\big)

and the model's own guide (used by SVI) is the amortized encoder

.. math:: q_\phi(z_n \mid x_n) = \mathcal{N}\big(m_\phi(x_n), \operatorname{diag} \exp(v_\phi(x_n))\big),

with :math:`(m_\phi, v_\phi)` the two halves of one network's output (means and log-variances, as in
disentanglement_lib). SVI maximises the ELBO :math:`\sum_n E_q[\log p(x_n \mid z_n)] - KL(q(z_n \mid x_n)
\| p(z_n))`; with ``batch_size`` set, each step uses a random minibatch of the plate ``"data"`` (model and
guide alike) and scales it by :math:`N / \text{batch\_size}`.

Sites

==================  =============  =======  =====================================================
name                shape          support  role
==================  =============  =======  =====================================================
``decoder$params``  pytree         real     param: weights of :math:`f_\theta`
``encoder$params``  pytree         real     param of the guide: weights of :math:`m_\phi, v_\phi`
``z``               ``(N, K)``     real     latent: plate ``"data"``
``x``               ``(N, H, W)``  {0, 1}   observed: plate ``"data"``
==================  =============  =======  =====================================================

Networks (``network``): ``"conv"`` is disentanglement_lib's convolutional encoder and deconvolutional
decoder (:class:`ppzoo.nn.ConvEncoder`, :class:`ppzoo.nn.ConvDecoder`; image sides multiples of 16);
``"mlp"`` flattens the images into :class:`ppzoo.nn.MLP` networks with hidden widths ``mlp_hidden``
(encoder) and their reverse (decoder).

Pixel values in [0, 1] that are not 0 or 1 are accepted, as in disentanglement_lib: the Bernoulli
log-likelihood is then the (negative) binary cross-entropy, which is not a normalised density of grey
images. Binarize grey images for a proper likelihood (``ppzoo.data.load("digits", binarize=True)``).

The other models of the family (``beta_vae``, ``beta_tcvae``, ``factor_vae``, ``dip_vae_i``,
``dip_vae_ii``) are this program with one change each: a :func:`numpyro.handlers.scale` on ``z`` or a
named :func:`numpyro.factor`. Their config field ``regularize=False`` removes that change and leaves this
generative model, whose exact posterior :math:`p(z_n \mid x_n)` NUTS can sample with the learned decoder
held fixed (:func:`posterior_model`); comparing it with the encoder measures the amortization gap.

References
----------
Kingma, D. P. & Welling, M. (2014). Auto-encoding variational Bayes. ICLR.
Locatello, F. et al. (2019). Challenging common assumptions in the unsupervised learning of disentangled
representations. ICML (disentanglement_lib: ``methods/unsupervised/vae.py``, ``methods/shared/architectures.py``).
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
from numpy.typing import ArrayLike
from numpyro import handlers

from ppzoo import nn
from ppzoo.models import Example, Site, ZooModel, make_config

__all__ = [
    "SITES",
    "SMALLEST",
    "VAEConfig",
    "VAEBatch",
    "vae",
    "vae_guide",
    "vae_core",
    "sample_latent",
    "encoder_network",
    "decoder_network",
    "check_data",
    "posterior_model",
    "encoder_function",
    "decoder_function",
    "encode",
    "entry",
    "Network",
]

Network = Literal["conv", "mlp"]

#: The site table (rendered in the module docstring); the other models of the family add rows to it.
SITES: tuple[Site, ...] = (
    Site("decoder$params", None, "param", note=r"weights of :math:`f_\theta`"),
    Site("encoder$params", None, "param", note=r"weights of :math:`m_\phi, v_\phi`", program="guide"),
    Site("z", ("N", "K"), "latent", note='plate ``"data"``'),
    Site("x", ("N", "H", "W"), "observed", "{0, 1}", note='plate ``"data"``'),
)

#: The smallest runnable instance (shared by the family): 4 binary 4 x 4 images, MLPs of 4 units, 2 latents.
SMALLEST = Example(
    config={"network": "mlp", "mlp_hidden": (4,), "latent_dim": 2, "batch_size": None, "image_shape": (4, 4)},
    generate={"num_data": 4},
    data={"x": (np.arange(64).reshape(4, 4, 4) % 3 == 0).astype(np.float32)},
    sizes={"N": 4, "K": 2, "H": 4, "W": 4},
    size_fields=("latent_dim", "batch_size"),
)

#: Row of the regularized variants that run the encoder inside the model (beta-TCVAE, DIP-VAE).
ENCODER_IN_MODEL = Site(
    "encoder$params", None, "param", note="the encoder, read by the penalty", when="``regularize=True`` and ``x`` given"
)


def _positive_int(owner: str, name: str, value: Any, *, allow_none: bool = False, example: str = "") -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        hint = f" {example}" if example else ""
        raise ValueError(f"{owner}.{name} must be a positive integer{' or None' if allow_none else ''}; got {value!r}.{hint}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class VAEConfig:
    """Settings of :func:`vae` (and the base of the other disentangling VAEs' configs).

    Parameters
    ----------
    latent_dim : int
        K, the number of latent dimensions (disentanglement_lib: 10).
    network : {"conv", "mlp"}
        disentanglement_lib's conv encoder/decoder, or MLPs on the flattened image.
    mlp_hidden : tuple of int
        Hidden widths of the MLP encoder; the decoder uses them reversed. Ignored for ``"conv"``.
    batch_size : int or None
        Images per SVI step (subsampling of the plate ``"data"``). ``None``: every image every step (for
        MCMC on a few images). The data set must hold at least ``batch_size`` images.
    image_shape : (int, int) or None
        Height and width. ``None``: read from ``x``. Needed only to generate images (``x=None``).
    regularize : bool
        Apply the variant's regularizer (beta scaling or penalty factor). ``False`` leaves the plain
        generative model, e.g. for NUTS on the exact posterior. No effect on the plain VAE.
    init_seed : int
        Seed of the networks' initial weights.
    encoder_lowering : {"space_to_depth", "xla"}
        How the conv encoder's strided convolutions are computed (same weights, same function);
        ``"space_to_depth"`` (stride-1 convolutions on 2 x 2 pixel blocks) made the whole conv VAE step
        ~15% faster on CPU than XLA's strided convolutions, whose input gradients are input-dilated.
    decoder_lowering : {"subpixel", "xla"}
        How the conv decoder's transposed convolutions are computed (same weights, same function);
        ``"subpixel"`` was several times faster on CPU (see ``benchmarks/vae_speed.py``).
    """

    latent_dim: int = 10
    network: Network = "conv"
    mlp_hidden: tuple[int, ...] = (256, 256)
    batch_size: int | None = 64
    image_shape: tuple[int, int] | None = None
    regularize: bool = True
    init_seed: int = 0
    encoder_lowering: nn.EncoderLowering = "space_to_depth"
    decoder_lowering: nn.DecoderLowering = "subpixel"

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _positive_int(owner, "latent_dim", self.latent_dim, example="A VAE needs at least one latent dimension, e.g. latent_dim=10.")
        if self.network not in ("conv", "mlp"):
            raise ValueError(f"{owner}.network must be 'conv' or 'mlp'; got {self.network!r}.")
        hidden = self.mlp_hidden
        if isinstance(hidden, (list, tuple)):
            hidden = tuple(hidden)
            object.__setattr__(self, "mlp_hidden", hidden)
        if not isinstance(hidden, tuple) or not hidden or any(
            isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in hidden
        ):
            raise ValueError(f"{owner}.mlp_hidden must be a non-empty tuple of positive integers, e.g. (256, 256); got {self.mlp_hidden!r}.")
        _positive_int(owner, "batch_size", self.batch_size, allow_none=True, example="e.g. batch_size=64.")
        if self.image_shape is not None:
            shape = tuple(self.image_shape) if isinstance(self.image_shape, (list, tuple)) else self.image_shape
            if not isinstance(shape, tuple) or len(shape) != 2 or any(
                isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in shape
            ):
                raise ValueError(f"{owner}.image_shape must be (height, width) or None; got {self.image_shape!r}.")
            object.__setattr__(self, "image_shape", shape)
            if self.network == "conv" and any(s % nn.CONV_STRIDE_PRODUCT for s in shape):
                raise ValueError(
                    f"{owner}.image_shape {shape} does not suit network='conv', whose four stride-2 layers need "
                    f"sides that are multiples of {nn.CONV_STRIDE_PRODUCT} (e.g. 32 or 64); use network='mlp'."
                )
        if not isinstance(self.regularize, (bool, np.bool_)):
            raise TypeError(f"{owner}.regularize must be True or False; got {self.regularize!r}.")
        if isinstance(self.init_seed, bool) or not isinstance(self.init_seed, numbers.Integral):
            raise TypeError(f"{owner}.init_seed must be an integer; got {self.init_seed!r}.")
        if self.encoder_lowering not in ("xla", "space_to_depth"):
            raise ValueError(f"{owner}.encoder_lowering must be 'xla' or 'space_to_depth'; got {self.encoder_lowering!r}.")
        if self.decoder_lowering not in ("subpixel", "xla"):
            raise ValueError(f"{owner}.decoder_lowering must be 'subpixel' or 'xla'; got {self.decoder_lowering!r}.")


def encoder_network(config: VAEConfig, image_shape: tuple[int, int]) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """The encoder as used inside model or guide: images ``(B, H, W)`` -> ``(loc, scale)``, each ``(B, K)``.

    Its weights are the param ``"encoder$params"``; the network outputs means and log-variances.
    """
    k = config.latent_dim
    if config.network == "conv":
        net = nn.conv_encoder("encoder", image_shape, 2 * k, lowering=config.encoder_lowering, seed=config.init_seed)
    else:
        net = nn.mlp_encoder("encoder", image_shape, 2 * k, config.mlp_hidden, seed=config.init_seed)

    def encode(images: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = net(images)
        return out[..., :k], jnp.exp(0.5 * out[..., k:])

    return encode


def decoder_network(config: VAEConfig, image_shape: tuple[int, int]) -> Callable[[jax.Array], jax.Array]:
    """The decoder: latents ``(B, K)`` -> Bernoulli logits ``(B, H, W)``; weights ``"decoder$params"``."""
    if config.network == "conv":
        return nn.conv_decoder("decoder", config.latent_dim, image_shape, lowering=config.decoder_lowering, seed=config.init_seed + 1)
    return nn.mlp_decoder("decoder", config.latent_dim, image_shape, config.mlp_hidden[::-1], seed=config.init_seed + 1)


def _sizes(x: ArrayLike | None, num_data: int | None, config: VAEConfig) -> tuple[int, tuple[int, int]]:
    if x is not None:
        shape = np.shape(x)
        if len(shape) != 3:
            raise ValueError(f"VAE data `x` must be images of shape (num_data, height, width); got shape {shape}.")
        return int(shape[0]), (int(shape[1]), int(shape[2]))
    if num_data is None or config.image_shape is None:
        raise ValueError(
            "To generate images from a VAE (x=None), pass num_data=... and set image_shape=(height, width) in the "
            "config, e.g. ppzoo.models.get('vae', image_shape=(32, 32))."
        )
    return int(num_data), tuple(config.image_shape)


def _subsample_size(config: VAEConfig, num_data: int, x: ArrayLike | None) -> int | None:
    if x is None or config.batch_size is None or config.batch_size >= num_data:
        return None
    return config.batch_size


def sample_latent(name: str, distribution: dist.Distribution, scale: float = 1.0) -> jax.Array:
    """``numpyro.sample(name, distribution)`` under ``handlers.scale(scale=scale)``.

    The one place the family weights its latent site: model and guide both call it with the same
    ``scale`` (beta-VAE's beta), so the ELBO becomes reconstruction - scale x KL.
    """
    if scale == 1.0:
        return numpyro.sample(name, distribution)
    with handlers.scale(scale=scale):
        return numpyro.sample(name, distribution)


class VAEBatch(NamedTuple):
    """What :func:`vae_core` hands to a variant so it can add its regularizer.

    Attributes
    ----------
    plate : numpyro.plate
        The ``"data"`` plate with this step's subsample; re-enter it (``with batch.plate:``) for per-image
        factors, which are then scaled by ``num_data / batch_size`` like the likelihood.
    x : jax.Array or None
        The images of this step, ``(B, H, W)`` (``None`` when generating).
    z : jax.Array
        Their latents, ``(B, K)`` (during SVI: the guide's draws).
    num_data : int
        N, the size of the data set.
    image_shape : (int, int)
        Height and width.
    """

    plate: Any
    x: jax.Array | None
    z: jax.Array
    num_data: int
    image_shape: tuple[int, int]


def vae_core(x: ArrayLike | None, num_data: int | None, config: VAEConfig, *, latent_scale: float = 1.0) -> VAEBatch:
    """The shared program: prior, decoder, likelihood; ``z`` under ``handlers.scale(latent_scale)``."""
    n, shape = _sizes(x, num_data, config)
    decode = decoder_network(config, shape)
    plate = numpyro.plate("data", n, subsample_size=_subsample_size(config, n, x))
    with plate:
        x_batch = None if x is None else numpyro.subsample(jnp.asarray(x), event_dim=2)
        z = sample_latent("z", dist.Normal(0.0, 1.0).expand([config.latent_dim]).to_event(1), latent_scale)
        numpyro.sample("x", dist.Bernoulli(logits=decode(z)).to_event(2), obs=x_batch)
    return VAEBatch(plate, x_batch, z, n, shape)


def vae(x: ArrayLike | None = None, *, num_data: int | None = None, config: VAEConfig = VAEConfig()) -> None:
    """The VAE as a NumPyro program (see the module docstring for the sites).

    Parameters
    ----------
    x : ArrayLike or None
        Binary images ``(num_data, height, width)`` in [0, 1]; ``None`` generates them.
    num_data : int or None
        Number of images to generate when ``x`` is None.
    config : VAEConfig
        Model settings.
    """
    vae_core(x, num_data, config)


def vae_guide(
    x: ArrayLike | None = None,
    *,
    num_data: int | None = None,
    config: VAEConfig = VAEConfig(),
    latent_scale: float = 1.0,
) -> None:
    """The amortized encoder :math:`q(z_n \\mid x_n)`, the model family's own guide for SVI.

    ``latent_scale`` must equal the model's scale on ``z`` (beta-VAE), so that the ELBO's KL term is
    scaled as a whole.
    """
    if x is None:
        raise ValueError("The VAE guide encodes observed images: pass `x`.")
    n, shape = _sizes(x, num_data, config)
    encode_fn = encoder_network(config, shape)
    with numpyro.plate("data", n, subsample_size=_subsample_size(config, n, x)):
        x_batch = numpyro.subsample(jnp.asarray(x), event_dim=2)
        loc, scale = encode_fn(x_batch)
        sample_latent("z", dist.Normal(loc, scale).to_event(1), latent_scale)


def check_data(data: Mapping[str, Any], config: VAEConfig) -> None:
    """Raise a clear error for images a VAE of this config cannot take (called before anything compiles).

    Raises
    ------
    ValueError
        No ``x``; ``x`` not ``(num_data, height, width)``; values outside [0, 1]; a shape that differs from
        ``config.image_shape`` or does not suit the conv networks; fewer images than ``batch_size``.
    TypeError
        Non-numeric ``x``.
    """
    name = type(config).__name__
    x = data.get("x")
    if x is None:
        raise ValueError(
            "A VAE needs the observed images `x` (num_data, height, width) in data, e.g. ppzoo.fit(model, "
            "{'x': ds.data['x']}, ...); got no `x`."
        )
    shape = np.shape(x)
    if len(shape) == 4 and shape[-1] == 1:
        raise ValueError(
            f"VAE data `x` must be (num_data, height, width); got shape {shape} with a channel axis. Pass "
            "x[..., 0] (the Bernoulli VAEs take single-channel images)."
        )
    if len(shape) != 3:
        raise ValueError(f"VAE data `x` must be images of shape (num_data, height, width); got shape {shape}.")
    array = np.asarray(x)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"VAE data `x` must be numeric; got dtype {array.dtype}.")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"VAE data `x` must lie in [0, 1] for the Bernoulli likelihood; got values from {low:g} to {high:g}. "
            "Rescale the images (e.g. x / 255) or binarize them."
        )
    if config.image_shape is not None and tuple(shape[1:]) != tuple(config.image_shape):
        raise ValueError(
            f"VAE data `x` has images of shape {tuple(shape[1:])} but {name}.image_shape is {config.image_shape}; "
            "make them agree or set image_shape=None."
        )
    if config.network == "conv" and any(s % nn.CONV_STRIDE_PRODUCT for s in shape[1:]):
        raise ValueError(
            f"VAE data `x` has images of shape {tuple(shape[1:])}, which network='conv' cannot take (sides must be "
            f"multiples of {nn.CONV_STRIDE_PRODUCT}); use network='mlp'."
        )
    if config.batch_size is not None and shape[0] < config.batch_size:
        raise ValueError(
            f"VAE data `x` has {shape[0]} images, fewer than {name}.batch_size={config.batch_size}. Lower batch_size "
            "or use batch_size=None (every image every step)."
        )


def posterior_model(model: ZooModel) -> ZooModel:
    """The plain generative model of a fitted VAE-family model, for MCMC on the exact posterior of ``z``.

    ``model.with_config(regularize=False, batch_size=None)``: no beta scaling or penalty, no subsampling.
    Fit it with ``ppzoo.fit(posterior_model(m), {"x": few_images}, engine="nuts", params=svi_fit.params)``.
    """
    return model.with_config(regularize=False, batch_size=None)


def _config_of(model: ZooModel | VAEConfig) -> VAEConfig:
    config = getattr(model, "config", model)
    if not isinstance(config, VAEConfig):
        raise TypeError(f"Expected a VAE-family zoo model or its config; got {type(model).__name__}.")
    return config


@functools.lru_cache(maxsize=32)
def _encoder_program(config: VAEConfig, image_shape: tuple[int, int]):
    @jax.jit
    def run(weights, images):
        return handlers.substitute(lambda: encoder_network(config, image_shape)(images), data=weights)()

    return run


@functools.lru_cache(maxsize=32)
def _decoder_program(config: VAEConfig, image_shape: tuple[int, int]):
    @jax.jit
    def run(weights, z):
        logits = handlers.substitute(lambda: decoder_network(config, image_shape)(z), data=weights)()
        return jax.nn.sigmoid(logits)

    return run


def encoder_function(
    model: ZooModel | VAEConfig, params: Mapping[str, Any], image_shape: tuple[int, int]
) -> Callable[[ArrayLike], tuple[jax.Array, jax.Array]]:
    """A jitted function ``images (B, H, W) -> (mean, sd)`` of the fitted encoder (``params = fit.params``).

    Compiled once per config, image shape and batch size; the weights are an argument.
    """
    run = _encoder_program(_config_of(model), tuple(int(s) for s in image_shape))
    weights = {"encoder$params": params["encoder$params"]}
    return lambda images: run(weights, jnp.asarray(images, dtype=jnp.float32))


def decoder_function(
    model: ZooModel | VAEConfig, params: Mapping[str, Any], image_shape: tuple[int, int]
) -> Callable[[ArrayLike], jax.Array]:
    """A jitted function ``z (B, K) -> pixel probabilities (B, H, W)`` of the fitted decoder."""
    run = _decoder_program(_config_of(model), tuple(int(s) for s in image_shape))
    weights = {"decoder$params": params["decoder$params"]}
    return lambda z: run(weights, jnp.asarray(z, dtype=jnp.float32))


def encode(
    model: ZooModel | VAEConfig, params: Mapping[str, Any], x: ArrayLike, *, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Encoder means and standard deviations of any images under a fitted VAE-family model.

    A pure function of the model and its weights: ``encode(fit.model, fit.params, x)``.

    Parameters
    ----------
    model : ZooModel or VAEConfig
        A VAE-family zoo model (``fit.model``) or its config.
    params : Mapping
        Its fitted weights (``fit.params`` of an SVI fit); ``"encoder$params"`` is read.
    x : ArrayLike
        Images ``(n, height, width)``.
    batch_size : int
        Images per compiled call (memory only).

    Returns
    -------
    mean, sd : numpy.ndarray
        Each ``(n, latent_dim)``.

    Raises
    ------
    TypeError
        If ``model`` is not a VAE-family model or config.
    ValueError
        If ``params`` has no encoder weights or ``x`` is not a stack of images.
    """
    config = _config_of(model)
    if not params or "encoder$params" not in params:
        raise ValueError(
            "`params` has no encoder weights ('encoder$params'): pass the params of an SVI fit (engine='svi') of a "
            "VAE-family model, e.g. encode(fit.model, fit.params, x)."
        )
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"`x` must be images (n, height, width); got shape {x.shape}.")
    run = encoder_function(config, params, x.shape[1:])
    means, sds = [], []
    for start in range(0, len(x), batch_size):
        m, s = run(x[start : start + batch_size])
        means.append(np.asarray(m))
        sds.append(np.asarray(s))
    return np.concatenate(means), np.concatenate(sds)


def make_entry(
    name: str,
    model_fn: Callable[..., None],
    config_class: type,
    config: Mapping[str, Any],
    description: str,
    *,
    guide: Callable[[Any], Callable[..., None]] | None = None,
    sites: tuple[Site, ...] = SITES,
    example: Example = SMALLEST,
) -> ZooModel:
    """Build a VAE-family :class:`~ppzoo.models.ZooModel` (shared by the six registry entries)."""
    return ZooModel(
        name=name,
        model=model_fn,
        config=make_config(config_class, name, config),
        config_class=config_class,
        guide=guide if guide is not None else (lambda cfg: partial(vae_guide, config=cfg)),
        check_data=check_data,
        summary_sites=(),
        description=description,
        sites=sites,
        example=example,
    )


def entry(**config: Any) -> ZooModel:
    """The zoo entry ``"vae"``."""
    return make_entry("vae", vae, VAEConfig, config, "VAE: N(0, I) prior, Bernoulli decoder, amortized Gaussian encoder.")
