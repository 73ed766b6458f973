"""ppzoo.metrics.distances.energy_distance on equal, shifted and degenerate samples, against SciPy in 1-D."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from ppzoo.metrics.distances import energy_distance


def test_energy_distance_same_shifted_and_identical_samples():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 2)), rng.normal(size=(400, 2))
    # Same distribution: the V-statistic is >= 0 with bias and sd of order 1/n (here ~0.01): 0.05 is > 4 sd.
    assert 0 <= energy_distance(a, b) < 0.05
    # A shift of 3 sds in one coordinate: the population value is 2 E|X-Y| - 2 E|X-X'| ~ 3.3; 2.0 leaves room
    # for the Monte Carlo error at n = 400 (sd ~0.1).
    assert energy_distance(a, b + np.array([3.0, 0.0])) > 2.0
    # Identical samples: exactly 0 (degenerate input).
    assert energy_distance(a, a) == pytest.approx(0.0, abs=1e-12)


def test_energy_distance_is_scipys_squared_in_one_dimension():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=50), rng.standard_t(3, size=70)
    # SciPy's 1-D energy_distance is the square root of the same V-statistic (float rounding only).
    assert energy_distance(x, y) == pytest.approx(scipy.stats.energy_distance(x, y) ** 2, rel=1e-10)
    assert energy_distance(x[:, None], y[:, None]) == energy_distance(x, y)


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.zeros((3, 2)), np.zeros((3, 3)), "same dimension"),
        (np.zeros((0, 2)), np.zeros((3, 2)), "`x` must be a non-empty sample"),
        (np.zeros((3, 2)), np.zeros((3, 2, 1)), "`y` must be a non-empty sample"),
        (np.array([0.0, np.nan]), np.zeros(2), "`x` contains NaN"),
    ],
)
def test_energy_distance_rejects_bad_samples(x, y, match):
    with pytest.raises(ValueError, match=match):
        energy_distance(x, y)
