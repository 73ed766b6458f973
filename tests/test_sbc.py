"""Simulation-based calibration: calibrated engines pass, broken inference is caught, bad input is named.

Each check is a chi-square test of binned ranks per scalar parameter, Bonferroni-corrected so that a
whole table is a test at the 1% level: a calibrated engine fails it 1 time in 100 by chance.
"""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppzoo
from ppzoo.cli import CHECK_SETUPS
from ppzoo.reference import load_reference
from tests.conftest import conjugate_model

pytestmark = pytest.mark.slow
Y = np.zeros(20, np.float32)
MCMC = dict(num_warmup=200, num_samples=400)


@pytest.mark.parametrize("engine", ["nuts", "blackjax"])
def test_mcmc_calibrated_on_conjugate(engine):
    result = ppzoo.sbc(conjugate_model, {"y": Y}, engine=engine, num_simulations=100, seed=1, **MCMC)
    assert result.passed, result.table
    assert set(result.table.index) == {"mu"}
    tree = result.to_arviz()
    assert tree["prior_sbc"]["mu"].shape == (1, 100)
    assert float(tree["prior_sbc"]["mu"].min()) > 0 and float(tree["prior_sbc"]["mu"].max()) < 1


@pytest.mark.parametrize("engine", ["nuts", "blackjax"])
def test_mcmc_calibrated_on_eight_schools(engine):
    case = load_reference("eight_schools-eight_schools_noncentered")
    result = ppzoo.sbc(case.model, case.data, engine=engine, num_simulations=100, seed=2,
                       target_accept_prob=0.95, **MCMC)
    assert result.passed, result.table
    assert len(result.table) == 10  # mu, tau and the 8 non-centred effects (latent sites only)


def test_blackjax_calibrated_on_small_ica():
    """What ``ppzoo check ica`` runs: 2 Laplace sources seen in 3 dimensions, 50 points, 300 + 300 iterations.

    Only the noise scale is ranked (mixing and sources are identified up to permutation and sign only). One
    scalar, so the chi-square test of binned ranks is itself the 1% test. 100 simulations: about 45 s of CPU
    on 2 cores (NumPyro NUTS passes the same check, p = 0.44 at 200 simulations, but takes longer; it is run
    by ``ppzoo check ica``). Square ICA (2 observed dimensions) fails this test for both engines
    (noise-scale funnel, see the ICA check setup in ppzoo.cli.CHECK_SETUPS).
    """
    setup = CHECK_SETUPS["ica"]
    model = ppzoo.models.get("ica", **setup.config)
    result = ppzoo.sbc(model, setup.sbc_data(0), engine="blackjax", num_simulations=100, seed=3,
                       var_names=list(setup.sbc_var_names), **setup.options_for("blackjax"))
    assert result.passed, result.table
    assert list(result.table.index) == ["noise_scale"]


def correlated_regression(y=None, *, x=np.linspace(1.0, 3.0, 20)):
    """Intercept and slope with x away from 0: their posterior correlation is about -0.9."""
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 3.0))
    slope = numpyro.sample("slope", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", len(x)):
        numpyro.sample("y", dist.Normal(intercept + slope * x, 1.0), obs=y)


def test_svi_mean_field_fails_where_full_rank_passes():
    data = {"y": np.zeros(20, np.float32)}
    common = dict(engine="svi", num_simulations=100, seed=4, steps=3000, learning_rate=0.02, num_draws=400)
    mean_field = ppzoo.sbc(correlated_regression, data, guide="auto_normal", **common)
    full_rank = ppzoo.sbc(correlated_regression, data, guide="auto_mvn", **common)
    # Mean-field ignores the -0.9 correlation and shrinks the marginal sds by sqrt(1 - 0.81) ~ 0.44:
    # ranks pile up at 0 and L (their sd grows from 0.289 towards 0.5).
    assert not mean_field.passed, mean_field.table
    assert (mean_field.table["rank_sd"] > 0.35).all()
    assert full_rank.passed, full_rank.table


def test_broken_inference_is_caught():
    """A point estimate reported as a posterior (auto_delta) has no spread: SBC must fail it."""
    result = ppzoo.sbc(conjugate_model, {"y": Y}, engine="svi", guide="auto_delta", num_simulations=60, seed=5,
                       steps=500, learning_rate=0.05, num_draws=100)
    assert not result.passed
    assert result.table.loc["mu", "p_value"] < 1e-6


def test_too_little_warmup_on_a_funnel_is_caught():
    """Centred eight schools with 10 warmup steps: the sampler never adapts to the funnel."""

    def centred(y=None, *, sigma=np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])):
        mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
        with numpyro.plate("school", 8):
            theta = numpyro.sample("theta", dist.Normal(mu, tau))
            numpyro.sample("y", dist.Normal(theta, sigma), obs=y)

    result = ppzoo.sbc(centred, {"y": np.zeros(8, np.float32)}, engine="blackjax", num_simulations=100, seed=6,
                       num_warmup=10, num_samples=100, var_names=["tau"])
    assert not result.passed, result.table


def test_sbc_errors():
    with pytest.raises(ValueError, match=r"`num_simulations` must be a positive integer; got 0"):
        ppzoo.sbc(conjugate_model, {"y": Y}, num_simulations=0)

    def no_latent(y=None):
        numpyro.sample("y", dist.Normal(0.0, 1.0), obs=y)

    with pytest.raises(ValueError, match="no latent"):
        ppzoo.sbc(no_latent, {"y": Y}, num_simulations=5)
    with pytest.raises(ValueError, match="no observed site"):
        ppzoo.sbc(conjugate_model, {"num_data": 5}, num_simulations=5)
    with pytest.raises(TypeError, match=r"data key\(s\) 'z' are not arguments of the model"):
        ppzoo.sbc(conjugate_model, {"y": Y, "z": Y}, num_simulations=5)

    def hidden_obs(*, num_data=5):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("obs", dist.Normal(mu, 1.0).expand([num_data]), obs=np.zeros(num_data))

    with pytest.raises(ValueError, match=r"Observed site\(s\) 'obs' are not keyword arguments"):
        ppzoo.sbc(hidden_obs, {}, num_simulations=5)
    with pytest.raises(ValueError, match=r"`num_rank_draws` \(500\) exceeds"):
        ppzoo.sbc(conjugate_model, {"y": Y}, num_simulations=5, num_rank_draws=500, num_samples=100)
    with pytest.raises(ValueError, match=r"`var_names` \['sigma'\] are not latent sites"):
        ppzoo.sbc(conjugate_model, {"y": Y}, num_simulations=5, var_names=["sigma"])
