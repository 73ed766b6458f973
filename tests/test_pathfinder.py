"""The ``"pathfinder"`` engine and ``init_strategy="pathfinder"`` for the MCMC engines.

Tolerances come from Monte Carlo error. The engine returns ``num_draws`` draws resampled (with replacement)
from a pool whose importance weights have effective sample size ``ess`` (``fit.diagnostics["psis"].ess``),
so a mean is off by about ``sd * sqrt(1/ess + 1/num_draws)`` and a standard deviation by about
``sd * sqrt((1/ess + 1/num_draws) / 2)`` (Gaussian draws) from the posterior's; 4 such standard errors
bound each check (a two-sided 4-sigma test fails by chance with probability ~6e-5 per quantity).

Cost: compiling Pathfinder dominates (~29 s for a 3-parameter model on 2 cores under a load average of
~23); five programs contain it (two fits, the SBC core, the nuts starts, the blackjax chain). The file took
1008 s under a load average of 25-30 (2026-12-07); quiet, expect a small fraction of that.
"""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppzoo
from ppzoo.inference import PathfinderOptions, get
from ppzoo.inference.nuts import NUTSOptions
from ppzoo.inference.pathfinder import check_model, pathfinder_starts
from ppzoo.reference import load_reference

NUM_DRAWS = 1000


def regression(*, x, y=None):
    """Bayesian linear regression with known noise: the posterior of ``beta`` is exactly Gaussian."""
    beta = numpyro.sample("beta", dist.Normal(0.0, 10.0).expand([x.shape[1]]).to_event(1))
    numpyro.deterministic("fitted_mean", x.mean(0) @ beta)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ beta, 1.0), obs=y)


def regression_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + rng.normal(size=40)).astype(np.float32)
    return {"x": x, "y": y}


def closed_form(data):
    """Posterior mean and covariance of ``beta`` (prior N(0, 10^2 I), noise sd 1)."""
    x, y = data["x"].astype(np.float64), data["y"].astype(np.float64)
    precision = x.T @ x + np.eye(x.shape[1]) / 100.0
    cov = np.linalg.inv(precision)
    return cov @ x.T @ y, cov


@pytest.fixture(scope="module")
def gaussian_fit():
    data = regression_data()
    return ppzoo.fit(regression, data, engine="pathfinder", seed=0), data


def standard_error(fit) -> float:
    """sqrt(1/ess + 1/num_draws): the relative Monte Carlo error of a mean (see the module docstring)."""
    return float(np.sqrt(1.0 / fit.diagnostics["psis"].ess + 1.0 / fit.num_draws))


def test_draws_match_the_closed_form_gaussian_posterior(gaussian_fit):
    fit, data = gaussian_fit
    mean, cov = closed_form(data)
    sd = np.sqrt(np.diag(cov))
    draws = fit.samples["beta"].reshape(-1, 3)
    assert fit.samples["beta"].shape == (1, NUM_DRAWS, 3)
    # A Gaussian target is Pathfinder's best case: k-hat well below the threshold.
    assert fit.pareto_k < 0.7, fit.diagnostics["psis"]
    # So are the weighted means' and variances' k-hats (the resampled draws' moments are reliable).
    assert fit.diagnostics["psis"].moment_k < 0.7, fit.diagnostics["psis"]
    assert not fit.warnings
    se = standard_error(fit)
    np.testing.assert_array_less(np.abs(draws.mean(0) - mean) / sd, 4 * se)
    np.testing.assert_array_less(np.abs(draws.std(0) / sd - 1.0), 4 * se / np.sqrt(2.0))
    # Deterministic sites come back, mapped from the same draws.
    np.testing.assert_allclose(fit.samples["fitted_mean"][0], draws @ data["x"].mean(0), rtol=1e-4, atol=1e-4)
    assert fit.sample_stats["lp"].shape == (1, NUM_DRAWS)
    assert get("pathfinder").is_mcmc is False and get("pathfinder").learns_params is False


def test_fit_and_report_work_with_pathfinder(gaussian_fit, tmp_path):
    fit, _ = gaussian_fit
    tree = fit.to_arviz(predictive_draws=50, prior_draws=50)
    assert tree["posterior"]["beta"].shape == (1, NUM_DRAWS, 3)
    path = ppzoo.report(fit, tmp_path / "report")
    assert (path / "index.html").exists()
    assert "pathfinder" in (path / "index.html").read_text()


@pytest.fixture(scope="module")
def eight_schools():
    ref = load_reference("eight_schools-eight_schools_noncentered")
    return ref, ppzoo.fit(ref.model, ref.data, engine="pathfinder", seed=0)


def test_eight_schools_agrees_with_nuts_or_says_it_does_not(eight_schools):
    """Non-centred eight schools against posteriordb's 10,000 Stan NUTS draws: no silent failure.

    Pathfinder does not reproduce this posterior: every path's Gaussian sits near mu ~ 0-2, where the L-BFGS
    path runs from the starts to the joint mode (large tau, mu near 0), while the posterior mean of mu is 4.4
    (sd 3.3); measured over 8 seeds the draws were 0.6-1.0 reference sd off in mu, with k-hat above 0.7 in 7.
    What must hold is the issue's "no silent failure": each scalar agrees with the reference within 4 Monte
    Carlo standard errors (Pathfinder's, from the weights' ESS, and the reference's, 10,000 draws) or the fit
    carries the Pareto-k warning.
    """
    ref, fit = eight_schools
    se = standard_error(fit)
    off = []
    for site, reference in ref.draws.items():
        reference = reference.reshape(-1, *reference.shape[2:])
        draws = fit.samples[site].reshape(-1, *reference.shape[1:])
        ref_sd = reference.std(0)
        z = np.abs(draws.mean(0) - reference.mean(0)) / (ref_sd * np.sqrt(se**2 + 1.0 / reference.shape[0]))
        off += [f"{site}: |z| {v:.1f}" for v in np.atleast_1d(z) if v > 4]
    warned = any("Pareto k" in w for w in fit.warnings)
    assert warned or not off, f"silent failure: k = {fit.pareto_k:.2f}, {off}"
    assert (not fit.diagnostics["psis"].reliable) == warned


@pytest.mark.parametrize("engine", ["nuts", pytest.param("blackjax", marks=pytest.mark.slow)])
def test_init_strategy_pathfinder_starts_chains_apart_in_the_bulk(engine, monkeypatch):
    """Chains start at distinct Pathfinder draws near the posterior, then sample.

    The ``"nuts"`` engine computes the starts with :func:`pathfinder_starts` (recorded here); the
    ``"blackjax"`` engine runs Pathfinder inside each chain's program (:func:`initialize`, which the
    ``"nuts"`` engine's low-rank chains share), so only its draws are checked.
    """
    from ppzoo.inference import nuts

    recorded = []

    def record(*args):
        starts = pathfinder_starts(*args)
        recorded.append(np.asarray(starts["beta"]))
        return starts

    monkeypatch.setattr(nuts, "pathfinder_starts", record)
    data = regression_data()
    mean, cov = closed_form(data)
    sd = np.sqrt(np.diag(cov))
    fit = ppzoo.fit(regression, data, engine=engine, seed=0, init_strategy="pathfinder", num_warmup=100,
                    num_samples=100, num_chains=2, adaptation="diag")
    assert fit.options["init_strategy"] == "pathfinder"
    if engine == "nuts":
        (starts,) = recorded
        assert starts.shape == (2, 3) and not np.allclose(starts[0], starts[1])
        # Each start is a (resampled) draw of a close Gaussian approximation: within 6 posterior sd of the mean.
        np.testing.assert_array_less(np.abs(starts - mean) / sd, 6.0)
    draws = fit.samples["beta"]
    assert np.isfinite(draws).all() and not np.allclose(draws[0, 0], draws[1, 0])
    # A short run from good starts is in the bulk (a smoke check, not an accuracy test).
    np.testing.assert_array_less(np.abs(draws.reshape(-1, 3).mean(0) - mean) / sd, 1.0)


def test_sbc_runs_with_pathfinder():
    def model(*, y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.plate("data", 5):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    result = ppzoo.sbc(model, {"y": np.zeros(5, dtype=np.float32)}, engine="pathfinder", num_simulations=8, num_rank_draws=10, seed=0,
                       num_paths=2, maxiter=20, draws_per_path=100, num_draws=50)
    ranks = np.asarray(result.ranks["mu"])
    assert ranks.shape == (8,) and ((0 <= ranks) & (ranks <= 10)).all()


# ---- errors, raised before anything compiles ------------------------------------------------------------

def mixture(*, y=None):
    z = numpyro.sample("z", dist.Bernoulli(0.5))
    numpyro.sample("y", dist.Normal(2.0 * z, 1.0), obs=y)


def with_param(*, y=None):
    scale = numpyro.param("scale", 1.0, constraint=dist.constraints.positive)
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu, scale), obs=y)


def test_discrete_latent_site_is_refused_by_name():
    with pytest.raises(ValueError, match=r"continuous latent sites, but 'z' is discrete"):
        ppzoo.fit(mixture, {"y": np.array([0.1, 2.0], dtype=np.float32)}, engine="pathfinder")


def test_learnable_parameter_is_refused_by_name():
    with pytest.raises(ValueError, match=r"learnable parameters \(scale\)"):
        ppzoo.fit(with_param, {"y": np.array([0.1, 2.0], dtype=np.float32)}, engine="pathfinder")
    with pytest.raises(ValueError, match=r"numpyro.param site\(s\) 'scale'"):
        check_model(with_param, {"y": np.array([0.1, 2.0], dtype=np.float32)})


@pytest.mark.parametrize(
    "options, error, match",
    [
        ({"num_paths": 0}, ValueError, r"`num_paths` must be positive"),
        ({"maxiter": 2.5}, TypeError, r"`maxiter` must be an integer"),
        ({"draws_per_path": 1, "num_paths": 2}, ValueError, r"fewer than 5 draws"),
        ({"ftol": -1.0}, ValueError, r"`ftol` must be positive"),
        ({"importance_resample": "yes"}, TypeError, r"`importance_resample` must be True or False"),
        ({"init_strategy": "pathfinder"}, TypeError, r"`init_strategy` must be a NumPyro init strategy"),
        ({"num_chains": 4}, TypeError, r"Unknown option\(s\) 'num_chains' for engine='pathfinder'"),
    ],
)
def test_bad_options_are_refused(options, error, match):
    with pytest.raises(error, match=match):
        ppzoo.fit(regression, regression_data(), engine="pathfinder", **options)


def test_bad_mcmc_init_strategy_is_refused():
    with pytest.raises(TypeError, match=r"or 'pathfinder'; got 'pathfind'"):
        NUTSOptions(init_strategy="pathfind")


def test_zoo_models_are_run_or_refused_before_compiling():
    """Every zoo model at its smallest instance: Pathfinder's check passes or names what it cannot handle."""
    for name in ppzoo.models.names():
        model = ppzoo.models.get(name, **ppzoo.models.get(name).example.config)
        data = dict(ppzoo.models.get(name).example.data)
        try:
            check_model(model, data)
        except ValueError as error:
            assert "numpyro.param site" in str(error) or "is discrete" in str(error), (name, error)
