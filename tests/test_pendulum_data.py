"""Tests of the CausalVAE pendulum data set against ppzoo/data/validation/pendulum/RECIPE.md."""

import numpy as np
import pytest

import ppzoo.data
from ppzoo.data import Dataset
from ppzoo.data.pendulum import FACTOR_NAMES, PendulumDataset, intervene, load, render, structural_effects


@pytest.fixture(scope="module")
def full():
    return load(image_size=32, split="all")


@pytest.fixture(scope="module")
def held_out_split():
    return ppzoo.data.load("pendulum", image_size=32, split="test")


def test_grid_order_and_labels(full):
    i, j = full.truth["grid_index"].T
    factors = full.truth["factors"]
    assert isinstance(full, PendulumDataset) and isinstance(full, Dataset)
    assert factors.shape == (7308, 4) and factors.dtype == np.float64
    # RECIPE 1: i = -40..43 outer loop, j = 60..147 without 100 inner loop.
    np.testing.assert_array_equal(np.unique(i), np.arange(-40, 44))
    np.testing.assert_array_equal(np.unique(j), np.setdiff1d(np.arange(60, 148), [100]))
    np.testing.assert_array_equal(i[:87], -40)
    np.testing.assert_array_equal(j[:3], [60, 61, 62])
    np.testing.assert_array_equal(factors[:, 0], i * np.pi / 200)
    np.testing.assert_array_equal(factors[:, 1], j * np.pi / 200)
    # RECIPE 4: labels (i, j, trunc(shade), trunc(mid)) normalised by c = (0, 100, 6.5, 10), s = (44, 40, 3.5, 5).
    raw = full.data["u"].astype(np.float64) * [44, 40, 3.5, 5] + [0, 100, 6.5, 10]
    expected = np.column_stack([i, j, np.trunc(factors[:, 2]), np.trunc(factors[:, 3])])
    np.testing.assert_allclose(raw, expected, atol=1e-4)  # float32 labels
    assert full.factor_names == FACTOR_NAMES


def test_recipe_ranges_and_correlations(full):
    i, j = full.truth["grid_index"].T
    theta, phi, shade, mid = full.truth["factors"].T
    # Numbers quoted in RECIPE 2 (to their printed precision).
    assert shade.min() == 3.0 and round(shade.max(), 2) == 12.58
    assert round(mid.min(), 2) == 2.01 and round(mid.max(), 2) == 19.61
    assert round(np.mean(shade == 3.0), 3) == 0.396
    sun = 10 + 10 / np.tan(phi)
    assert round(sun.min(), 2) == 0.90 and round(sun.max(), 2) == 17.27
    corr = [np.corrcoef(a, b)[0, 1] for a, b in [(i, mid), (j, mid), (i, shade), (j, shade)]]
    np.testing.assert_allclose(corr, [0.51, 0.86, -0.07, 0.11], atol=0.005)


def test_split_sizes_and_membership(full, held_out_split):
    assert held_out_split.data["x"].shape == (1826, 32, 32, 3)
    k = np.arange(7308)
    is_test = (k > 0) & (k % 4 == 0)  # 5th image, then every 4th
    np.testing.assert_array_equal(held_out_split.truth["factors"], full.truth["factors"][is_test])
    np.testing.assert_array_equal(held_out_split.data["x"], full.data["x"][is_test])
    train = load(image_size=32, split="train")
    assert len(train.data["x"]) == 5482
    np.testing.assert_array_equal(train.truth["grid_index"], full.truth["grid_index"][~is_test])


def test_images_are_deterministic_rgb_in_unit_interval(full):
    x = full.data["x"]
    assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
    # Rendering again (in different chunks) gives the same pixels: no hidden state.
    np.testing.assert_array_equal(full.observations_from_factors(full.truth["factors"][100:400]), x[100:400])


def test_structural_equations_match_the_projection_geometry(full):
    theta, phi, shade, mid = full.truth["factors"].T

    def project(x, y, height=-0.5):  # follow the light ray through (x, y) to the given height
        return x + (height - y) / np.tan(phi)

    a = project(10.0, 10.5)
    b = project(10 + 9.5 * np.sin(theta), 10.5 - 9.5 * np.cos(theta))
    np.testing.assert_allclose(mid, (a + b) / 2, atol=1e-12)
    np.testing.assert_allclose(shade, np.maximum(3, np.abs(b - a)), atol=1e-12)
    np.testing.assert_array_equal(np.column_stack(full.effects_from_causes(theta, phi)), full.truth["factors"][:, 2:])


def test_interventions_follow_the_graph(full):
    graph = full.graph
    np.testing.assert_array_equal(graph, [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    factors = full.truth["factors"][::97]
    new_values = {"pendulum_angle": 0.3, "light_angle": 0.7 * np.pi, "shadow_length": 7.0, "shadow_position": 4.0}
    for node, name in enumerate(FACTOR_NAMES):
        after = full.intervene(factors, {name: new_values[name]})
        changed = np.any(after != factors, axis=0)
        descendants = np.flatnonzero(graph[node])
        assert set(np.flatnonzero(changed)) == {node, *descendants}, name
        np.testing.assert_array_equal(after[:, node], new_values[name])
    # Intervening on a cause recomputes the effects by the true law at the new cause values.
    after = full.intervene(factors, {"pendulum_angle": 0.3})
    length, position = structural_effects(0.3, factors[:, 1])
    np.testing.assert_array_equal(after[:, 2], length)
    np.testing.assert_array_equal(after[:, 3], position)
    # An intervened effect keeps its set value even when its causes are intervened on too.
    both = intervene(factors, {"light_angle": 1.2, "shadow_length": 9.0})
    np.testing.assert_array_equal(both[:, 2], 9.0)
    np.testing.assert_array_equal(both[:, 3], structural_effects(factors[:, 0], 1.2)[1])
    np.testing.assert_array_equal(both[:, 0], factors[:, 0])


def test_effect_noise_and_counterfactuals():
    ds = load(image_size=32, split="test", effect_noise=0.5, seed=1)
    factors, noise = ds.truth["factors"], ds.truth["effect_noise"]
    clean = np.column_stack(structural_effects(factors[:, 0], factors[:, 1]))
    np.testing.assert_allclose(factors[:, 3] - clean[:, 1], noise[:, 1], atol=1e-12)
    k = np.arange(7308)
    expected = 0.5 * np.random.default_rng(1).standard_normal((7308, 2))[(k > 0) & (k % 4 == 0)]
    np.testing.assert_array_equal(noise, expected)  # deterministic in the seed
    # Abduction-action-prediction with the unit's own noise reproduces the unit (do(theta = theta)).
    same = intervene(factors, {"pendulum_angle": factors[:, 0]}, noise=noise)
    np.testing.assert_allclose(same, factors, atol=1e-12)


def test_each_factor_changes_the_image_where_it_should():
    base = np.array([0.1, 0.6 * np.pi, *structural_effects(0.1, 0.6 * np.pi)])
    image = render(base, 96)
    # Rows (96 px, from the top): sun up to y = 17.5 -> row 24; shadow at y = -0.5 -> rows 81..86.
    regions = {
        "pendulum_angle": slice(25, 80),
        "light_angle": slice(0, 25),
        "shadow_length": slice(80, 88),
        "shadow_position": slice(80, 88),
    }
    for k, name in enumerate(FACTOR_NAMES):
        changed = base.copy()
        changed[k] += 0.3 if k < 2 else 2.0  # factor edited directly, causes and effects left as they are
        diff = np.abs(render(changed, 96) - image).max(axis=(1, 2))
        inside = np.zeros(96, dtype=bool)
        inside[regions[name]] = True
        assert diff[inside].max() > 0.5, name  # a whole object moved
        assert diff[~inside].max() == 0.0, name  # nothing else did


def test_render_matches_matplotlib_agg_of_the_recipe():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def agg(theta, phi, shade, mid):  # RECIPE 3, drawn with matplotlib as the original generator does
        fig = plt.figure(figsize=(1.0, 1.0), dpi=96)
        ax = fig.gca()
        bob = (10 + 8 * np.sin(theta), 10.5 - 8 * np.cos(theta))
        ax.add_artist(plt.Polygon([[10, 10.5], list(bob)], color="black", linewidth=3))
        ax.add_artist(plt.Circle(bob, 1.5, color="firebrick"))
        ax.add_artist(plt.Circle((10 + 10 / np.tan(phi), 20.5), 3, color="orange"))
        ax.add_artist(plt.Polygon([[mid - shade / 2, -0.5], [mid + shade / 2, -0.5]], color="black", linewidth=3))
        ax.set_xlim(0, 20)
        ax.set_ylim(-1, 21)
        ax.axis("off")
        fig.canvas.draw()
        pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3] / 255.0
        plt.close(fig)
        return pixels

    i, j = np.array([-40, 0, 17, 43]), np.array([60, 101, 99, 147])
    theta, phi = i * np.pi / 200, j * np.pi / 200
    factors = np.column_stack([theta, phi, *structural_effects(theta, phi)])
    ours = render(factors, 96)
    for k in range(len(factors)):
        # Measured 3e-4 to 7e-4: the renderers differ only on anti-aliased edge pixels.
        assert np.abs(ours[k] - agg(*factors[k])).mean() < 2e-3


def test_smaller_sizes_are_area_averages_of_the_original():
    factors = np.array([[0.2, 1.1, 5.0, 8.0], [-0.5, 2.0, 3.0, 15.0]])
    native = render(factors, 96).astype(np.float64)
    np.testing.assert_allclose(render(factors, 32), native.reshape(2, 32, 3, 32, 3, 3).mean(axis=(2, 4)), atol=1e-6)
    # 96 -> 64: every 3 pixels (a, b, c) become ((2a + b) / 3, (b + 2c) / 3), along rows and columns.
    weights = np.array([[2, 1, 0], [0, 1, 2]]) / 3
    block = np.kron(np.eye(32), weights)  # (64, 96)
    expected = np.einsum("ij,njkc,lk->nilc", block, native, block, optimize=True)
    np.testing.assert_allclose(render(factors, 64), expected, atol=1e-6)
    assert render(factors[0], 64).shape == (64, 64, 3)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: load(image_size=48), r"image_size=48 is not available. Valid: 96, 64, 32"),
        (lambda: load(split="val"), r"split='val' is not a split. Valid: 'train', 'test', 'all'"),
        (lambda: load(effect_noise=-0.1), r"effect_noise must be >= 0"),
        (lambda: structural_effects(0.0, 0.0), r"light_angle must lie strictly between 0 and pi"),
        (lambda: structural_effects(0.0, 3.5), r"light_angle must lie strictly between 0 and pi"),
        (lambda: render(np.zeros((2, 3))), r"factors must have shape \(N, 4\)"),
        (lambda: render([0.0, 1.0, np.nan, 5.0]), r"factors must be finite"),
        (lambda: render([0.0, 1.0, -1.0, 5.0]), r"shadow_length \(column 2 of factors\) must be >= 0"),
        (lambda: intervene([0.0, 1.0, 5.0, 5.0], {"shadow": 1.0}), r"do has unknown factor\(s\) 'shadow'. Valid"),
        (lambda: intervene([0.0, 1.0, 5.0, 5.0], {"light_angle": -1.0}), r"light_angle must lie strictly"),
    ],
)
def test_invalid_inputs_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_invalid_types_raise_type_error():
    with pytest.raises(TypeError, match="effect_noise must be a number"):
        load(effect_noise="0.1")
    with pytest.raises(TypeError, match="seed must be an integer"):
        load(seed=None)
