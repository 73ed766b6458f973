"""Tests of the procedural dSprites-style shapes data set and its ground-truth oracle."""

import numpy as np
import pytest

from ppzoo.data import shapes
from ppzoo.data._dataset import Dataset


@pytest.fixture(scope="module")
def ds64():
    return shapes.load(image_size=64, num_data=200, seed=0)


@pytest.fixture(scope="module")
def ds32():
    return shapes.load(image_size=32, num_data=200, seed=0)


def test_factor_grid_matches_dsprites(ds64):
    assert ds64.factor_names == ("shape", "scale", "orientation", "position_x", "position_y")
    assert ds64.factor_sizes == (3, 6, 40, 32, 32)
    values = ds64.factor_values
    np.testing.assert_array_equal(values[0], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(values[1], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    np.testing.assert_allclose(np.diff(values[2]), 2 * np.pi / 40)
    assert values[2][0] == 0.0 and values[2][-1] < 2 * np.pi
    for column in (3, 4):
        np.testing.assert_allclose(values[column], np.linspace(0, 1, 32))
    assert ds64.info["factor_names"] == list(ds64.factor_names)
    assert ds64.info["factor_sizes"] == list(ds64.factor_sizes)


@pytest.mark.parametrize("size", [32, 64])
def test_load_shapes_types_and_truth(size, ds32, ds64):
    ds = {32: ds32, 64: ds64}[size]
    assert isinstance(ds, Dataset) and isinstance(ds, shapes.ShapesDataset)
    x = ds.data["x"]
    assert set(ds.data) == {"x"}
    assert x.shape == (200, size, size) and x.dtype == np.float32
    assert set(np.unique(x)) == {0.0, 1.0}
    indices, factors = ds.truth["factor_indices"], ds.truth["factors"]
    assert indices.shape == factors.shape == (200, 5) and np.issubdtype(indices.dtype, np.integer)
    assert np.all(indices >= 0) and np.all(indices < np.array(ds.factor_sizes))
    np.testing.assert_array_equal(factors, ds.factors_from_indices(indices))
    # The stored images are exactly what the oracle renders for the stored factors.
    np.testing.assert_array_equal(x, ds.observations_from_factors(indices))
    assert ds.info["image_size"] == size and ds.image_size == size


def test_every_image_shows_a_sprite_inside_the_frame(ds64):
    x = ds64.data["x"]
    assert np.all(x.sum((1, 2)) > 0)
    border = x[:, 0].sum() + x[:, -1].sum() + x[:, :, 0].sum() + x[:, :, -1].sum()
    # Sprites stay inside: at most a corner of a rotated square at scale 1 touches the border, so border
    # pixels are well under 1% of the sprite pixels.
    assert border < 0.01 * x.sum()


def test_each_factor_changes_the_image_at_64(ds64):
    base = ds64.sample_factors(0, 300)
    images = ds64.observations_from_factors(base)
    for column, size in enumerate(ds64.factor_sizes):
        moved = base.copy()
        moved[:, column] = (moved[:, column] + 1) % size
        changed = np.any(ds64.observations_from_factors(moved) != images, axis=(1, 2))
        # At 64 x 64 one grid step of any factor moves at least one pixel boundary (checked over 3000 draws).
        assert changed.all(), ds64.factor_names[column]


def test_each_factor_changes_most_images_at_32(ds32):
    base = ds32.sample_factors(0, 1000)
    images = ds32.observations_from_factors(base)
    for column, size in enumerate(ds32.factor_sizes):
        moved = base.copy()
        moved[:, column] = (moved[:, column] + 1) % size
        changed = np.any(ds32.observations_from_factors(moved) != images, axis=(1, 2))
        # At 32 x 32 one step (0.6 px of position, 9 degrees) can stay inside a pixel for small sprites and
        # the square repeats every quarter turn; about 2% of steps are invisible, allow 5%.
        assert changed.mean() >= 0.95, ds32.factor_names[column]


def test_geometry_areas_and_positions(ds64):
    # Rendered areas at scale 1 match the analytic areas of the shapes (radius 0.18 of 64 px): square of
    # half side 0.75, ellipse with semi-axes 1 and 0.5, heart curve area 3.6595 / 1.14^2; pixelisation
    # changes the count by a few percent.
    radius = 0.18 * 64
    expected = np.array([(1.5 * radius) ** 2, np.pi * 0.5 * radius**2, 3.6595 / 1.14**2 * radius**2])
    images = ds64.observations_from_factors([[shape, 5, 0, 16, 16] for shape in range(3)])
    np.testing.assert_allclose(images.sum((1, 2)), expected, rtol=0.05)
    # At scale 0.5 the area is a quarter; the sprites are only ~9 px wide, so rounding to whole pixels
    # changes the count by up to ~10% (the square's 8.64 px side covers 9 pixels: +8.5%).
    small = ds64.observations_from_factors([[shape, 0, 0, 16, 16] for shape in range(3)])
    np.testing.assert_allclose(small.sum((1, 2)), expected / 4, rtol=0.1)
    # position_x moves the sprite left to right, position_y top to bottom, over [0.2, 0.8] of the frame.
    grid = np.arange(64) + 0.5
    row = ds64.observations_from_factors([[2, 5, 0, p, 16] for p in range(32)])
    column = ds64.observations_from_factors([[2, 5, 0, 16, p] for p in range(32)])
    centre_x = (row * grid[None, None, :]).sum((1, 2)) / row.sum((1, 2))
    centre_y = (column * grid[None, :, None]).sum((1, 2)) / column.sum((1, 2))
    assert np.all(np.diff(centre_x) > 0) and np.all(np.diff(centre_y) > 0)
    # The heart is symmetric left-right at orientation 0, so its centroid x is the centre exactly (up to
    # one pixel of rasterisation).
    np.testing.assert_allclose(centre_x[[0, -1]], [0.2 * 64, 0.8 * 64], atol=1.0)


def test_32_is_the_same_geometry_as_64(ds32, ds64):
    indices = ds64.sample_factors(1, 200)
    big = ds64.observations_from_factors(indices)
    small = ds32.observations_from_factors(indices)
    pooled = big.reshape(200, 32, 2, 32, 2).mean((2, 4))
    # Each 32-px pixel centre is the middle of its 2 x 2 block of 64-px pixel centres, so where the whole
    # block is inside a (locally convex) shape, or outside it, the 32-px pixel is too. Only the heart's
    # notch and cusp are not convex; allow 1% disagreement for them.
    determined = (pooled == 1.0) | (pooled == 0.0)
    assert np.mean(small[determined] == pooled[determined]) >= 0.99
    assert determined.mean() > 0.9


def test_determinism_and_seeds():
    a = shapes.load(image_size=32, num_data=50, seed=3)
    b = shapes.load(image_size=32, num_data=50, seed=3)
    c = shapes.load(image_size=32, num_data=50, seed=4)
    np.testing.assert_array_equal(a.data["x"], b.data["x"])
    np.testing.assert_array_equal(a.truth["factor_indices"], b.truth["factor_indices"])
    assert not np.array_equal(a.truth["factor_indices"], c.truth["factor_indices"])
    np.testing.assert_array_equal(a.sample_factors(7, 20), a.sample_factors(np.random.default_rng(7), 20))


def test_sample_factors_is_uniform_over_the_grid(ds32):
    draws = ds32.sample_factors(np.random.default_rng(0), 20000)
    assert draws.shape == (20000, 5) and np.issubdtype(draws.dtype, np.integer)
    for column, size in enumerate(ds32.factor_sizes):
        counts = np.bincount(draws[:, column], minlength=size)
        assert counts.size == size and counts.min() > 0
        # Mean index of a uniform draw is (size - 1) / 2 with standard error sd / sqrt(n); allow 4 SE.
        se = np.sqrt((size**2 - 1) / 12 / 20000)
        assert abs(draws[:, column].mean() - (size - 1) / 2) < 4 * se


def test_generator_advances_and_jax_keys_work(ds32):
    rng = np.random.default_rng(0)
    first, second = ds32.sample_factors(rng, 10), ds32.sample_factors(rng, 10)
    assert not np.array_equal(first, second)
    jax = pytest.importorskip("jax")
    from_new = ds32.sample_factors(jax.random.key(0), 10)
    from_raw = ds32.sample_factors(jax.random.PRNGKey(0), 10)
    np.testing.assert_array_equal(from_new, from_raw)
    np.testing.assert_array_equal(from_new, ds32.sample_factors(jax.random.key(0), 10))
    with pytest.raises(ValueError, match="single JAX key"):
        ds32.sample_factors(jax.random.split(jax.random.key(0), 2), 10)


def test_registry_and_default_size():
    import ppzoo.data

    ds = ppzoo.data.load("shapes", num_data=3, seed=1)
    assert ds.data["x"].shape == (3, 32, 32)
    np.testing.assert_array_equal(ds.data["x"], shapes.load(num_data=3, seed=1).data["x"])


def test_sample_returns_factors_and_their_images(ds32):
    indices, images = ds32.sample(0, 5)
    np.testing.assert_array_equal(images, ds32.observations_from_factors(indices))


@pytest.mark.parametrize("image_size", [48, 28, "64", True])
def test_bad_image_size(image_size):
    with pytest.raises(ValueError, match="`image_size` must be 32 or 64"):
        shapes.load(image_size=image_size, num_data=4)


def test_bad_image_size_of_a_hand_made_oracle():
    with pytest.raises(ValueError, match="`image_size` must be 32 or 64"):
        shapes.ShapesDataset(name="shapes", data={}, image_size=16)


@pytest.mark.parametrize("num_data", [0, -3, 2.5, True])
def test_bad_num_data(num_data):
    with pytest.raises(ValueError, match="`num_data` must be a positive int"):
        shapes.load(num_data=num_data)


def test_bad_factor_indices(ds32):
    with pytest.raises(ValueError, match=r"must have shape \(n, 5\)"):
        ds32.observations_from_factors(np.zeros((3, 4), dtype=int))
    with pytest.raises(ValueError, match=r"must have shape \(n, 5\)"):
        ds32.observations_from_factors(np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match=r"column 2 \(orientation\) must lie in \[0, 39\]"):
        ds32.observations_from_factors([[0, 0, 40, 0, 0]])
    with pytest.raises(ValueError, match=r"column 0 \(shape\) must lie in \[0, 2\]"):
        ds32.observations_from_factors([[-1, 0, 0, 0, 0]])
    with pytest.raises(TypeError, match="integer grid indices"):
        ds32.observations_from_factors([[0, 0.5, 0, 0, 0]])
    # Integer-valued floats are accepted as indices.
    np.testing.assert_array_equal(
        ds32.observations_from_factors([[1.0, 2.0, 3.0, 4.0, 5.0]]),
        ds32.observations_from_factors([[1, 2, 3, 4, 5]]),
    )


def test_bad_keys_and_counts(ds32):
    with pytest.raises(TypeError, match="`key` must be an int seed"):
        ds32.sample_factors("zero", 3)
    with pytest.raises(TypeError, match="`key` must be an int seed"):
        ds32.sample_factors(True, 3)
    with pytest.raises(ValueError, match="non-negative int seed"):
        ds32.sample_factors(-1, 3)
    with pytest.raises(ValueError, match="`num` must be a non-negative int"):
        ds32.sample_factors(0, -1)
    assert shapes.as_generator(np.random.default_rng(0)).integers(10) == np.random.default_rng(0).integers(10)
