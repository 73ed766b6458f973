"""ppzoo.data.scaling.Standardiser and ppzoo.metrics.readout.FactorReader: round trips, a perfect and a
useless reader, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

from ppzoo.data.scaling import Standardiser
from ppzoo.metrics.readout import FactorReader


def test_standardiser_round_trip_and_one_value():
    rng = np.random.default_rng(0)
    values = rng.normal(loc=[1.0, -5.0], scale=[2.0, 0.5], size=(200, 2))
    scaler = Standardiser(values)
    std = scaler.to_std(values)
    np.testing.assert_allclose(std.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(std.std(0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(scaler.to_units(std), values, rtol=1e-12)
    assert scaler.value_to_units(1, 2.0) == pytest.approx(values[:, 1].mean() + 2.0 * values[:, 1].std())


@pytest.mark.parametrize(("values", "match"), [(np.ones(3), "must be 2-D"), (np.ones((3, 2)), r"Column\(s\) \[0, 1\]")])
def test_standardiser_rejects_bad_values(values, match):
    with pytest.raises(ValueError, match=match):
        Standardiser(values)


def test_factor_reader_reads_a_linear_rendering_and_not_noise():
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(300, 2))
    pixels = rng.normal(size=(2, 6, 6))
    images = np.einsum("nf,fhw->nhw", factors, pixels)  # images linear in the factors: readable exactly
    reader = FactorReader(images, factors, alpha=1e-6)
    test = rng.normal(size=(50, 2))
    np.testing.assert_allclose(reader(np.einsum("nf,fhw->nhw", test, pixels)), test, atol=1e-4)
    # Images that carry no factor: the reader's predictions are independent of the held-out factors, so its
    # expected R^2 is <= 0 (any variance it predicts is error); 0.5 would need a chance fit of 50 points.
    useless = FactorReader(rng.normal(size=(300, 6, 6)), factors)
    read = useless(rng.normal(size=(50, 6, 6)))
    assert read.shape == (50, 2)
    assert 1 - ((read - test) ** 2).sum() / ((test - test.mean(0)) ** 2).sum() < 0.5


@pytest.mark.parametrize(
    ("images", "factors", "alpha", "match"),
    [
        (np.zeros((3, 4)), np.zeros(3), 1.0, "`factors` must be 2-D"),
        (np.zeros((4, 4)), np.zeros((3, 1)), 1.0, "one image per row"),
        (np.zeros((3, 4)), np.zeros((3, 1)), 0.0, "`alpha`"),
    ],
)
def test_factor_reader_rejects_bad_input(images, factors, alpha, match):
    with pytest.raises(ValueError, match=match):
        FactorReader(images, factors, alpha=alpha)
