"""Bayesian linear ICA: recovery by every engine, chain alignment, the data set and the model's errors."""

from __future__ import annotations

import numpy as np
import pytest

import ppzoo
from ppzoo.models.ica import align_chains


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["nuts", "blackjax", "svi"])
def test_every_engine_recovers_sources_and_mixing(ica_fits, ica_data, engine):
    fit = ica_fits[engine]
    z = fit.samples["z"].mean((0, 1))
    mixing = fit.samples["mixing"].mean((0, 1))
    # The thresholds. Measured here on seed 0 (1000 points): MCC 0.997 / Amari 0.029 (NUTS), 0.998 / 0.025
    # (BlackJAX), 0.998 / 0.031 (SVI), so the margins are wide against Monte Carlo error of 200-draw chains.
    assert ppzoo.metrics.mcc(z, ica_data.truth["z"]) >= 0.95
    assert ppzoo.metrics.amari_distance(mixing, ica_data.truth["mixing"]) <= 0.1


def test_mcmc_chains_aligned_into_one_mode(ica_fits):
    for engine in ("nuts", "blackjax"):
        fit = ica_fits[engine]
        assert any("symmetric modes" in note for note in fit.notes)
        means = fit.samples["mixing"].mean(1)  # (chain, D, K)
        # After alignment the chains' mean mixing matrices agree column by column (same permutation and
        # sign); unaligned chains differ by O(1) entries, posterior sds are ~0.02.
        assert np.max(np.abs(means[0] - means[1])) < 0.2


def test_align_chains_undoes_permutations_and_signs():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(3, 3))
    z = rng.laplace(size=(50, 3))
    draws_mixing = mixing + 0.01 * rng.normal(size=(3, 10, 3, 3))
    draws_z = z + 0.01 * rng.normal(size=(3, 10, 50, 3))
    perms = [np.arange(3), np.array([2, 0, 1]), np.array([1, 2, 0])]
    signs = [np.ones(3), np.array([-1.0, 1.0, -1.0]), np.array([1.0, -1.0, -1.0])]
    samples = {
        "mixing": np.stack([draws_mixing[c][..., perms[c]] * signs[c] for c in range(3)]),
        "z": np.stack([draws_z[c][..., perms[c]] * signs[c] for c in range(3)]),
    }
    aligned, note = align_chains(samples)
    np.testing.assert_allclose(aligned["mixing"].mean(1), np.broadcast_to(mixing, (3, 3, 3)), atol=0.02)
    np.testing.assert_allclose(aligned["z"][:, :, 0], np.broadcast_to(z[0], (3, 10, 3)), atol=0.05)
    assert "chain 1" in note and "chain 2" in note
    single, note = align_chains({k: v[:1] for k, v in samples.items()})
    assert "One chain" in note


def test_linear_ica_data(ica_data):
    assert ica_data.data["x"].shape == (1000, 3)
    assert ica_data.truth["z"].shape == (1000, 3)
    assert np.linalg.cond(ica_data.truth["mixing"]) <= 3.0
    again = ppzoo.data.load("linear_ica", num_data=1000, num_sources=3, seed=0)
    np.testing.assert_array_equal(again.data["x"], ica_data.data["x"])
    residual = ica_data.data["x"] - ica_data.truth["z"] @ ica_data.truth["mixing"].T
    assert residual.std() == pytest.approx(0.1, rel=0.05)  # 6000 noise draws: sd known to ~1%


def test_prior_predictive_generates_data():
    import jax
    from numpyro.infer import Predictive

    model = ppzoo.models.get("ica", num_observed=4, num_sources=2)
    draws = Predictive(model, num_samples=3)(jax.random.key(0), num_data=7)
    assert draws["x"].shape == (3, 7, 4)
    assert draws["z"].shape == (3, 7, 2)


def test_ica_errors():
    model = ppzoo.models.get("ica")
    with pytest.raises(ValueError, match=r"`x` must be 2-D \(num_data, num_observed\); got shape \(10,\)"):
        ppzoo.fit(model, {"x": np.zeros(10, np.float32)})
    with pytest.raises(ValueError, match=r"num_sources=4 needs at least as many observed dimensions; `x` has 3"):
        ppzoo.fit(ppzoo.models.get("ica", num_sources=4), {"x": np.zeros((10, 3), np.float32)})
    with pytest.raises(TypeError, match=r"Unknown config field\(s\) 'sources' for model 'ica'. Valid fields: num_sources"):
        ppzoo.models.get("ica", sources=3)
    with pytest.raises(ValueError, match="source_prior must be 'laplace', 'logistic' or 'student_t'"):
        ppzoo.models.get("ica", source_prior="gaussian")
    with pytest.raises(ValueError, match=r"`num_observed` \(2\) must be at least `num_sources` \(3\)"):
        ppzoo.data.load("linear_ica", num_sources=3, num_observed=2)
    with pytest.raises(TypeError, match=r"unknown setting\(s\) 'n'.*num_data"):
        ppzoo.data.load("linear_ica", n=5)
    with pytest.raises(ValueError, match=r"Unknown data set 'ica'. Valid names: .*linear_ica"):
        ppzoo.data.load("ica")
