"""Closed-loop checks: predictive checks, LOO and LOO-PIT verdicts; the report section (``ppzoo check``: test_cli.py)."""

from __future__ import annotations

import re

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppzoo
from ppzoo.checks import closed_loop_section, predictive_checks


def normal_model(y=None, *, num_data: int = 300):
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(5.0))
    with numpyro.plate("data", num_data if y is None else len(y)):
        numpyro.sample("y", dist.Normal(mu, sigma), obs=y)


def flat_model(y=None):
    mu = numpyro.sample("mu", dist.ImproperUniform(dist.constraints.real, (), ()))
    with numpyro.plate("data", len(y)):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def _fit(model, y, seed=0):
    return ppzoo.fit(model, {"y": y}, engine="nuts", seed=seed, num_warmup=300, num_samples=250, num_chains=2)


@pytest.fixture(scope="module")
def checked():
    rng = np.random.default_rng(0)
    well = rng.normal(1.0, 2.0, 300).astype(np.float32)
    # Exponential data under a Normal likelihood: mean and sd are fitted exactly (so their posterior
    # predictive p-values look fine), but the shape is wrong, which LOO-PIT sees.
    skewed = rng.exponential(2.0, 300).astype(np.float32)
    return {
        "well": predictive_checks(_fit(normal_model, well), label="well"),
        "skewed": predictive_checks(_fit(normal_model, skewed), label="skewed"),
    }


def _by_name(results):
    return {c.name: c for c in results}


def test_a_well_specified_model_passes_every_check(checked):
    # Data drawn from the model itself: each check is a 1% test, so all four pass except with ~4% chance.
    results = _by_name(checked["well"])
    assert list(results) == ["prior predictive", "posterior predictive", "LOO", "LOO-PIT"]
    assert all(c.passed for c in results.values()), [c.verdict for c in results.values()]
    assert all(c.figures or c.tables for c in results.values())


def test_loo_pit_catches_a_wrong_likelihood_shape(checked):
    # ArviZ's POT-C test of 300 LOO-PIT values of exponential data under a normal fit: the PIT density is
    # far from flat (too many values near 0 and 1 from the long right tail, too few in the left tail), so
    # the 1% test fails; the moment-based PPC cannot see it (mean and sd are fitted), which is why LOO-PIT
    # is in the loop.
    results = _by_name(checked["skewed"])
    assert results["LOO-PIT"].passed is False, results["LOO-PIT"].verdict
    assert results["posterior predictive"].passed is True


def test_improper_prior_has_no_prior_check():
    y = np.random.default_rng(1).normal(0.5, 1.0, 50).astype(np.float32)
    results = _by_name(predictive_checks(_fit(flat_model, y)))
    assert results["prior predictive"].passed is None
    assert "improper" in results["prior predictive"].verdict
    assert results["LOO"].passed is not None


def concept_model(y=None, u=None, *, num_data: int = 100):
    # Like CausalVAE's concept sites: `mean` is an observed Delta site computed from a latent (so that
    # handlers.do can set it), and the labels `u` enter only through a factor; `y` is the only data.
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    mean = numpyro.sample("mean", dist.Delta(mu), obs=mu)
    with numpyro.plate("data", num_data if y is None else len(y)):
        if u is not None:
            numpyro.factor("labels", dist.Normal(mean, 1.0).log_prob(u))
        numpyro.sample("y", dist.Normal(mean, 1.0), obs=y)


def test_delta_sites_and_factor_data_are_not_checked():
    rng = np.random.default_rng(3)
    y = rng.normal(0.5, 1.0, 100).astype(np.float32)
    u = (y + rng.normal(0.0, 0.1, 100)).astype(np.float32)
    fit = ppzoo.fit(concept_model, {"y": y, "u": u}, engine="nuts", seed=0, num_warmup=200, num_samples=200)
    assert set(fit.sites.observed) == {"mean", "y"}  # NumPyro's view: two observed sites
    results = _by_name(predictive_checks(fit))
    # y alone is checked: LOO applies (one data site), the PPC table has no row for the Delta site.
    assert results["LOO"].passed is not None, results["LOO"].verdict
    assert set(results["posterior predictive"].tables[0][1]["site"]) == {"y"}
    # The scope is said once, on the first verdict: y checked, u not (a factor only), the Delta site left out.
    scope = results["prior predictive"].verdict
    assert "Scope: checked `y`; not checked: data `u`" in scope, scope
    assert "left out: observed sites `mean` (log density identically 0" in scope, scope
    assert "Scope" not in results["LOO"].verdict


def test_a_model_without_data_sites_has_no_predictive_checks():
    def delta_only(u=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("mean", dist.Delta(mu), obs=mu)
        numpyro.factor("labels", dist.Normal(mu, 1.0).log_prob(u).sum())

    u = np.random.default_rng(4).normal(0.0, 1.0, 20).astype(np.float32)
    fit = ppzoo.fit(delta_only, {"u": u}, engine="nuts", seed=0, num_warmup=100, num_samples=100, num_chains=1)
    results = predictive_checks(fit)
    assert all(c.passed is None and "no observed site holds the user's data" in c.verdict for c in results)


def test_too_few_draws_for_loo_is_not_applicable():
    y = np.random.default_rng(5).normal(0.0, 1.0, 30).astype(np.float32)
    fit = ppzoo.fit(normal_model, {"y": y}, engine="nuts", seed=0, num_warmup=20, num_samples=10, num_chains=1)
    results = _by_name(predictive_checks(fit))
    assert results["LOO"].passed is None and "only 10 posterior draws" in results["LOO"].verdict
    assert results["LOO-PIT"].passed is None


def test_section_has_one_verdict_line_per_check(checked):
    section = closed_loop_section(checked["well"] + checked["skewed"])
    assert section.text.count("<li>") == 8
    assert section.text.count("FAIL") >= 1 and section.text.count("PASS") >= 5


@pytest.fixture(scope="module")
def small_fit():
    y = np.random.default_rng(2).normal(0.0, 1.0, 100).astype(np.float32)
    return _fit(normal_model, y)


def test_report_carries_the_closed_loop_section(small_fit, tmp_path):
    out = ppzoo.report(small_fit, tmp_path / "r")
    page = (out / "index.html").read_text()
    assert "Closed loop: predictive checks and LOO" in page
    for name in ("prior predictive (nuts)", "posterior predictive (nuts)", "LOO (nuts)", "LOO-PIT (nuts)"):
        assert name in page


def _broken(*args, **kwargs):
    raise RuntimeError("boom from the plotting library")


def test_a_broken_plot_is_shown_never_hidden(small_fit, tmp_path, monkeypatch):
    import arviz_plots

    monkeypatch.setattr(arviz_plots, "plot_loo_pit", _broken)
    monkeypatch.setattr(arviz_plots, "plot_ppc_dist", _broken)
    with pytest.warns(UserWarning, match="boom from the plotting library"):
        results = _by_name(predictive_checks(small_fit, label="nuts"))
    # The verdicts stand on their tests, not on the plots ...
    for name in ("prior predictive", "posterior predictive", "LOO-PIT"):
        assert results[name].passed is not None, results[name].verdict
        # ... and each failed plot is in its place as a figure that says what stopped it.
        (caption, figure), = results[name].figures
        assert "the plot failed: RuntimeError: boom from the plotting library" in caption, caption
        assert "boom from the plotting library" in figure.axes[0].texts[0].get_text()
    with pytest.warns(UserWarning, match="boom"):
        out = ppzoo.report(small_fit, tmp_path / "broken")
    page = (out / "index.html").read_text()
    shown = re.findall(r"<figcaption>[^<]*the plot failed: RuntimeError: boom from the plotting library", page)
    assert len(shown) == 3, shown


def poisson_model(y=None, *, num_data: int = 60):
    rate = numpyro.sample("rate", dist.LogNormal(1.0, 1.0))
    with numpyro.plate("data", num_data if y is None else len(y)):
        numpyro.sample("y", dist.Poisson(rate), obs=y)


def test_count_data_get_a_rootogram_and_no_warnings():
    import warnings

    import matplotlib.pyplot as plt

    y = np.random.default_rng(0).poisson(3.0, 60)
    fit = _fit(poisson_model, y)
    # Checks hand their figures to the caller open (the report saves and closes them); those other tests of this
    # worker left open would trip matplotlib's "more than 20 figures" warning here, so start from none.
    plt.close("all")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = _by_name(predictive_checks(fit, label="counts"))
    assert [str(w.message)[:80] for w in caught] == []
    captions = [caption for check in results.values() for caption, _ in check.figures]
    plt.close("all")
    assert any("rootogram" in c for c in captions), captions


def test_is_mcmc_asks_the_engine_record(small_fit, monkeypatch):
    """Whether a fit is judged by R-hat and ESS is its engine record's answer, not a guess from the fit
    (a NUTS fit has no losses; an engine registered as not MCMC gets no convergence check either way)."""
    import dataclasses

    from ppzoo import inference
    from ppzoo.checks import is_mcmc

    assert is_mcmc(small_fit) and small_fit.losses is None
    iid = dataclasses.replace(inference.get("nuts"), name="nuts_as_iid", is_mcmc=False)
    monkeypatch.setitem(inference.ENGINES, iid.name, iid)
    assert not is_mcmc(dataclasses.replace(small_fit, engine=iid.name))
