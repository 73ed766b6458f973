"""The CausalVAE "pendulum" images: a pendulum and a light source whose angles cause a shadow.

Re-implemented from the recipe ``ppzoo/data/validation/pendulum/RECIPE.md`` (our restatement of
``research/CausalVAE/causal_data/pendulum.py`` in GitHub ``huawei-noah/trustworthyAI``): the same factor
grid, structural equations, scene geometry, colours, drawing order and train/test split, drawn by a
vectorized NumPy rasteriser instead of matplotlib.

Causal graph (the true SCM, no noise in the original)::

    pendulum_angle ──┬──> shadow_length
                     └──> shadow_position
    light_angle ─────┬──> shadow_length
                     └──> shadow_position
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from ppzoo.data._dataset import Dataset

__all__ = [
    "load",
    "OBJECTS",
    "PendulumDataset",
    "render",
    "structural_effects",
    "intervene",
    "FACTOR_NAMES",
    "GRAPH",
    "IMAGE_SIZES",
    "SPLITS",
    "LABEL_CENTER",
    "LABEL_SCALE",
    "FACTOR_DOMAIN",
    "HOLDOUT_REGIONS",
    "holdout_region",
    "in_region",
]

#: Factor order (CausalVAE's concept order). Angles in radians, shadow in scene units (x in [0, 20]).
FACTOR_NAMES = ("pendulum_angle", "light_angle", "shadow_length", "shadow_position")
#: The factors of each drawn object (the pendulum, the light, the shadow), e.g. for a decoder per object
#: (``LatentSCMConfig.decoder``).
OBJECTS = (("pendulum_angle",), ("light_angle",), ("shadow_length", "shadow_position"))
#: True adjacency, ``GRAPH[i, j] = 1`` for the edge ``FACTOR_NAMES[i] -> FACTOR_NAMES[j]``.
GRAPH = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.int8)
GRAPH.setflags(write=False)
#: Allowed image sizes: 96 is the original (1 inch at 96 dpi); 64 and 32 are the 96-pixel images reduced
#: by area averaging (PIL's BOX filter). Rendering the figure directly at 32 dpi would clip the shadow
#: almost entirely (it sits on the lower edge of the axes box), so the reduction is done in pixel space.
IMAGE_SIZES = (96, 64, 32)
SPLITS = ("train", "test", "all")
#: Pendulum-angle grid index i (angle = i * pi / 200) and light-angle grid index j (skipping 90 degrees).
PENDULUM_INDEX = np.arange(-40, 44)
LIGHT_INDEX = np.array([j for j in range(60, 148) if j != 100])
#: CausalVAE's label normalisation: u = (label - LABEL_CENTER) / LABEL_SCALE with label = (i, j,
#: trunc(shadow_length), trunc(shadow_position)) parsed from the original file names.
LABEL_CENTER = np.array([0.0, 100.0, 6.5, 10.0])
LABEL_SCALE = np.array([44.0, 40.0, 3.5, 5.0])

#: Values each factor may take for :func:`render` and :func:`intervene` (scene units, radians): a hold-out
#: region must overlap these. The grid's own ranges are narrower (see :func:`load`).
FACTOR_DOMAIN = {
    "pendulum_angle": (-np.pi / 2, np.pi / 2),
    "light_angle": (0.0, np.pi),
    "shadow_length": (0.0, 20.0),
    "shadow_position": (0.0, 20.0),
}
#: Named hold-out regions, each a box ``{factor: (low, high)}`` (low <= value < high) in scene units. Training
#: images whose factors lie in the box are removed (``load(holdout=...)``); interventions into it are then
#: out of the training support.
#:
#: * ``shadow_free``: shadow length below 3. The data never have one (the simulator clamps the length at 3), so
#:   this removes nothing; do(shadow_length = 0) draws a pendulum without a shadow, never seen in training.
#: * ``angle_block``: both angles in the upper quarter of their grid ranges (pendulum index i >= 23, light
#:   index j >= 126): a block of the (pendulum_angle, light_angle) grid, reached by do() on both angles.
#: * ``extrapolation``: the light angle in the lower quarter of its grid range (j <= 81, 0.94-1.27 rad): beyond
#:   the training range of one factor.
HOLDOUT_REGIONS: dict[str, dict[str, tuple[float, float]]] = {
    "shadow_free": {"shadow_length": (0.0, 3.0)},
    "angle_block": {"pendulum_angle": (22.5 * np.pi / 200, 44 * np.pi / 200),
                    "light_angle": (125.5 * np.pi / 200, 148 * np.pi / 200)},
    "extrapolation": {"light_angle": (59 * np.pi / 200, 81.5 * np.pi / 200)},
}

# Scene geometry in data coordinates (RECIPE.md, section 2).
_PIVOT = (10.0, 10.5)
_ROD_LENGTH = 8.0
_BOB_RADIUS = 1.5
_TIP_LENGTH = _ROD_LENGTH + _BOB_RADIUS
_GROUND_Y = -0.5
_SUN_Y = 20.5
_SUN_RADIUS = 3.0
_MIN_SHADOW = 3.0
_X_LIMITS = (0.0, 20.0)
_Y_LIMITS = (-1.0, 21.0)
# Data -> pixel map of a 1 x 1 inch matplotlib figure with default subplot margins at 96 dpi:
# column = 12 + 3.72 x, row (from the top) = 11.52 + 3.36 (21 - y); other sizes scale by size / 96.
_COL_OFFSET, _COL_PER_UNIT = 12.0, 3.72
_ROW_OFFSET, _ROW_PER_UNIT = 11.52, 3.36
_HALF_LINE_WIDTH = 2.0  # 3 pt lines are 4 px wide at 96 dpi
_HALF_EDGE_WIDTH = 2.0 / 3.0  # the discs also get matplotlib's default 1 pt edge in their own colour
_FIREBRICK = np.array([178, 34, 34], dtype=np.float32) / 255
_ORANGE = np.array([255, 165, 0], dtype=np.float32) / 255
_CHUNK = 256
_NATIVE_SIZE = 96


def _cot(light_angle: np.ndarray, name: str = "light_angle") -> np.ndarray:
    sin = np.sin(light_angle)
    if not np.all(np.isfinite(light_angle)) or np.any(sin <= 0):
        raise ValueError(
            f"{name} must lie strictly between 0 and pi radians (light from above, e.g. 0.3 pi to 0.74 pi "
            "as in the data grid); got a value outside (0, pi) or not finite."
        )
    return np.cos(light_angle) / sin


def structural_effects(
    pendulum_angle: ArrayLike, light_angle: ArrayLike, noise: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""The true structural equations: shadow length and position from the two angles.

    With :math:`\theta` the pendulum angle, :math:`\varphi` the light angle (radians) and optional
    additive exogenous terms :math:`(\epsilon_\ell, \epsilon_p)`:

    .. math::

        \ell = \max\!\Big(3,\; 9.5\,\frac{|\cos(\varphi - \theta)|}{\sin\varphi} + \epsilon_\ell\Big),
        \qquad
        p = 10 + 4.75 \sin\theta - (11 - 4.75\cos\theta)\cot\varphi + \epsilon_p .

    :math:`p` is the mid-point of the projections of the pivot and of the far tip of the pendulum onto
    the ground along the light rays, and :math:`9.5|\cos(\varphi-\theta)|/\sin\varphi` their distance,
    clamped below at 3 (RECIPE.md, section 2). The original data have no noise.

    Parameters
    ----------
    pendulum_angle, light_angle : array_like
        Angles in radians, broadcastable; ``light_angle`` in (0, pi).
    noise : array_like, shape (..., 2), optional
        Exogenous terms added to the length (inside the clamp) and to the position.

    Returns
    -------
    shadow_length, shadow_position : numpy.ndarray
        Float64 arrays of the broadcast shape.

    Raises
    ------
    ValueError
        If a light angle is not in (0, pi).
    """
    theta = np.asarray(pendulum_angle, dtype=np.float64)
    phi = np.asarray(light_angle, dtype=np.float64)
    cot = _cot(phi)
    raw_length = _TIP_LENGTH * np.abs(np.cos(phi - theta)) / np.sin(phi)
    half_tip = 0.5 * _TIP_LENGTH
    position = _PIVOT[0] + half_tip * np.sin(theta) - (_PIVOT[1] - _GROUND_Y - half_tip * np.cos(theta)) * cot
    if noise is not None:
        noise = np.asarray(noise, dtype=np.float64)
        raw_length = raw_length + noise[..., 0]
        position = position + noise[..., 1]
    return np.maximum(_MIN_SHADOW, raw_length), position


def _as_factors(factors: ArrayLike) -> np.ndarray:
    array = np.asarray(factors, dtype=np.float64)
    if array.ndim not in (1, 2) or array.shape[-1] != 4:
        raise ValueError(
            f"factors must have shape (N, 4) or (4,) with columns {', '.join(FACTOR_NAMES)}; "
            f"got shape {array.shape}."
        )
    return array


def intervene(
    factors: ArrayLike, do: Mapping[str, ArrayLike], *, noise: ArrayLike | None = None
) -> np.ndarray:
    """Apply ``do()`` on the true SCM: set the intervened factors and recompute their descendants.

    Intervening on an angle recomputes every shadow factor that is not itself intervened on, with
    :func:`structural_effects` from the (new) angles; intervening only on shadow factors leaves all other
    factors unchanged (the shadow factors have no children, and the angles are their parents).

    Parameters
    ----------
    factors : array_like, shape (N, 4) or (4,)
        Factor values in the order of :data:`FACTOR_NAMES`.
    do : mapping
        Factor name -> value (scalar, or shape (N,)).
    noise : array_like, shape (N, 2), optional
        Exogenous terms of the recomputed effects, e.g. ``ds.truth["effect_noise"]`` for unit-level
        counterfactuals of a noisy data set; default none (the noise-free law).

    Returns
    -------
    numpy.ndarray
        The factors after the intervention, same shape as ``factors``, float64.

    Raises
    ------
    ValueError
        If ``factors`` has the wrong shape, a key of ``do`` is not a factor name, or an intervened light
        angle is outside (0, pi).
    """
    out = _as_factors(factors).copy()
    unknown = sorted(set(do) - set(FACTOR_NAMES))
    if unknown:
        raise ValueError(
            f"do has unknown factor(s) {', '.join(map(repr, unknown))}. Valid: {', '.join(FACTOR_NAMES)}; "
            "for example do={'shadow_length': 5.0}."
        )
    for name, value in do.items():
        out[..., FACTOR_NAMES.index(name)] = value
    if "pendulum_angle" in do or "light_angle" in do:
        length, position = structural_effects(out[..., 0], out[..., 1], noise)
        if "shadow_length" not in do:
            out[..., 2] = length
        if "shadow_position" not in do:
            out[..., 3] = position
    return out


def _coverage(signed_distance: np.ndarray) -> np.ndarray:
    # Anti-aliasing: the fraction of a pixel inside the shape is approximated by a linear ramp of the
    # signed distance (in pixels) from the pixel centre, 1 px wide.
    return np.clip(0.5 - signed_distance, 0.0, 1.0)


def _ellipse_distance(col, row, centre_col, centre_row, radius_col, radius_row):
    # First-order signed distance to an ellipse: (k - 1) * k / |grad k| with k the normalised radius.
    dx = (col - centre_col) / radius_col
    dy = (row - centre_row) / radius_row
    k0 = np.sqrt(dx * dx + dy * dy)
    k1 = np.sqrt((dx / radius_col) ** 2 + (dy / radius_row) ** 2)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-12)


def _segment_distance(col, row, start_col, start_row, end_col, end_row, half_width):
    # Signed distance to a thick segment with butt caps (the original strokes a two-vertex polygon, whose
    # ends come out flat): a rectangle of half-sizes (length / 2, half_width) along the segment.
    centre_col, centre_row = 0.5 * (start_col + end_col), 0.5 * (start_row + end_row)
    dcol, drow = end_col - start_col, end_row - start_row
    length = np.maximum(np.sqrt(dcol * dcol + drow * drow), 1e-12)
    tcol, trow = dcol / length, drow / length
    along = np.abs((col - centre_col) * tcol + (row - centre_row) * trow) - 0.5 * length
    across = np.abs((row - centre_row) * tcol - (col - centre_col) * trow) - half_width
    outside = np.sqrt(np.maximum(along, 0.0) ** 2 + np.maximum(across, 0.0) ** 2)
    return outside + np.minimum(np.maximum(along, across), 0.0)


def _snap(pixel: np.ndarray, half_width: float) -> np.ndarray:
    # Agg's path snapping (matplotlib's PathSnapper) for rectilinear paths, in its top-down pixel
    # coordinates: a vertex goes to the nearest pixel boundary (stroke width rounds to an even number of
    # pixels) or pixel centre (odd).
    offset = 0.5 if int(np.floor(2.0 * half_width + 0.5)) % 2 else 0.0
    return (np.floor(pixel + 0.5) + offset).astype(pixel.dtype)


def _render_chunk(factors: np.ndarray, size: int) -> np.ndarray:
    scale = size / 96.0
    per_col, per_row = scale * _COL_PER_UNIT, scale * _ROW_PER_UNIT
    half_width = scale * _HALF_LINE_WIDTH

    def to_col(x):
        return (scale * _COL_OFFSET + per_col * x).astype(np.float32)[:, None, None]

    def to_row(y):
        return (scale * _ROW_OFFSET + per_row * (_Y_LIMITS[1] - y)).astype(np.float32)[:, None, None]

    # Artists are clipped to the axes box: only pixels whose centres lie inside it are drawn.
    box_cols = (scale * _COL_OFFSET, scale * _COL_OFFSET + per_col * (_X_LIMITS[1] - _X_LIMITS[0]))
    box_rows = (scale * _ROW_OFFSET, scale * _ROW_OFFSET + per_row * (_Y_LIMITS[1] - _Y_LIMITS[0]))

    theta, phi, length, position = factors.T
    pivot_col, pivot_row = to_col(np.full_like(theta, _PIVOT[0])), to_row(np.full_like(theta, _PIVOT[1]))
    bob_col = to_col(_PIVOT[0] + _ROD_LENGTH * np.sin(theta))
    bob_row = to_row(_PIVOT[1] - _ROD_LENGTH * np.cos(theta))
    sun_col = to_col(_PIVOT[0] + (_SUN_Y - _PIVOT[1]) * _cot(phi))
    sun_row = to_row(np.full_like(phi, _SUN_Y))
    start_col, end_col = to_col(position - 0.5 * length), to_col(position + 0.5 * length)
    ground_row = to_row(np.full_like(theta, _GROUND_Y))
    edge = scale * _HALF_EDGE_WIDTH
    bob_radii = (per_col * _BOB_RADIUS + edge, per_row * _BOB_RADIUS + edge)
    sun_radii = (per_col * _SUN_RADIUS + edge, per_row * _SUN_RADIUS + edge)
    # Like Agg, snap the vertices of horizontal and vertical strokes to the pixel grid.
    rectilinear = (pivot_col == bob_col) | (pivot_row == bob_row)
    pivot_col, bob_col, pivot_row, bob_row = (
        np.where(rectilinear, _snap(p, half_width), p) for p in (pivot_col, bob_col, pivot_row, bob_row)
    )
    start_col, end_col, ground_row = (_snap(p, half_width) for p in (start_col, end_col, ground_row))
    no_shadow = (length <= 0)[:, None, None]
    cap = 1.5 * half_width  # a butt-capped end reaches at most one half width (plus rounding) past its point

    # Each layer: signed distance function, colour slot in ``maps`` (None: black), and the bounding box
    # (over the chunk) it can touch.
    # Drawing order of the original: rod, bob, sun, shadow.
    layers = (
        (
            lambda col, row: _segment_distance(col, row, pivot_col, pivot_row, bob_col, bob_row, half_width),
            None,
            (np.minimum(pivot_col, bob_col) - cap, np.maximum(pivot_col, bob_col) + cap,
             np.minimum(pivot_row, bob_row) - cap, np.maximum(pivot_row, bob_row) + cap),
        ),
        (
            lambda col, row: _ellipse_distance(col, row, bob_col, bob_row, *bob_radii),
            1,
            (bob_col - bob_radii[0], bob_col + bob_radii[0], bob_row - bob_radii[1], bob_row + bob_radii[1]),
        ),
        (
            lambda col, row: _ellipse_distance(col, row, sun_col, sun_row, *sun_radii),
            2,
            (sun_col - sun_radii[0], sun_col + sun_radii[0], sun_row - sun_radii[1], sun_row + sun_radii[1]),
        ),
        (
            # A shadow of length 0 is not drawn at all (matplotlib draws nothing for a zero-length line; the
            # distance ramp would otherwise leave a 1-pixel smudge).
            lambda col, row: np.where(no_shadow, np.inf, _segment_distance(
                col, row, start_col, ground_row, end_col, ground_row, half_width)),
            None,
            (np.minimum(start_col, end_col) - cap, np.maximum(start_col, end_col) + cap,
             ground_row - cap, ground_row + cap),
        ),
    )
    # Opaque layers composited front to back: maps[0] is the white background's remaining weight, maps[1]
    # and maps[2] the weights of the firebrick bob and the orange sun; black contributes no colour.
    # The image is their colour-weighted sum (see _to_rgb), so the maps can be area-reduced first.
    maps = np.zeros((3, factors.shape[0], size, size), dtype=np.float32)
    maps[0] = 1.0
    for distance, slot, (col_lo, col_hi, row_lo, row_hi) in layers:
        # Only the window that some image of the chunk can touch is computed (1 px margin for the ramp).
        c0 = int(np.clip(np.floor(max(col_lo.min(), box_cols[0])) - 1, 0, size))
        c1 = int(np.clip(np.ceil(min(col_hi.max(), box_cols[1])) + 1, 0, size))
        r0 = int(np.clip(np.floor(max(row_lo.min(), box_rows[0])) - 1, 0, size))
        r1 = int(np.clip(np.ceil(min(row_hi.max(), box_rows[1])) + 1, 0, size))
        if c0 >= c1 or r0 >= r1:
            continue
        col = (np.arange(c0, c1, dtype=np.float32) + 0.5)[None, None, :]
        row = (np.arange(r0, r1, dtype=np.float32) + 0.5)[None, :, None]
        inside = (col >= box_cols[0]) & (col <= box_cols[1]) & (row >= box_rows[0]) & (row <= box_rows[1])
        alpha = _coverage(distance(col, row)) * inside
        window = maps[:, :, r0:r1, c0:c1]
        window *= 1.0 - alpha
        if slot is not None:
            window[slot] += alpha
    return maps


def _to_rgb(maps: np.ndarray) -> np.ndarray:
    colours = np.stack([np.ones(3, dtype=np.float32), _FIREBRICK, _ORANGE])
    return np.matmul(np.moveaxis(maps, 0, -1), colours).clip(0.0, 1.0)


def render(factors: ArrayLike, image_size: int = 64) -> np.ndarray:
    """Draw pendulum images from all four factors (any values, including intervened ones).

    The scene is drawn as in the original generator (RECIPE.md, section 3): white background; black rod
    (3 pt) from the pivot (10, 10.5) to the bob; firebrick bob of radius 1.5 at angle ``pendulum_angle``;
    orange sun of radius 3 at (10 + 10 cot(light_angle), 20.5), clipped at the top; black shadow line
    (3 pt) on the ground y = -0.5 from ``shadow_position - shadow_length / 2`` to
    ``shadow_position + shadow_length / 2``, drawn from the given values (not recomputed); a shadow of
    length 0 is not drawn (the shadow-free images of ``HOLDOUT_REGIONS["shadow_free"]``). All in a plot
    window x in [0, 20], y in [-1, 21] placed like a 1-inch matplotlib figure with default margins, drawn
    in the original order (rod, bob, sun, shadow), clipped to the axes box.

    Images are drawn at the original 96 x 96 pixels and, for 64 and 32, reduced by area averaging.
    Anti-aliasing: each edge gets a 1-pixel linear ramp of the signed distance from the pixel centre;
    like Agg, the discs carry matplotlib's default 1 pt edge, the rod and shadow have flat (butt) ends,
    and horizontal or vertical strokes are snapped to the pixel grid. Against matplotlib's Agg rendering
    of the recipe the mean absolute pixel difference is about 3e-4 at 96 pixels (the differences are
    confined to anti-aliased edge pixels). Deterministic and vectorized (thousands of images per second).

    Parameters
    ----------
    factors : array_like, shape (N, 4) or (4,)
        (pendulum angle [rad], light angle [rad] in (0, pi), shadow length >= 0, shadow position).
    image_size : {96, 64, 32}
        Side of the square image in pixels.

    Returns
    -------
    numpy.ndarray, shape (N, image_size, image_size, 3) or (image_size, image_size, 3)
        RGB images, float32 in [0, 1].

    Raises
    ------
    ValueError
        If ``factors`` has the wrong shape or non-finite values, a light angle is outside (0, pi), a
        shadow length is negative, or ``image_size`` is not allowed.
    """
    size = _check_image_size(image_size)
    array = _as_factors(factors)
    batch = np.atleast_2d(array)
    if not np.all(np.isfinite(batch)):
        raise ValueError("factors must be finite; got NaN or infinity.")
    if np.any(batch[:, 2] < 0):
        raise ValueError("shadow_length (column 2 of factors) must be >= 0; the data set's lengths are in [3, 12.6].")
    images = np.empty((batch.shape[0], size, size, 3), dtype=np.float32)
    for k in range(0, batch.shape[0], _CHUNK):
        maps = _render_chunk(batch[k : k + _CHUNK], _NATIVE_SIZE)
        images[k : k + _CHUNK] = _to_rgb(_area_reduce(_area_reduce(maps, 2, size), 3, size))
    return images[0] if array.ndim == 1 else images


def _area_reduce(images: np.ndarray, axis: int, size: int) -> np.ndarray:
    # Area resampling of 96 pixels along ``axis`` to ``size``: every 3 source pixels
    # (a, b, c) become 1 pixel (a + b + c) / 3 for size 32, or 2 pixels ((2a + b) / 3, (b + 2c) / 3) for 64.
    if size == _NATIVE_SIZE:
        return images
    shape = list(images.shape)
    groups = images.reshape(shape[:axis] + [_NATIVE_SIZE // 3, 3] + shape[axis + 1 :])
    index = [slice(None)] * groups.ndim
    a, b, c = (groups[tuple(index[: axis + 1] + [t])] for t in range(3))
    per_group = 1 if size == 32 else 2
    out = np.empty(shape[:axis] + [_NATIVE_SIZE // 3, per_group] + shape[axis + 1 :], dtype=images.dtype)
    first, second = (out[tuple(index[: axis + 1] + [t])] for t in range(per_group)) if per_group == 2 else (
        out[tuple(index[: axis + 1] + [0])], None)
    if second is None:
        np.add(a, b, out=first)
        first += c
        first *= 1 / 3
    else:
        np.multiply(a, 2 / 3, out=first)
        first += b * (1 / 3)
        np.multiply(c, 2 / 3, out=second)
        second += b * (1 / 3)
    shape[axis] = size
    return out.reshape(shape)


def _check_image_size(image_size) -> int:
    if isinstance(image_size, bool) or image_size not in IMAGE_SIZES:
        raise ValueError(
            f"image_size={image_size!r} is not available. Valid: {', '.join(map(str, IMAGE_SIZES))} "
            "(96 is the original resolution)."
        )
    return int(image_size)


@dataclass(frozen=True, repr=False)
class PendulumDataset(Dataset):
    """The pendulum data set with oracle access to its renderer and its true structural causal model.

    Attributes
    ----------
    image_size : int
        Side of the images in pixels; :meth:`observations_from_factors` renders at this size.
    """

    image_size: int = 64

    @property
    def factor_names(self) -> tuple[str, ...]:
        """Names of the factor columns: pendulum angle, light angle, shadow length, shadow position."""
        return FACTOR_NAMES

    @property
    def graph(self) -> np.ndarray:
        """True 4 x 4 adjacency; entry [i, j] = 1 for the edge factor i -> factor j (causes -> effects)."""
        return GRAPH.copy()

    def observations_from_factors(self, factors: ArrayLike) -> np.ndarray:
        """Render images from any factor values (see :func:`render`), at this data set's size."""
        return render(factors, self.image_size)

    def effects_from_causes(
        self, pendulum_angle: ArrayLike, light_angle: ArrayLike
    ) -> tuple[np.ndarray, np.ndarray]:
        """The noise-free structural equations: (shadow length, shadow position); see :func:`structural_effects`."""
        return structural_effects(pendulum_angle, light_angle)

    def intervene(
        self, factors: ArrayLike, do: Mapping[str, ArrayLike], *, noise: ArrayLike | None = None
    ) -> np.ndarray:
        """Apply ``do()`` on the true SCM (see :func:`intervene`)."""
        return intervene(factors, do, noise=noise)


def holdout_region(region: str | Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """A hold-out region as a box ``{factor: (low, high)}`` (scene units), checked against the factors' domain.

    Parameters
    ----------
    region : str or mapping
        A name in :data:`HOLDOUT_REGIONS` or a box ``{factor name: (low, high)}`` with low < high.

    Raises
    ------
    ValueError
        If the name is unknown (the valid ones are listed), a factor is not a factor name, a bound pair is not
        (low, high) with low < high, or the box lies outside the factor's domain (:data:`FACTOR_DOMAIN`).
    """
    if isinstance(region, str):
        if region not in HOLDOUT_REGIONS:
            raise ValueError(
                f"holdout region {region!r} is unknown. Valid: {', '.join(map(repr, HOLDOUT_REGIONS))}, or a box "
                "{factor: (low, high)} such as {'light_angle': (1.0, 1.3)}."
            )
        return dict(HOLDOUT_REGIONS[region])
    if not isinstance(region, Mapping) or not region:
        raise ValueError(
            f"holdout region must be a name ({', '.join(map(repr, HOLDOUT_REGIONS))}) or a non-empty box "
            f"{{factor: (low, high)}}; got {region!r}."
        )
    box = {}
    for name, bounds in region.items():
        if name not in FACTOR_NAMES:
            raise ValueError(
                f"holdout region names unknown factor {name!r}. Valid: {', '.join(FACTOR_NAMES)}; for example "
                "{'light_angle': (1.0, 1.3)}."
            )
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise ValueError(f"holdout region: {name} must be a (low, high) pair of numbers; got {bounds!r}.") from None
        lo_dom, hi_dom = FACTOR_DOMAIN[name]
        if not low < high:
            raise ValueError(f"holdout region: {name} needs low < high; got ({low:g}, {high:g}).")
        if high <= lo_dom or low >= hi_dom:
            raise ValueError(
                f"holdout region: {name} = [{low:g}, {high:g}) lies outside the factor's range [{lo_dom:g}, "
                f"{hi_dom:g}] ({'radians' if 'angle' in name else 'scene units'}); the data's own values are in "
                f"HOLDOUT_REGIONS / load(split='all').truth['factors']. Give a box that overlaps the range."
            )
        box[name] = (low, high)
    return box


def in_region(factors: ArrayLike, region: str | Mapping[str, tuple[float, float]]) -> np.ndarray:
    """Boolean ``(N,)``: whether each row of ``factors`` lies in the hold-out region (low <= value < high for
    every factor of the box)."""
    array = np.atleast_2d(_as_factors(factors))
    box = holdout_region(region)
    inside = np.ones(len(array), dtype=bool)
    for name, (low, high) in box.items():
        column = array[:, FACTOR_NAMES.index(name)]
        inside &= (column >= low) & (column < high)
    return inside


def _holdout_regions(holdout) -> tuple:
    if holdout is None:
        return ()
    if isinstance(holdout, (str, Mapping)):
        return (holdout,)
    if isinstance(holdout, (list, tuple)):
        return tuple(holdout)
    raise ValueError(
        f"holdout must be None, a region name ({', '.join(map(repr, HOLDOUT_REGIONS))}), a box {{factor: (low, "
        f"high)}} or a list of these; got {holdout!r}."
    )


def load(
    *,
    image_size: Literal[96, 64, 32] = 64,
    split: Literal["train", "test", "all"] = "train",
    effect_noise: float = 0.0,
    seed: int = 0,
    holdout: str | Mapping[str, tuple[float, float]] | Sequence | None = None,
) -> PendulumDataset:
    """Generate the CausalVAE pendulum images on the original factor grid.

    The grid has 84 pendulum angles ``i * pi / 200`` (i = -40 ... 43) times 87 light angles ``j * pi / 200``
    (j = 60 ... 147 except 100), 7308 images in the original order (i outer, j inner). The split is the
    original one: image k (0-based) is a test image if k > 0 and k % 4 == 0, giving 5482 train and 1826
    test images. Shadow length and position follow :func:`structural_effects`.

    Parameters
    ----------
    image_size : {64, 96, 32}
        Image side in pixels (96 is the original; 64 and 32 are the 96-pixel images reduced by area
        averaging).
    split : {"train", "test", "all"}
        Which images to return.
    effect_noise : float
        Standard deviation of Gaussian exogenous noise added to shadow length (before its clamp at 3)
        and shadow position, in scene units; 0 (default) is the original, noise-free data.
    seed : int
        Seed of the effect noise (the grid itself is fixed).
    holdout : str, mapping, list of these, or None
        Regions removed from the returned images: names in :data:`HOLDOUT_REGIONS` (``"shadow_free"``,
        ``"angle_block"``, ``"extrapolation"``) or boxes ``{factor: (low, high)}`` in scene units; an image is
        removed when its factors (after the effect noise) lie in any of them. For training on part of the
        factor space and intervening into the rest. ``info["held_out"]`` counts the removed images.

    Returns
    -------
    PendulumDataset
        ``data = {"x": (N, H, W, 3) float32 in [0, 1], "u": (N, 4) float32}``, where ``u`` are the concept
        labels as CausalVAE uses them: ``(i, j, trunc(shadow_length), trunc(shadow_position))``
        normalised as ``(label - (0, 100, 6.5, 10)) / (44, 40, 3.5, 5)``.
        ``truth = {"factors": (N, 4) float64 (pendulum angle [rad], light angle [rad], shadow length,
        shadow position [scene units]), "grid_index": (N, 2) int (i, j), "effect_noise": (N, 2)}``.
        Oracles: ``ds.factor_names``, ``ds.graph``, ``ds.observations_from_factors``,
        ``ds.effects_from_causes``, ``ds.intervene``.

    Raises
    ------
    ValueError
        If ``image_size`` or ``split`` is not one of the valid values, ``effect_noise`` is negative, or a hold-out
        region is unknown or outside the factors' range (see :func:`holdout_region`), or removes every image.
    TypeError
        If ``seed`` is not an integer or ``effect_noise`` not a number.

    Notes
    -----
    The original images are 96 x 96 RGBA PNGs with an opaque alpha channel; ``x`` drops the constant
    alpha. Rendering differs from matplotlib's only in anti-aliasing details (see :func:`render`).

    References
    ----------
    Yang, Liu, Chen, Shen, Hao, Wang (2021). CausalVAE: Disentangled representation learning via neural
    structural causal models. CVPR.

    Examples
    --------
    >>> ds = load(image_size=32, split="test")
    >>> ds.data["x"].shape, ds.truth["factors"].shape
    ((1826, 32, 32, 3), (1826, 4))
    """
    size = _check_image_size(image_size)
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not a split. Valid: {', '.join(map(repr, SPLITS))}.")
    if isinstance(effect_noise, bool) or not isinstance(effect_noise, numbers.Real):
        raise TypeError(f"effect_noise must be a number, got {effect_noise!r}; for example effect_noise=0.5.")
    if not effect_noise >= 0:
        raise ValueError(f"effect_noise must be >= 0 (a standard deviation), got {effect_noise!r}.")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}; for example seed=0.")
    regions = _holdout_regions(holdout)
    boxes = [holdout_region(r) for r in regions]  # checked before anything is drawn

    i, j = (a.ravel() for a in np.meshgrid(PENDULUM_INDEX, LIGHT_INDEX, indexing="ij"))
    theta, phi = i * np.pi / 200, j * np.pi / 200
    noise = np.random.default_rng(seed).standard_normal((i.size, 2)) * float(effect_noise)
    length, position = structural_effects(theta, phi, noise)
    factors = np.stack([theta, phi, length, position], axis=1)
    k = np.arange(i.size)
    is_test = (k > 0) & (k % 4 == 0)
    keep = {"train": ~is_test, "test": is_test, "all": np.ones_like(is_test)}[split]
    removed = np.zeros_like(keep)
    for box in boxes:
        removed |= in_region(factors, box)
    held_out = int(np.count_nonzero(keep & removed))
    keep = keep & ~removed
    if not keep.any():
        raise ValueError(f"holdout={holdout!r} removes every image of split={split!r}; give a smaller region.")

    labels = np.stack([i, j, np.trunc(length), np.trunc(position)], axis=1)
    u = ((labels - LABEL_CENTER) / LABEL_SCALE).astype(np.float32)
    return PendulumDataset(
        name="pendulum",
        data={"x": render(factors[keep], size), "u": u[keep]},
        truth={
            "factors": factors[keep],
            "grid_index": np.stack([i, j], axis=1)[keep],
            "effect_noise": noise[keep],
        },
        info={
            "settings": dict(image_size=size, split=split, effect_noise=float(effect_noise), seed=seed,
                             holdout=[r if isinstance(r, str) else dict(r) for r in regions] or None),
            "held_out": held_out,
            "factor_names": FACTOR_NAMES,
            "label_center": LABEL_CENTER,
            "label_scale": LABEL_SCALE,
            "source": "CausalVAE pendulum (Yang et al. 2021), re-implemented from ppzoo/data/validation/"
            "pendulum/RECIPE.md (huawei-noah/trustworthyAI research/CausalVAE/causal_data/pendulum.py)",
        },
        image_size=size,
    )
