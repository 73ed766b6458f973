"""Neural networks for NumPyro programs: Flax NNX modules registered as NumPyro parameters.

Inside a model, ``net = ppzoo.nn.mlp("decoder", in_features, (64, 64, out))`` returns a callable whose
weights are the NumPyro param site ``"decoder$params"``: SVI learns them, and
``ppzoo.fit(model, data, engine="nuts", params=svi_fit.params)`` holds them fixed while MCMC samples the
model's random sites. This is the one place ppzoo touches :func:`numpyro.contrib.module.nnx_module`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Literal

import jax
from flax import nnx
from numpyro.contrib.module import nnx_module

from ppzoo.buffers import fresh_buffers

__all__ = ["MLP", "mlp", "module", "ACTIVATIONS"]

Activation = Literal["relu", "leaky_relu", "tanh", "xtanh", "elu", "gelu", "softplus"]


def xtanh(h: jax.Array) -> jax.Array:
    """``tanh(h) + 0.1 h``: the nonlinear-ICA mixing's activation (Hyvärinen & Morioka 2016; ``ilkhem/iVAE``)."""
    return jax.numpy.tanh(h) + 0.1 * h

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "leaky_relu": functools.partial(jax.nn.leaky_relu, negative_slope=0.1),
    "tanh": jax.numpy.tanh,
    "xtanh": xtanh,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
}


class MLP(nnx.Module):
    """A multilayer perceptron: ``Linear -> activation`` for every layer but the last.

    Parameters
    ----------
    in_features : int
        Input width.
    sizes : sequence of int
        Widths of the layers; the last is the output width.
    activation : str
        One of :data:`ACTIVATIONS`.
    rngs : flax.nnx.Rngs
        Initialisation randomness.
    """

    def __init__(self, in_features: int, sizes: Sequence[int], *, activation: Activation = "relu", rngs: nnx.Rngs):
        if activation not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {', '.join(ACTIVATIONS)}; got {activation!r}.")
        if not sizes or any(int(s) < 1 for s in sizes) or in_features < 1:
            raise ValueError(f"MLP sizes must be positive integers; got in_features={in_features}, sizes={tuple(sizes)}.")
        widths = [in_features, *sizes]
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)


def module(name: str, network: nnx.Module) -> Callable[..., jax.Array]:
    """Register an NNX module's weights as the NumPyro param ``f"{name}$params"`` and return its call."""
    return nnx_module(name, network)


def mlp(
    name: str,
    in_features: int,
    sizes: Sequence[int],
    *,
    activation: Activation = "relu",
    seed: int = 0,
) -> Callable[[jax.Array], jax.Array]:
    """An MLP inside a NumPyro program, its weights the param site ``f"{name}$params"``.

    The module's structure and initial weights (from ``nnx.Rngs(seed)``) are built once per distinct
    setting and reused, so calling the model repeatedly (as every engine does) costs no re-initialisation;
    each call hands NumPyro fresh copies of the weights (see :func:`_fresh`).
    """
    return _fresh(name, "mlp", int(in_features), tuple(int(s) for s in sizes), activation, int(seed))


# --------------------------------------------------------------------------------------------------------
# Convolutional encoder and decoder of disentanglement_lib (Locatello et al. 2019), NHWC, for image VAEs.
# --------------------------------------------------------------------------------------------------------

__all__ += [
    "ConvEncoder",
    "ConvDecoder",
    "conv_encoder",
    "conv_decoder",
    "mlp_encoder",
    "mlp_decoder",
    "subpixel_conv_transpose",
    "space_to_depth_conv",
    "EncoderLowering",
    "DecoderLowering",
]

import numpy as _np  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax as _lax  # noqa: E402

EncoderLowering = Literal["xla", "space_to_depth"]
DecoderLowering = Literal["xla", "subpixel"]
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
#: Spatial reduction of the four stride-2 layers: image sides must be multiples of this.
CONV_STRIDE_PRODUCT = 16


def _space_to_depth(x: jax.Array) -> jax.Array:
    """(B, H, W, C) -> (B, H/2, W/2, 4C), channels ordered (row parity, column parity, C)."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h // 2, w // 2, 4 * c)


def space_to_depth_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A stride-2 'same' convolution (kernel 4 or 2, HWIO) computed as a stride-1 one on a space-to-depth input.

    For a kernel of size 4 with one pixel of padding on each side, ``out[m] = sum_k xpad[2m + k] w[k]``
    regroups into a 2 x 2 stride-1 convolution over 2 x 2 pixel blocks (4C channels); a kernel of size 2
    (no padding) becomes a 1 x 1 convolution, i.e. a matrix product. The result equals
    ``lax.conv_general_dilated(x, kernel, (2, 2), padding)`` to float rounding, and its gradient with
    respect to ``x`` is again a stride-1 convolution rather than an input-dilated one.
    """
    kh, kw, ci, co = kernel.shape
    if kh == 2 and kw == 2:
        return _space_to_depth(x) @ kernel.reshape(4 * ci, co)
    if kh != 4 or kw != 4:
        raise ValueError(f"space_to_depth_conv handles kernels of size 2 or 4; got {kernel.shape[:2]}.")
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    blocks = kernel.reshape(2, 2, 2, 2, ci, co).transpose(0, 2, 1, 3, 4, 5).reshape(2, 2, 4 * ci, co)
    return _lax.conv_general_dilated(_space_to_depth(padded), blocks, (1, 1), "VALID", dimension_numbers=_DIMENSIONS)


# Kernel taps used by output phase 0 and 1 of a size-4, stride-2 transposed convolution, at the input
# offsets -1, 0 (phase 0) and 0, +1 (phase 1): out[2m] = x[m-1] w[3] + x[m] w[1], out[2m+1] = x[m] w[2] + x[m+1] w[0].
_PHASE_TAPS = {0: ((0, 3), (1, 1)), 1: ((1, 2), (2, 0))}


def subpixel_conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """A size-4, stride-2 'same' transposed convolution computed as a stride-1 convolution and depth-to-space.

    ``kernel`` has flax's ``ConvTranspose(transpose_kernel=True)`` layout ``(4, 4, C_out, C_in)`` (the
    layout of the forward convolution whose gradient this is). Each of the four output phases (row and
    column parity) is a 2 x 2 convolution of the input; the four are packed into one 3 x 3 stride-1
    convolution with ``4 C_out`` channels (the taps a phase does not use are zero) and interleaved by
    depth-to-space ("sub-pixel convolution", Shi et al. 2016). The result equals
    ``lax.conv_transpose(x, kernel, (2, 2), "SAME", transpose_kernel=True)`` to float rounding; XLA on
    CPU lowers the transposed convolution as an input-dilated one (three quarters of its products are
    with inserted zeros), so this form ran several times faster there.
    """
    b, h, w, ci = x.shape
    if kernel.shape[:2] != (4, 4):
        raise ValueError(f"subpixel_conv_transpose handles 4 x 4 kernels; got {kernel.shape[:2]}.")
    co = kernel.shape[2]
    taps = jnp.swapaxes(kernel, 2, 3)  # (4, 4, C_in, C_out)
    rows, cols, phase_a, phase_b, src_r, src_c = [], [], [], [], [], []
    for a in range(2):
        for bb in range(2):
            for r, kr in _PHASE_TAPS[a]:
                for c, kc in _PHASE_TAPS[bb]:
                    rows.append(r), cols.append(c), phase_a.append(a), phase_b.append(bb)
                    src_r.append(kr), src_c.append(kc)
    packed = jnp.zeros((3, 3, 2, 2, ci, co), x.dtype)
    packed = packed.at[_np.array(rows), _np.array(cols), _np.array(phase_a), _np.array(phase_b)].set(
        taps[_np.array(src_r), _np.array(src_c)]
    )
    packed = packed.transpose(0, 1, 4, 2, 3, 5).reshape(3, 3, ci, 4 * co)
    y = _lax.conv_general_dilated(x, packed, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DIMENSIONS)
    y = y.reshape(b, h, w, 2, 2, co).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, 2 * h, 2 * w, co)


def _check_image_shape(image_shape: Sequence[int], channels: int) -> tuple[int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 2 or any(s < CONV_STRIDE_PRODUCT or s % CONV_STRIDE_PRODUCT for s in shape):
        raise ValueError(
            f"The conv encoder/decoder needs image sides that are multiples of {CONV_STRIDE_PRODUCT} (four "
            f"stride-2 layers), e.g. (64, 64) or (32, 32); got image_shape={tuple(image_shape)}. Use the MLP "
            "networks for other sizes (e.g. 8 x 8 digits)."
        )
    if int(channels) < 1:
        raise ValueError(f"`channels` must be a positive integer; got {channels!r}.")
    return shape


class ConvEncoder(nnx.Module):
    """disentanglement_lib's convolutional encoder (``conv_encoder``), NHWC.

    Four convolutions with ReLU (32, 32, 64, 64 filters; kernels 4, 4, 2, 2; stride 2; 'same' padding),
    then a dense layer of 256 with ReLU and a linear output of ``out_features`` (a VAE uses
    ``2 x latent_dim``: means and log-variances). This is row 3 of Table 1 of Higgins et al. (2017) as
    implemented in disentanglement_lib's ``architectures.py``, whose third and fourth layers have
    kernel 2. For 64 x 64 images the last feature map is 4 x 4 x 64, as there; for 32 x 32 images
    (ppzoo's fast setting) the same layers end at 2 x 2 x 64, so the dense layer has 256 instead of
    1024 inputs. Image sides must be multiples of 16.

    Parameters
    ----------
    image_shape : (int, int)
        Height and width.
    out_features : int
        Output width.
    channels : int
        Input channels (1 for binary images). Inputs may be ``(B, H, W)`` when ``channels == 1``.
    lowering : {"xla", "space_to_depth"}
        How the strided convolutions are computed: XLA's strided convolution, or the same function as a
        stride-1 convolution on space-to-depth blocks (:func:`space_to_depth_conv`). The weights and the
        result are the same.
    rngs : flax.nnx.Rngs
        Initialisation randomness.
    """

    FILTERS = (32, 32, 64, 64)
    KERNELS = (4, 4, 2, 2)

    def __init__(
        self,
        image_shape: Sequence[int],
        out_features: int,
        *,
        channels: int = 1,
        lowering: EncoderLowering = "xla",
        rngs: nnx.Rngs,
    ):
        height, width = _check_image_shape(image_shape, channels)
        if lowering not in ("xla", "space_to_depth"):
            raise ValueError(f"`lowering` must be 'xla' or 'space_to_depth'; got {lowering!r}.")
        if int(out_features) < 1:
            raise ValueError(f"`out_features` must be a positive integer; got {out_features!r}.")
        widths = (int(channels), *self.FILTERS)
        self.convs = nnx.List(
            [
                nnx.Conv(a, b, kernel_size=(k, k), strides=(2, 2), padding=((1, 1), (1, 1)) if k == 4 else "VALID", rngs=rngs)
                for a, b, k in zip(widths[:-1], widths[1:], self.KERNELS)
            ]
        )
        flat = (height // CONV_STRIDE_PRODUCT) * (width // CONV_STRIDE_PRODUCT) * self.FILTERS[-1]
        self.hidden = nnx.Linear(flat, 256, rngs=rngs)
        self.out = nnx.Linear(256, int(out_features), rngs=rngs)
        self.channels = int(channels)
        self.lowering = lowering

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim == 3:
            x = x[..., None]
        for conv in self.convs:
            if self.lowering == "xla":
                x = conv(x)
            else:
                x = space_to_depth_conv(x, conv.kernel[...]) + conv.bias[...]
            x = jax.nn.relu(x)
        x = jax.nn.relu(self.hidden(x.reshape(x.shape[0], -1)))
        return self.out(x)


class ConvDecoder(nnx.Module):
    """disentanglement_lib's deconvolutional decoder (``deconv_decoder``), NHWC, returning logits.

    Dense 256 with ReLU, dense to an ``(H/16) x (W/16) x 64`` map with ReLU, then four size-4, stride-2
    transposed convolutions (64, 32, 32 filters with ReLU, then ``channels`` linear outputs). For 64 x 64
    images the map starts at 4 x 4 x 64 as in disentanglement_lib; for 32 x 32 it starts at 2 x 2 x 64 and
    the same four layers double it to 32 x 32.

    Parameters
    ----------
    latent_dim : int
        Input width.
    image_shape : (int, int)
        Output height and width (multiples of 16).
    channels : int
        Output channels; with 1 the output is ``(B, H, W)``.
    lowering : {"xla", "subpixel"}
        XLA's transposed convolution, or the same function as a stride-1 convolution followed by
        depth-to-space (:func:`subpixel_conv_transpose`). Same weights, same result.
    rngs : flax.nnx.Rngs
        Initialisation randomness.
    """

    FILTERS = (64, 32, 32)

    def __init__(
        self,
        latent_dim: int,
        image_shape: Sequence[int],
        *,
        channels: int = 1,
        lowering: DecoderLowering = "subpixel",
        rngs: nnx.Rngs,
    ):
        height, width = _check_image_shape(image_shape, channels)
        if lowering not in ("xla", "subpixel"):
            raise ValueError(f"`lowering` must be 'xla' or 'subpixel'; got {lowering!r}.")
        if int(latent_dim) < 1:
            raise ValueError(f"`latent_dim` must be a positive integer; got {latent_dim!r}.")
        self.start = (height // CONV_STRIDE_PRODUCT, width // CONV_STRIDE_PRODUCT, 64)
        self.hidden = nnx.Linear(int(latent_dim), 256, rngs=rngs)
        self.project = nnx.Linear(256, int(_np.prod(self.start)), rngs=rngs)
        widths = (64, *self.FILTERS, int(channels))
        self.deconvs = nnx.List(
            [
                nnx.ConvTranspose(a, b, kernel_size=(4, 4), strides=(2, 2), padding="SAME", transpose_kernel=True, rngs=rngs)
                for a, b in zip(widths[:-1], widths[1:])
            ]
        )
        self.channels = int(channels)
        self.lowering = lowering

    def __call__(self, z: jax.Array) -> jax.Array:
        x = jax.nn.relu(self.hidden(z))
        x = jax.nn.relu(self.project(x)).reshape((z.shape[0], *self.start))
        last = len(self.deconvs) - 1
        for i, deconv in enumerate(self.deconvs):
            if self.lowering == "xla":
                x = deconv(x)
            else:
                x = subpixel_conv_transpose(x, deconv.kernel[...]) + deconv.bias[...]
            if i < last:
                x = jax.nn.relu(x)
        return x[..., 0] if self.channels == 1 else x


@functools.lru_cache(maxsize=64)
def _template(kind: str, *args) -> tuple[nnx.GraphDef, nnx.State]:
    """Structure and initial weights of a network, built once per setting (eagerly, never from a tracer)."""
    with jax.ensure_compile_time_eval():
        if kind == "conv_encoder":
            image_shape, out_features, channels, lowering, seed = args
            net = ConvEncoder(image_shape, out_features, channels=channels, lowering=lowering, rngs=nnx.Rngs(seed))
        elif kind == "conv_decoder":
            latent_dim, image_shape, channels, lowering, seed = args
            net = ConvDecoder(latent_dim, image_shape, channels=channels, lowering=lowering, rngs=nnx.Rngs(seed))
        else:
            in_features, sizes, activation, seed = args
            net = MLP(in_features, sizes, activation=activation, rngs=nnx.Rngs(seed))
        return nnx.split(net)


def _fresh(name: str, kind: str, *args) -> Callable[..., jax.Array]:
    """``module(name, net)`` for a network rebuilt from the cached template with *copies* of its weights.

    A compiled update that donates its state (the SVI engine's, or a user's own) deletes the buffers of the
    params' initial values; handing NumPyro the cached template's own arrays would let a first fit delete
    them and break a second fit of the same architecture ("Array has been deleted"). The copies are
    :func:`ppzoo.buffers.fresh_buffers`, the one donation guard; under ``jit`` they are dead code once the
    params exist.
    """
    graphdef, state = _template(kind, *args)
    return module(name, nnx.merge(graphdef, fresh_buffers(state)))


def conv_encoder(
    name: str,
    image_shape: Sequence[int],
    out_features: int,
    *,
    channels: int = 1,
    lowering: EncoderLowering = "xla",
    seed: int = 0,
) -> Callable[[jax.Array], jax.Array]:
    """A :class:`ConvEncoder` inside a NumPyro program, its weights the param site ``f"{name}$params"``."""
    shape = tuple(int(s) for s in image_shape)
    return _fresh(name, "conv_encoder", shape, int(out_features), int(channels), lowering, int(seed))


def conv_decoder(
    name: str,
    latent_dim: int,
    image_shape: Sequence[int],
    *,
    channels: int = 1,
    lowering: DecoderLowering = "subpixel",
    seed: int = 0,
) -> Callable[[jax.Array], jax.Array]:
    """A :class:`ConvDecoder` inside a NumPyro program, its weights the param site ``f"{name}$params"``."""
    shape = tuple(int(s) for s in image_shape)
    return _fresh(name, "conv_decoder", int(latent_dim), shape, int(channels), lowering, int(seed))


def mlp_encoder(
    name: str,
    image_shape: Sequence[int],
    out_features: int,
    hidden: Sequence[int],
    *,
    activation: Activation = "relu",
    seed: int = 0,
) -> Callable[[jax.Array], jax.Array]:
    """An :class:`MLP` from flattened images ``(B, *image_shape)`` to ``out_features`` (param ``f"{name}$params"``)."""
    size = int(_np.prod(image_shape))
    net = _fresh(name, "mlp", size, (*(int(h) for h in hidden), int(out_features)), activation, int(seed))
    return lambda x: net(x.reshape(x.shape[0], size))


def mlp_decoder(
    name: str,
    latent_dim: int,
    image_shape: Sequence[int],
    hidden: Sequence[int],
    *,
    activation: Activation = "relu",
    seed: int = 0,
) -> Callable[[jax.Array], jax.Array]:
    """An :class:`MLP` from latents ``(B, latent_dim)`` to image logits ``(B, *image_shape)``."""
    shape = tuple(int(s) for s in image_shape)
    net = _fresh(name, "mlp", int(latent_dim), (*(int(h) for h in hidden), int(_np.prod(shape))), activation, int(seed))
    return lambda z: net(z).reshape((z.shape[0], *shape))
