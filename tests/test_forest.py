"""The engines' forest plot marks the truth also for models with symmetric modes (ICA): every fit is mapped
onto the true sources' labelling (permutation and signs) before it is drawn beside the true values."""

from types import SimpleNamespace

import numpy as np

import ppzoo
from ppzoo.report import comparable_samples


def _fit(model, mixing: np.ndarray, noise: float, rng: np.random.Generator, chains: int = 2, draws: int = 50):
    jitter = 0.01 * rng.standard_normal((chains, draws, *mixing.shape))
    return SimpleNamespace(model=model, num_draws=draws,
                           samples={"mixing": mixing + jitter, "noise_scale": np.full((chains, draws), noise)})


def test_fits_in_other_modes_are_mapped_onto_the_truth():
    model = ppzoo.models.get("ica")
    rng = np.random.default_rng(0)
    truth = {"mixing": rng.standard_normal((4, 3)), "noise_scale": np.float64(0.1)}
    # First fit: sources 0 and 2 swapped, source 1's sign flipped; second fit: another permutation.
    first = truth["mixing"][:, [2, 1, 0]] * np.array([1.0, -1.0, 1.0])
    second = truth["mixing"][:, [1, 2, 0]] * np.array([-1.0, 1.0, 1.0])
    fits = {"a": _fit(model, first, 0.1, rng), "b": _fit(model, second, 0.1, rng)}
    sites = ["mixing", "noise_scale"]

    mapped = comparable_samples(fits, sites, truth)
    for label in fits:
        # Jitter sd 0.01 per draw, 100 draws: the mean is within 0.005 of the truth; a wrong column is O(1) off.
        np.testing.assert_allclose(mapped[label]["mixing"].mean((0, 1)), truth["mixing"], atol=0.005)

    # Without the truth the first fit's labelling is kept and the second is mapped onto it.
    kept = comparable_samples(fits, sites)
    np.testing.assert_allclose(kept["a"]["mixing"].mean((0, 1)), first, atol=0.005)
    np.testing.assert_allclose(kept["b"]["mixing"].mean((0, 1)), first, atol=0.005)


def test_partial_truth_leaves_the_first_fits_labelling():
    model = ppzoo.models.get("ica")
    rng = np.random.default_rng(1)
    mixing = rng.standard_normal((4, 3))
    fits = {"a": _fit(model, mixing[:, [1, 0, 2]], 0.2, rng)}
    # The truth of the noise scale alone cannot say which source is which: no mapping onto it.
    mapped = comparable_samples(fits, ["mixing", "noise_scale"], {"noise_scale": 0.2})
    np.testing.assert_allclose(mapped["a"]["mixing"].mean((0, 1)), mixing[:, [1, 0, 2]], atol=0.005)
