"""A model whose likelihood is a ``numpyro.factor`` (a marginalised mixture, as in Stan or NumPyro's examples)
fits with every engine; its report says n/a, with the reason, for the checks that need an observed site."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
from jax.scipy.special import logsumexp

import ppzoo

TRUE_LOCS = (-2.0, 3.0)
TRUE_WEIGHT, NUM_DATA = 0.6, 100


def mixture(x):
    """Two Gaussian components with a shared scale, the component of each point summed out:
    ``log p(x_i) = logsumexp_k(log w_k + log N(x_i | loc_k, scale))``, added as one factor. The ordered
    locations fix the labelling (no label switching between chains)."""
    weight = numpyro.sample("weight", dist.Beta(2.0, 2.0))
    locs = numpyro.sample("locs", dist.TransformedDistribution(dist.Normal(0.0, 5.0).expand([2]).to_event(1),
                                                               dist.transforms.OrderedTransform()))
    scale = numpyro.sample("scale", dist.HalfNormal(2.0))
    log_w = jnp.stack([jnp.log(weight), jnp.log1p(-weight)])
    per_component = log_w[:, None] + dist.Normal(locs[:, None], scale).log_prob(x)
    numpyro.factor("mixture", logsumexp(per_component, axis=0).sum())


@pytest.fixture(scope="module")
def x():
    rng = np.random.default_rng(0)
    first = rng.random(NUM_DATA) < TRUE_WEIGHT
    return np.where(first, rng.normal(TRUE_LOCS[0], 1.0, NUM_DATA), rng.normal(TRUE_LOCS[1], 1.0, NUM_DATA)).astype(
        np.float32)


@pytest.fixture(scope="module")
def fits(x):
    mcmc = {"num_warmup": 300, "num_samples": 300, "num_chains": 2}
    return {
        "nuts": ppzoo.fit(mixture, {"x": x}, engine="nuts", seed=0, **mcmc),
        "blackjax": ppzoo.fit(mixture, {"x": x}, engine="blackjax", seed=0, **mcmc),
        "svi": ppzoo.fit(mixture, {"x": x}, engine="svi", seed=0, steps=1500, learning_rate=0.02, num_draws=400),
    }


def test_the_factor_is_the_likelihood_not_an_observed_site(fits):
    sites = fits["nuts"].sites
    assert sites.observed == [] and sites.factors == ["mixture"]
    assert set(sites.latent) == {"weight", "locs", "scale"}


@pytest.mark.parametrize("engine", ["nuts", "blackjax", "svi"])
def test_every_engine_recovers_the_mixture_means(fits, engine):
    # 100 points, ~60 and ~40 per component at unit scale: each location's posterior sd is ~0.13-0.16. The
    # truth lies within 4 posterior sd of the posterior mean unless the data are a 1-in-16,000 draw (the
    # Monte Carlo error of the mean, sd / sqrt(ESS), adds < 0.1 sd at these sizes). SVI's mean-field guide adds
    # its optimisation error (Adam at a constant rate jitters by ~the rate, 0.02): 0.1 on top, as in test_fit.
    # BlackJAX's chains from uniform starts can settle in the merged-components mode (both locations near the
    # data mean, a wide scale): measured 2026-12-07, 2 of seeds 1-5 with diagonal and 2 of 5 with dense
    # adaptation (NumPyro's NUTS: 0 of 5 either way), so recovery is not a property of one BlackJAX run here.
    # What must hold is that such a run is not silent: its chains disagree (r_hat) and it warns.
    fit = fits[engine]
    draws = fit.samples["locs"].reshape(-1, 2)
    reference_sd = fits["nuts"].samples["locs"].reshape(-1, 2).std(0)
    slack = 0.1 if engine == "svi" else 0.0
    error = np.abs(draws.mean(0) - np.asarray(TRUE_LOCS))
    recovered = bool(np.all(error < 4 * reference_sd + slack))
    if engine == "blackjax" and not recovered:
        from ppzoo.checks import max_r_hat
        assert max_r_hat(fit, ["locs"]) > 1.1 and fit.warnings, (draws.mean(0), fit.warnings)
        return
    assert recovered, (engine, draws.mean(0), reference_sd)
    if engine != "svi":
        assert not fit.sample_stats["diverging"].any()


def test_datatree_has_no_observed_groups(fits):
    tree = fits["nuts"].to_arviz()
    assert {"posterior", "sample_stats", "prior"} <= set(tree.children)
    for group in ("observed_data", "log_likelihood", "posterior_predictive", "prior_predictive"):
        assert group not in tree.children, group


def test_report_says_na_with_the_reason(fits, tmp_path):
    out = ppzoo.report(fits, tmp_path / "mixture")
    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False)  # "n/a" is a verdict, not a missing value
    page = (out / "index.html").read_text()
    for engine in fits:
        rows = verdicts[verdicts["engine"] == engine].set_index("name")
        for check in ("prior predictive", "posterior predictive", "LOO", "LOO-PIT"):
            assert rows.loc[check, "verdict"] == "n/a", (engine, check)
            assert "the likelihood is the numpyro.factor `mixture`, not an observed site" in rows.loc[check, "detail"]
    assert "leave one observation out" in page and "cannot replicate the data" in page
    # The checks that do not need an observed site still apply (a verdict, not n/a).
    judged = verdicts[verdicts["name"].isin(["convergence", "engines agree"])]
    assert sorted(judged["name"]) == ["convergence", "convergence", "engines agree"]
    assert set(judged[judged["name"] == "convergence"]["verdict"]) <= {"PASS", "FAIL"}, judged
    # Engines agree is judged against a converged MCMC fit. On a fresh install here (2026-12-08) neither MCMC fit
    # met r_hat <= 1.01 (one ended at 1.011 at locs[1]; CI's machine passed the same code), and the check then says
    # n/a for that reason, which is true; what must not happen is an n/a for the factor likelihood.
    agree = judged[judged["name"] == "engines agree"].iloc[0]
    assert agree["verdict"] in {"PASS", "FAIL"} or "no MCMC fit has converged" in agree["detail"], agree
    assert "factor" not in agree["detail"], agree
