"""Tests of ppzoo.amortization: distances between an amortized Gaussian encoder and MCMC draws."""

import numpy as np
import pytest

from ppzoo.amortization import amortization_gap, gaussian_w2, marginal_w2


def test_amortization_gap_is_zero_for_matching_gaussians_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    mean, sd = rng.normal(size=(5, 3)), rng.uniform(0.5, 2.0, size=(5, 3))
    draws = mean + sd * rng.standard_normal((4, 2000, 5, 3))
    gap = amortization_gap(mean, sd, draws, true=mean + 0.01 * rng.normal(size=(5, 3)))
    # 8000 draws: the estimated mean and covariance are off by ~ sd / sqrt(8000) ~ 0.02 per latent, so the
    # distances are a few hundredths; 0.1 leaves room.
    assert gap["w2_gaussian"] < 0.1 and gap["w2_marginal"] < 0.1
    assert abs(gap["interval_coverage"] - 0.9) < 0.01  # binomial sd of the share: sqrt(.09 / 8000) per cell
    assert abs(gap["sd_ratio"] - 1.0) < 0.05
    assert gap["mcc_encoder"] > 0.99 and gap["mcc_mcmc"] > 0.99
    shifted = amortization_gap(mean + 1.0, sd, draws)
    # A shift of 1 in each of 3 latents moves the distance by sqrt(3).
    assert abs(shifted["w2_gaussian"] - np.sqrt(3)) < 0.1
    assert abs(shifted["w2_marginal"] - 1.0) < 0.1


def test_gaussian_w2_closed_form_against_one_dimension_and_correlation():
    # One dimension: W2 between N(a, s^2) and N(b, t^2) is sqrt((a - b)^2 + (s - t)^2).
    w = gaussian_w2(np.array([[0.0]]), np.array([[1.0]]), np.array([[3.0]]), np.array([[[4.0]]]))
    np.testing.assert_allclose(w, np.sqrt(9.0 + 1.0), rtol=1e-10)
    # Identity vs a correlated unit-variance Gaussian: tr(2I - 2 sqrt(C)) with the eigenvalues 1 +- rho.
    rho = 0.8
    cov = np.array([[[1.0, rho], [rho, 1.0]]])
    expected = np.sqrt(4.0 - 2.0 * (np.sqrt(1 + rho) + np.sqrt(1 - rho)))
    np.testing.assert_allclose(gaussian_w2(np.zeros((1, 2)), np.ones((1, 2)), np.zeros((1, 2)), cov), expected,
                               rtol=1e-10)
    # Empirical quantiles of an exact Gaussian grid give a tiny 1-D distance.
    from scipy.stats import norm

    grid = norm.ppf((np.arange(1000) + 0.5) / 1000)[:, None, None]
    np.testing.assert_allclose(marginal_w2(np.zeros((1, 1)), np.ones((1, 1)), grid), 0.0, atol=1e-12)


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros(3), np.ones(3), np.zeros((10, 3))), "must be 2-D"),
        ((np.zeros((3, 2)), np.ones((3, 1)), np.zeros((10, 3, 2))), "shape of `encoder_mean`"),
        ((np.zeros((3, 2)), -np.ones((3, 2)), np.zeros((10, 3, 2))), "must be positive"),
        ((np.zeros((3, 2)), np.ones((3, 2)), np.zeros((10, 4, 2))), "mcmc_draws"),
        ((np.zeros((3, 2)), np.ones((3, 2)), np.zeros((1, 3, 2))), "at least 2 draws"),
    ],
)
def test_amortization_gap_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        amortization_gap(*args)


class _Conjugate:
    """z_i ~ N(0, 1), x_i ~ N(z_i, 1): the exact posterior of each z_i is N(x_i / 2, 1/2). Its own guide is that
    posterior with the sd scaled by ``sd_ratio``."""

    def __init__(self, sd_ratio):
        self.sd_ratio = sd_ratio

    def __call__(self, x):
        import numpyro
        import numpyro.distributions as dist

        with numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0))
            numpyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def make_guide(self):
        import numpyro
        import numpyro.distributions as dist

        def guide(x):
            with numpyro.plate("data", x.shape[0]):
                numpyro.sample("z", dist.Normal(x / 2, self.sd_ratio * np.sqrt(0.5)))

        return guide


def test_encoder_pareto_k_flags_a_too_narrow_encoder_and_passes_a_wider_one():
    from ppzoo.amortization import encoder_pareto_k

    x = np.random.default_rng(0).normal(0.0, np.sqrt(2.0), 64).astype(np.float32)
    # A proposal 1.2x wider than the target has bounded weights (k-hat far below 0.5: measured -1.6 median, sd
    # 0.14 over items). One at 0.3x the target's sd has asymptotic k = 1 - 0.3^2 = 0.91 (normal target and
    # proposal); from 1000 draws each item's k-hat is lower and noisy: measured on data seeds 1 and 2 (not the
    # test's), median 0.77-0.81, sd 0.16 over items, 69-70% of items above 0.7. Bounds: the median of 64 items
    # has sd ~0.025, so > 0.7 has a 3-sd margin; the share above 0.7 has sd ~0.057, so > 0.5 has a 3.5-sd margin
    # (and is far above the 10% at which the encoder is flagged unreliable).
    wide = encoder_pareto_k(_Conjugate(1.2), {}, {"x": x}, seed=0)
    narrow = encoder_pareto_k(_Conjugate(0.3), {}, {"x": x}, seed=0)
    assert wide["num_items"] == narrow["num_items"] == 64
    assert wide["share_k_above_0_7"] == 0.0 and wide["pareto_k_median"] < 0.5, wide["pareto_k_median"]
    assert narrow["share_k_above_0_7"] > 0.5 and narrow["pareto_k_median"] > 0.7, narrow["pareto_k_median"]


def test_encoder_pareto_k_needs_the_models_own_guide():
    from ppzoo.amortization import encoder_pareto_k

    with pytest.raises(ValueError, match="needs a zoo model with its own amortized guide"):
        encoder_pareto_k(lambda x: None, {}, {"x": np.zeros(3)})
