"""MCC and Amari distance on perfect, permuted and sign-flipped, and useless estimates."""

from __future__ import annotations

import numpy as np
import pytest

from ppzoo.metrics import amari_distance, match_components, mcc


@pytest.fixture
def sources():
    return np.random.default_rng(0).laplace(size=(2000, 4))


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_mcc_perfect_permuted_useless(sources, method):
    assert mcc(sources, sources, method=method) == pytest.approx(1.0)
    permuted = -3.0 * sources[:, [2, 0, 3, 1]] + 1.0
    assert mcc(permuted, sources, method=method) == pytest.approx(1.0)
    noise = np.random.default_rng(1).normal(size=sources.shape)
    # Independent noise: each |correlation| is ~|N(0, 1/2000)|, the Hungarian max over 4! pairings of
    # such values stays below 0.07 (about 3 sd of the largest of 16 entries).
    assert mcc(noise, sources, method=method) < 0.07


def test_mcc_spearman_ignores_monotone_transforms(sources):
    assert mcc(np.tanh(sources), sources, method="spearman") == pytest.approx(1.0)
    assert mcc(np.tanh(sources), sources, method="pearson") < 0.99


def test_mcc_degenerate_copy(sources):
    copy = np.repeat(sources[:, :1], 4, axis=1)
    # Only one of the four true sources can be matched to a copy of source 0: MCC ~ 1/4.
    assert mcc(copy, sources) == pytest.approx(0.25, abs=0.05)


def test_match_components(sources):
    order, signs = match_components(-sources[:, [1, 0, 3, 2]], sources)
    np.testing.assert_array_equal(order, [1, 0, 3, 2])
    np.testing.assert_array_equal(signs, [-1, -1, -1, -1])


def test_amari_distance_cases():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(4, 4))
    assert amari_distance(mixing, mixing) == pytest.approx(0.0, abs=1e-12)
    scaled = mixing[:, [3, 1, 0, 2]] * np.array([-2.0, 0.5, 1.0, -1.0])
    assert amari_distance(scaled, mixing) == pytest.approx(0.0, abs=1e-12)
    random = np.mean([amari_distance(rng.normal(size=(4, 4)), mixing) for _ in range(50)])
    assert 0.3 < random <= 1.0  # unrelated matrices are far from 0
    assert amari_distance(np.ones((4, 4)) + 1e-3 * rng.normal(size=(4, 4)), mixing) > 0.3


def test_metric_errors(sources):
    with pytest.raises(ValueError, match=r"`estimated` must be a 2-D array"):
        mcc(sources[:, 0], sources)
    with pytest.raises(ValueError, match="has 10 rows but `true` has 2000"):
        mcc(sources[:10], sources)
    with pytest.raises(ValueError, match="`method` must be 'pearson' or 'spearman'"):
        mcc(sources, sources, method="kendall")
    with pytest.raises(ValueError, match="contains NaN"):
        mcc(np.full_like(sources, np.nan), sources)
    with pytest.raises(ValueError, match=r"shape \(4, 3\) but `true_mixing` has \(4, 4\)"):
        amari_distance(np.ones((4, 3)), np.ones((4, 4)))
