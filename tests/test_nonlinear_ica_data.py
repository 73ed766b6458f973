"""Tests of the nonlinear ICA simulator (iVAE / TCL data)."""

import numpy as np
import pytest

import ppzoo.data
from ppzoo.data import nonlinear_ica
from ppzoo.data.nonlinear_ica import condition_threshold, load, mix, unmix

SMALL = dict(num_segments=8, points_per_segment=300)


def test_default_sizes_shapes_and_segments():
    ds = load()
    x, u, z = ds.data["x"], ds.data["u"], ds.truth["z"]
    # Paper defaults: 5 sources, 40 segments x 1000 points, 3 layers.
    assert x.shape == (40_000, 5) and x.dtype == np.float32
    assert z.shape == (40_000, 5)
    assert u.shape == (40_000,) and np.issubdtype(u.dtype, np.integer)
    np.testing.assert_array_equal(u, np.repeat(np.arange(40), 1000))
    np.testing.assert_array_equal(ds.truth["u_onehot"].argmax(1), u)
    np.testing.assert_array_equal(ds.truth["u_onehot"].sum(1), 1)
    assert len(ds.info["mixing_weights"]) == 3
    assert ds.truth["segment_scales"].shape == (40, 5)
    scales = ds.truth["segment_scales"]
    assert scales.min() >= 0.5 and scales.max() <= 3.0
    np.testing.assert_array_equal(ds.truth["segment_means"], 0.0)


def test_registry_and_determinism():
    a = ppzoo.data.load("nonlinear_ica", seed=3, **SMALL)
    b = load(seed=3, **SMALL)
    c = load(seed=4, **SMALL)
    np.testing.assert_array_equal(a.data["x"], b.data["x"])
    np.testing.assert_array_equal(a.truth["z"], b.truth["z"])
    assert not np.allclose(a.data["x"], c.data["x"])


# Base-noise standard deviation and kurtosis per family (reference: unit-variance Gaussian and Laplace,
# standard hyperbolic secant with variance pi^2 / 4).
FAMILIES = {"gaussian": (1.0, 3.0), "laplace": (1.0, 6.0), "hyperbolic_secant": (np.pi / 2, 5.0)}


@pytest.mark.parametrize("noise", sorted(FAMILIES))
def test_sources_follow_the_segment_scales_and_means(noise):
    n = 2000
    ds = load(noise=noise, segment_means=True, num_segments=6, points_per_segment=n, seed=1)
    z = ds.truth["z"].reshape(6, n, 5)
    sd, kurtosis = FAMILIES[noise]
    scales, means = ds.truth["segment_scales"], ds.truth["segment_means"]
    assert np.abs(means).max() <= 5.0 and np.abs(means).min() > 0
    # Sample sd has relative standard error sqrt((kurtosis - 1) / (4 n)); 5 standard errors over 30 cells.
    rel_se = np.sqrt((kurtosis - 1) / (4 * n))
    np.testing.assert_allclose(z.std(axis=1) / (scales * sd), 1.0, atol=5 * rel_se)
    # Sample mean has standard error scale * sd / sqrt(n); 5 standard errors.
    assert np.all(np.abs(z.mean(axis=1) - means) <= 5 * scales * sd / np.sqrt(n))


@pytest.mark.parametrize("activation", nonlinear_ica.ACTIVATIONS)
@pytest.mark.parametrize("num_layers", [1, 3])
def test_mixing_is_the_documented_mlp_and_invertible(activation, num_layers):
    ds = load(activation=activation, num_layers=num_layers, num_sources=3, num_observed=4, **SMALL)
    weights, z, x = ds.info["mixing_weights"], ds.truth["z"], ds.data["x"]
    assert [w.shape for w in weights] == [(3, 4)] + [(4, 4)] * (num_layers - 1)
    for w in weights:
        np.testing.assert_allclose(np.linalg.norm(w, axis=0), 1.0, rtol=1e-12)  # unit-norm columns
    x64 = mix(z, weights, activation)
    # x is the float32 rounding of the float64 mixing (relative precision 6e-8, bound 1e-6).
    np.testing.assert_allclose(x, x64, rtol=1e-6, atol=1e-6 * np.abs(x64).max())
    np.testing.assert_array_equal(ds.info["mix"](z), x64)
    # Exact inversion in float64 (bisection / solve to machine precision).
    np.testing.assert_allclose(unmix(x64, weights, activation), z, atol=1e-8)
    # From the float32 observations: rounding error ~1e-7 * |x| amplified by well-conditioned layers.
    np.testing.assert_allclose(unmix(x, weights, activation), z, atol=1e-3)
    if num_layers == 1:
        np.testing.assert_allclose(x64, z @ weights[0], rtol=1e-12)


def test_multilayer_mixing_is_nonlinear():
    ds = load(num_layers=3, **SMALL)
    z, x = ds.truth["z"], ds.data["x"].astype(np.float64)
    design = np.column_stack([z, np.ones(len(z))])
    residual = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
    # A linear map would leave residual 0 (1e-7 relative); leaky ReLU layers leave a visible part.
    assert residual.var() / x.var() > 1e-3


def test_weights_are_in_the_lower_quartile_of_condition_numbers():
    ds = load(num_layers=3, **SMALL)
    threshold = condition_threshold(5, 5)
    assert ds.info["condition_thresholds"] == [threshold] * 3
    assert all(c <= threshold for c in ds.info["condition_numbers"])
    np.testing.assert_allclose(ds.info["condition_numbers"], [np.linalg.cond(w) for w in ds.info["mixing_weights"]])
    # The threshold is the 25th percentile: fresh random draws fall below it with probability 1/4
    # (4000 draws: standard error 0.007, tolerance 6 standard errors).
    rng = np.random.default_rng(123)
    draws = rng.uniform(-1, 1, (4000, 5, 5))
    draws /= np.linalg.norm(draws, axis=1, keepdims=True)
    assert abs(np.mean(np.linalg.cond(draws) <= threshold) - 0.25) < 0.04
    hits = condition_threshold.cache_info().hits
    condition_threshold(5, 5)
    assert condition_threshold.cache_info().hits == hits + 1  # cached, not recomputed


@pytest.mark.parametrize(
    "settings, match",
    [
        (dict(num_sources=6, num_observed=5), r"num_sources=6 is larger than num_observed=5"),
        (dict(num_sources=0), r"num_sources must be a positive integer"),
        (dict(num_observed=-1), r"num_observed must be a positive integer"),
        (dict(num_segments=0), r"num_segments must be a positive integer"),
        (dict(points_per_segment=2.5), r"points_per_segment must be a positive integer"),
        (dict(num_layers=0), r"num_layers must be a positive integer"),
        (dict(activation="relu"), r"activation='relu' .* Valid: 'leaky_relu', 'xtanh'"),
        (dict(noise="student"), r"noise='student' .* Valid: 'gaussian', 'laplace', 'hyperbolic_secant'"),
    ],
)
def test_invalid_settings_raise_value_error(settings, match):
    with pytest.raises(ValueError, match=match):
        load(**settings)


def test_invalid_types_raise_type_error():
    with pytest.raises(TypeError, match="segment_means must be True or False"):
        load(segment_means=1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        load(seed=0.5)


def test_mix_and_unmix_validate_their_inputs():
    ds = load(**SMALL)
    with pytest.raises(ValueError, match="activation='tanh' .* Valid"):
        mix(ds.truth["z"], ds.info["mixing_weights"], "tanh")
    with pytest.raises(ValueError, match="weights is empty"):
        unmix(ds.data["x"], [], "xtanh")
