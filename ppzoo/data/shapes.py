"""A procedural dSprites-style data set of binary 2-D shapes, with a ground-truth oracle.

The original dSprites archive (Matthey et al. 2017) cannot be downloaded here, so the images are
rendered on the fly from the same factor grid:

=============  ====  ===============================================
factor         size  values
=============  ====  ===============================================
shape          3     1 = square, 2 = ellipse, 3 = heart (as dSprites)
scale          6     linearly spaced in [0.5, 1]
orientation    40    ``2 pi k / 40``, k = 0..39, radians in [0, 2 pi)
position_x     32    linearly spaced in [0, 1] (left to right)
position_y     32    linearly spaced in [0, 1] (top to bottom)
=============  ====  ===============================================

A shape is drawn by an inside test on the pixel centres after the inverse translation, rotation and
scaling; the heart is the implicit curve :math:`(x^2 + y^2 - 1)^3 - x^2 y^3 \\le 0`, rescaled. At scale 1
a shape fits in a disc of radius about 0.18 of the image width, and its centre moves over [0.2, 0.8] of
the frame, so the sprite stays inside the frame (only the corner of a square at scale 1, turned by about
45 degrees, in a corner of the grid touches the border). Orientation turns the shape counter-clockwise
as displayed (rows downward). As in dSprites, the square repeats every quarter turn and the ellipse
every half turn, so several orientations give the same image.

:func:`load` returns a :class:`ShapesDataset`: a :class:`~ppzoo.data.Dataset` of images drawn uniformly
from the grid that is also the oracle the disentanglement metrics sample from (``factor_names``,
``factor_sizes``, ``sample_factors``, ``observations_from_factors``), like disentanglement_lib's
``GroundTruthData``.

References
----------
Matthey, L., Higgins, I., Hassabis, D. & Lerchner, A. (2017). dSprites: Disentanglement testing Sprites
dataset. https://github.com/deepmind/dsprites-dataset/
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ppzoo.data._dataset import Dataset

__all__ = ["load", "ShapesDataset", "as_generator", "FACTOR_NAMES", "FACTOR_SIZES", "SHAPE_NAMES"]

#: Names of the generative factors, in column order.
FACTOR_NAMES: tuple[str, ...] = ("shape", "scale", "orientation", "position_x", "position_y")
#: Number of grid values of each factor (dSprites' grid without its single colour).
FACTOR_SIZES: tuple[int, ...] = (3, 6, 40, 32, 32)
#: Shape names for the shape values 1, 2, 3.
SHAPE_NAMES: tuple[str, ...] = ("square", "ellipse", "heart")

_FACTOR_VALUES: tuple[np.ndarray, ...] = (
    np.array([1.0, 2.0, 3.0]),
    np.linspace(0.5, 1.0, 6),
    2.0 * np.pi * np.arange(40) / 40.0,
    np.linspace(0.0, 1.0, 32),
    np.linspace(0.0, 1.0, 32),
)
_IMAGE_SIZES = (32, 64)
# Radius (fraction of the image width) of the disc holding a shape at scale 1, and the range of the centre.
_RADIUS = 0.18
_CENTRE_LOW, _CENTRE_HIGH = 0.2, 0.8
# Half side of the square, semi-axes of the ellipse, and the heart's scale and vertical offset, in units of
# _RADIUS. The heart curve spans x in [-1.139, 1.139] and y in [-1, 1.236]; the offset centres its box.
_SQUARE_HALF_SIDE = 0.75
_ELLIPSE_AXES = (1.0, 0.5)
_HEART_SCALE = 1.14
_HEART_OFFSET = 0.118
# Images rendered per vectorised block: bounds the temporary arrays to a few tens of MB.
_CHUNK = 1024


def as_generator(key, *, argument: str = "key") -> np.random.Generator:
    """Turn an int seed, a numpy Generator or a JAX PRNG key into a numpy Generator.

    Parameters
    ----------
    key : int, numpy.random.Generator or jax.Array
        A non-negative int seed, a Generator (returned as is, so its state advances), or a single JAX key
        (new-style ``jax.random.key(0)`` or raw ``jax.random.PRNGKey(0)``), whose bits seed the Generator.
    argument : str
        Name of the argument, for the error message.

    Returns
    -------
    numpy.random.Generator

    Raises
    ------
    TypeError
        If ``key`` is none of the accepted kinds.
    ValueError
        If an int seed is negative or a JAX key is a batch of keys.
    """
    if isinstance(key, np.random.Generator):
        return key
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        if key < 0:
            raise ValueError(f"`{argument}` must be a non-negative int seed; got {key}.")
        return np.random.default_rng(int(key))
    if "jax" in type(key).__module__:
        import jax

        data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
        data = np.asarray(data)
        if data.dtype != np.uint32 or data.ndim != 1:
            raise ValueError(
                f"`{argument}` must be a single JAX key such as jax.random.key(0); got an array of "
                f"shape {np.shape(key)} and dtype {key.dtype}. Split a batch of keys and pass one."
            )
        return np.random.default_rng([int(word) for word in data])
    raise TypeError(
        f"`{argument}` must be an int seed, a numpy.random.Generator or a JAX key; got "
        f"{type(key).__name__}. Example: ds.sample_factors(0, 100) or ds.sample_factors(np.random."
        "default_rng(0), 100)."
    )


def _check_indices(factor_indices: ArrayLike) -> np.ndarray:
    array = np.asarray(factor_indices)
    if array.ndim != 2 or array.shape[1] != len(FACTOR_SIZES):
        raise ValueError(
            f"`factor_indices` must have shape (n, {len(FACTOR_SIZES)}) with columns {FACTOR_NAMES}; got "
            f"shape {array.shape}. Use ds.sample_factors(key, n) to make one."
        )
    if not np.issubdtype(array.dtype, np.integer):
        if not (np.issubdtype(array.dtype, np.floating) and np.all(array == np.round(array))):
            raise TypeError(
                "`factor_indices` must hold integer grid indices (not factor values); got dtype "
                f"{array.dtype}. Factor values are in ds.truth['factors'], indices in "
                "ds.truth['factor_indices']."
            )
    array = array.astype(np.int64)
    sizes = np.array(FACTOR_SIZES)
    bad = (array < 0) | (array >= sizes)
    if bad.any():
        column = int(np.argmax(bad.any(0)))
        raise ValueError(
            f"`factor_indices` column {column} ({FACTOR_NAMES[column]}) must lie in [0, "
            f"{FACTOR_SIZES[column] - 1}]; got values from {array[:, column].min()} to "
            f"{array[:, column].max()}."
        )
    return array


def _check_image_size(image_size) -> None:
    if image_size not in _IMAGE_SIZES or isinstance(image_size, bool):
        raise ValueError(
            f"`image_size` must be 32 or 64; got {image_size!r}. The shapes are rendered at these two "
            "resolutions (64 as in dSprites); resize the images yourself for other sizes."
        )


def _sample_indices(rng: np.random.Generator, num: int) -> np.ndarray:
    return np.stack([rng.integers(0, size, num) for size in FACTOR_SIZES], axis=1)


def _values(indices: np.ndarray) -> np.ndarray:
    return np.stack([_FACTOR_VALUES[j][indices[:, j]] for j in range(len(FACTOR_SIZES))], axis=1)


def _inside(shape: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Inside test in the shape's own frame (``y`` up), lengths in units of the shape's radius."""
    if shape == 0:
        return np.maximum(np.abs(x), np.abs(y)) <= _SQUARE_HALF_SIDE
    if shape == 1:
        return (x / _ELLIPSE_AXES[0]) ** 2 + (y / _ELLIPSE_AXES[1]) ** 2 <= 1.0
    hx = _HEART_SCALE * x
    hy = _HEART_SCALE * y + _HEART_OFFSET
    return (hx * hx + hy * hy - 1.0) ** 3 - hx * hx * hy**3 <= 0.0


def _render(indices: np.ndarray, image_size: int) -> np.ndarray:
    num = indices.shape[0]
    images = np.zeros((num, image_size, image_size), dtype=np.float32)
    centres = (np.arange(image_size, dtype=np.float32) + 0.5) / image_size
    u = np.broadcast_to(centres[None, :], (image_size, image_size)).ravel()  # column -> x
    v = np.broadcast_to(centres[:, None], (image_size, image_size)).ravel()  # row -> y, downward
    scale = _FACTOR_VALUES[1][indices[:, 1]].astype(np.float32)
    angle = _FACTOR_VALUES[2][indices[:, 2]]
    cos, sin = np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)
    span = _CENTRE_HIGH - _CENTRE_LOW
    cx = (_CENTRE_LOW + span * _FACTOR_VALUES[3][indices[:, 3]]).astype(np.float32)
    cy = (_CENTRE_LOW + span * _FACTOR_VALUES[4][indices[:, 4]]).astype(np.float32)
    flat = images.reshape(num, -1)
    for start in range(0, num, _CHUNK):
        block = slice(start, min(start + _CHUNK, num))
        dx = u[None, :] - cx[block, None]
        dy = cy[block, None] - v[None, :]  # y up, so that the heart is upright at orientation 0
        inv = 1.0 / (_RADIUS * scale[block, None])
        # Inverse rotation by the orientation, then inverse scaling.
        x = (cos[block, None] * dx + sin[block, None] * dy) * inv
        y = (cos[block, None] * dy - sin[block, None] * dx) * inv
        shapes = indices[block, 0]
        for shape in range(len(SHAPE_NAMES)):
            rows = np.flatnonzero(shapes == shape)
            if rows.size:
                flat[start + rows] = _inside(shape, x[rows], y[rows])
    return images


@dataclass(frozen=True, repr=False)
class ShapesDataset(Dataset):
    """The shapes data set and its ground-truth oracle.

    Besides the :class:`~ppzoo.data.Dataset` fields, it renders any point of the factor grid, so that
    metrics such as the beta-VAE and FactorVAE scores can draw fresh images with chosen factors.

    Attributes
    ----------
    image_size : int
        Height and width of the images, 32 or 64.
    factor_names : tuple of str
        ``("shape", "scale", "orientation", "position_x", "position_y")``.
    factor_sizes : tuple of int
        ``(3, 6, 40, 32, 32)``.
    num_factors : int
        5.
    factor_values : tuple of numpy.ndarray
        The grid values of each factor, indexed by the factor indices.
    """

    image_size: int = 32

    def __post_init__(self):
        _check_image_size(self.image_size)

    @property
    def factor_names(self) -> tuple[str, ...]:
        return FACTOR_NAMES

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return FACTOR_SIZES

    @property
    def num_factors(self) -> int:
        return len(FACTOR_SIZES)

    @property
    def factor_values(self) -> tuple[np.ndarray, ...]:
        return tuple(values.copy() for values in _FACTOR_VALUES)

    def sample_factors(self, key, num: int) -> np.ndarray:
        """Draw factor grid indices uniformly and independently.

        Parameters
        ----------
        key : int, numpy.random.Generator or jax.Array
            Seed, Generator (advanced in place) or JAX key; see :func:`as_generator`.
        num : int
            Number of draws.

        Returns
        -------
        numpy.ndarray
            Integer indices of shape ``(num, 5)``, column ``j`` in ``[0, factor_sizes[j])``.

        Raises
        ------
        ValueError
            If ``num`` is negative.
        """
        if not isinstance(num, numbers.Integral) or isinstance(num, bool) or num < 0:
            raise ValueError(f"`num` must be a non-negative int; got {num!r}.")
        return _sample_indices(as_generator(key), int(num))

    def factors_from_indices(self, factor_indices: ArrayLike) -> np.ndarray:
        """Map grid indices ``(n, 5)`` to factor values ``(n, 5)`` (see the module table)."""
        return _values(_check_indices(factor_indices))

    def observations_from_factors(self, factor_indices: ArrayLike) -> np.ndarray:
        """Render the images of the given factor grid indices.

        Parameters
        ----------
        factor_indices : ArrayLike
            Integer grid indices of shape ``(n, 5)``, as from :meth:`sample_factors`.

        Returns
        -------
        numpy.ndarray
            Binary float32 images of shape ``(n, image_size, image_size)``, 1 inside the shape.

        Raises
        ------
        ValueError
            If the shape is not ``(n, 5)`` or an index is outside its factor's grid.
        TypeError
            If the indices are not integers.
        """
        return _render(_check_indices(factor_indices), self.image_size)

    def sample(self, key, num: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``num`` factor indices and their images: ``(factor_indices, images)``."""
        indices = self.sample_factors(key, num)
        return indices, self.observations_from_factors(indices)


def load(*, image_size: int = 32, num_data: int = 10000, seed: int = 0) -> ShapesDataset:
    """Render a dSprites-style data set of binary shapes with their true factors.

    Parameters
    ----------
    image_size : {32, 64}
        Height and width of the images: 32 (default, four times cheaper to fit on CPUs) or 64 as in
        dSprites. Both render the same geometry.
    num_data : int
        Number of images, each with factors drawn uniformly from the 737,280-point grid.
    seed : int
        Seed of the factor draws; rendering is deterministic.

    Returns
    -------
    ShapesDataset
        ``data = {"x": (num_data, image_size, image_size) float32 in {0, 1}}``;
        ``truth = {"factors": (num_data, 5) factor values, "factor_indices": (num_data, 5) int64}``;
        ``info`` names the factors and gives their grid sizes and values. The object is also the oracle:
        ``sample_factors``, ``observations_from_factors``, ``factor_names``, ``factor_sizes``.

    Raises
    ------
    ValueError
        If ``image_size`` is not 32 or 64, or ``num_data`` is not a positive int.

    Examples
    --------
    >>> ds = load(image_size=32, num_data=100, seed=0)
    >>> ds.data["x"].shape, ds.truth["factors"].shape
    ((100, 32, 32), (100, 5))
    >>> images = ds.observations_from_factors(ds.sample_factors(0, 8))
    """
    _check_image_size(image_size)
    if not isinstance(num_data, numbers.Integral) or isinstance(num_data, bool) or num_data < 1:
        raise ValueError(f"`num_data` must be a positive int, e.g. 10000; got {num_data!r}.")
    indices = _sample_indices(np.random.default_rng(seed), int(num_data))
    return ShapesDataset(
        name="shapes",
        data={"x": _render(indices, int(image_size))},
        truth={"factors": _values(indices), "factor_indices": indices},
        info={
            "source": "procedural dSprites-style shapes rendered by ppzoo.data.shapes (not the dSprites "
            "archive)",
            "factor_names": list(FACTOR_NAMES),
            "factor_sizes": list(FACTOR_SIZES),
            "factor_values": {n: v.tolist() for n, v in zip(FACTOR_NAMES, _FACTOR_VALUES, strict=True)},
            "shape_names": {1: "square", 2: "ellipse", 3: "heart"},
            "image_size": int(image_size),
            "num_data": int(num_data),
            "seed": seed,
        },
        image_size=int(image_size),
    )
