"""Closed-loop verdicts that tell the truth: LOO only where it applies and binary data checked by statistics
that can fail."""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppzoo
from ppzoo.checks import predictive_checks

MCMC = dict(num_warmup=300, num_samples=300, num_chains=2)


@pytest.fixture(autouse=True)
def _close_figures():
    # predictive_checks returns figures for a report; these tests read only the verdicts.
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _by_name(results):
    return {c.name: c for c in results}


# ------------------------------------------------------------------------------------------ LOO applies?


def one_latent_per_datum(x=None, *, num_data: int = 30):
    """ICA in one dimension: each observation has its own source z_n."""
    scale = numpyro.sample("scale", dist.LogNormal(0.0, 0.5))
    with numpyro.plate("data", num_data if x is None else len(x)):
        z = numpyro.sample("z", dist.Laplace(0.0, 1.0))
        numpyro.sample("x", dist.Normal(scale * z, 0.3), obs=x)


def one_vector_observation(y=None, sigma=None):
    """Eight schools, non-centred: `y` is one 8-vector observation (no plate), as in posteriordb."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    theta_raw = numpyro.sample("theta_raw", dist.Normal(0.0, 1.0).expand([8]).to_event(1))
    numpyro.sample("y", dist.Normal(mu + tau * theta_raw, sigma).to_event(1), obs=y)


def test_loo_does_not_apply_with_one_latent_per_observation():
    x = np.random.default_rng(0).laplace(0.0, 1.0, 30).astype(np.float32)
    fit = ppzoo.fit(one_latent_per_datum, {"x": x}, engine="nuts", seed=0, **MCMC)
    results = _by_name(predictive_checks(fit))
    assert results["LOO"].passed is None
    assert "each observation has its own latent (`z`)" in results["LOO"].verdict
    assert "K-fold" in results["LOO"].verdict and "refit without" not in results["LOO"].verdict
    assert results["LOO-PIT"].passed is None and "own latent" in results["LOO-PIT"].verdict


def test_loo_does_not_apply_to_one_vector_observation():
    y = np.array([28, 8, -3, 7, -1, 1, 18, 12], dtype=np.float32)
    sigma = np.array([15, 10, 16, 11, 9, 11, 10, 18], dtype=np.float32)
    fit = ppzoo.fit(one_vector_observation, {"y": y, "sigma": sigma}, engine="nuts", seed=0, **MCMC)
    results = _by_name(predictive_checks(fit))
    assert results["LOO"].passed is None
    assert "one observation" in results["LOO"].verdict and "nothing to leave out" in results["LOO"].verdict
    assert results["LOO-PIT"].passed is None


# ----------------------------------------------------------------------------------------------- binary


def bernoulli_grid(prior_loc: float):
    """0/1 data, items x features, one success probability per feature (logit ~ Normal(prior_loc, 1.5))."""

    def model(x=None, *, shape=(40, 6)):
        num_items, num_features = shape if x is None else x.shape
        with numpyro.plate("feature", num_features, dim=-1):
            logit = numpyro.sample("logit", dist.Normal(prior_loc, 1.5))
            with numpyro.plate("data", num_items, dim=-2):
                numpyro.sample("x", dist.Bernoulli(logits=logit), obs=x)

    return model


@pytest.fixture(scope="module")
def binary_data():
    rng = np.random.default_rng(2)
    probability = np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.7])
    return (rng.random((40, 6)) < probability).astype(np.float32)  # share of ones ~0.3


def test_binary_prior_check_is_not_vacuous(binary_data):
    # A prior that puts every feature's probability near 0.98 (logit ~ Normal(4, 1.5)) against data with
    # ~30% ones: each 0/1 value still lies in its per-value [0, 1] "central 99%", but the observed share of
    # ones is far outside the prior's replicated shares, so the check fails; the sensible prior passes.
    results = {}
    for name, loc in (("sensible", 0.0), ("wrong", 4.0)):
        fit = ppzoo.fit(bernoulli_grid(loc), {"x": binary_data}, engine="nuts", seed=0, **MCMC)
        results[name] = _by_name(predictive_checks(fit))
    wrong = results["wrong"]["prior predictive"]
    assert wrong.passed is False and "OUTSIDE" in wrong.verdict, wrong.verdict
    sensible = results["sensible"]["prior predictive"]
    assert sensible.passed is True and "share of ones" in sensible.verdict, sensible.verdict
    # The posterior predictive table: no sd of 0/1 values (a function of their mean), every test once.
    table = results["sensible"]["posterior predictive"].tables[0][1]
    assert list(table["statistic"]) == ["mean", "sd of item means", "sd of feature means"]
    assert not table.duplicated(["site", "statistic"]).any()
    # Per-feature logits are shared by 40 observations each: LOO applies (its verdict is a number, not n/a).
    assert results["sensible"]["LOO"].passed is not None, results["sensible"]["LOO"].verdict
