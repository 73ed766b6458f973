"""SVI that converges by default: Laplace start, whitened steps, the stop rule, and bad options (issue 17, item 2)."""

from __future__ import annotations

from contextlib import nullcontext

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

import ppzoo
from ppzoo._runtime import CompileTimer
from ppzoo.fit import inspect_model
from ppzoo.inference import laplace
from ppzoo.inference import svi as svi_engine

#: Coefficient scales of the badly scaled regression: six orders of magnitude.
SCALES = np.array([1e-3, 1e-1, 1e1, 1e3])
NOISE_SD = 1.0


def flat_regression(X, y=None):
    """y ~ Normal(X @ beta, 1) with Stan's implicit flat prior on beta: the posterior is Gaussian in closed form."""
    beta = numpyro.sample("beta", dist.ImproperUniform(constraints.real, (), (X.shape[1],)))
    numpyro.sample("y", dist.Normal(X @ beta, NOISE_SD), obs=y)


@pytest.fixture(scope="module")
def regression():
    """Orthogonal predictors whose norms make the coefficients (and their posterior sds) span 1e-3 .. 1e3.

    Orthogonal columns make the posterior's covariance diagonal, so the default guide (AutoNormal) contains
    it and any error left is optimisation error.
    """
    rng = np.random.default_rng(0)
    n = 200
    q, _ = np.linalg.qr(rng.normal(size=(n, len(SCALES))))
    X = (q * np.sqrt(n) / SCALES).astype(np.float32)
    beta = SCALES * np.array([1.0, -2.0, 0.5, 3.0])
    y = (X @ beta + NOISE_SD * rng.normal(size=n)).astype(np.float32)
    X64 = X.astype(np.float64)
    covariance = NOISE_SD**2 * np.linalg.inv(X64.T @ X64)
    return {"X": X, "y": y}, covariance @ X64.T @ y, np.sqrt(np.diag(covariance))


@pytest.fixture(scope="module")
def default_fit(regression):
    data, _, _ = regression
    return ppzoo.fit(flat_regression, data, engine="svi", seed=0)


def test_badly_scaled_flat_regression_matches_closed_form_from_defaults(regression, default_fit):
    """The default settings (AutoNormal, init and stop 'auto') reach the closed-form posterior.

    The fit's draws are independent, so their Monte Carlo standard errors are sd / sqrt(n) for the mean and
    sd / sqrt(2 (n - 1)) for the sd (Gaussian draws); 4 MCSE is a 1-in-16,000 false alarm per number. Before
    the Laplace start, 10,000 Adam steps left these means hundreds to thousands of MCSEs off.
    """
    _, mean, sd = regression
    draws = default_fit.samples["beta"][0]
    n = draws.shape[0]
    assert n == svi_engine.SVIOptions().num_draws
    mcse_mean = sd / np.sqrt(n)
    mcse_sd = sd / np.sqrt(2 * (n - 1))
    np.testing.assert_array_less(np.abs(draws.mean(0) - mean), 4 * mcse_mean)
    np.testing.assert_array_less(np.abs(draws.std(0, ddof=1) - sd), 4 * mcse_sd)


def test_stop_rule_stops_a_converged_run_early(default_fit):
    steps = svi_engine.SVIOptions().steps
    assert len(default_fit.losses) < steps
    assert np.all(np.isfinite(default_fit.losses))
    assert not any("did not converge" in w for w in default_fit.warnings)
    # The run ended on an epoch boundary (chunk * (2**(k+1) - 1) steps), where the rule is checked.
    assert svi_engine.is_epoch_end(len(default_fit.losses), svi_engine.SVIOptions().chunk_size)
    # The fitted guide keeps the autoguide's own parameter names (the whitened ones are mapped back).
    assert set(default_fit.params) == {"beta_auto_loc", "beta_auto_scale"}


def test_stop_rule_warns_when_steps_run_out(regression):
    """50 steps are one epoch: nothing to compare, so the rule cannot be met and the fit says so."""
    data, _, _ = regression
    with pytest.warns(UserWarning, match=r"SVI did not converge within steps=50: fewer than two epochs"):
        fit = ppzoo.fit(flat_regression, data, engine="svi", seed=0, steps=50, num_draws=10, psis_draws=0)
    assert len(fit.losses) == 50


def test_check_epoch_needs_the_average_to_stop_moving():
    """The rule on hand-made trackers: an average that moved by 0.3 has not converged; one that moved by
    0.01 has; the first epoch never has (nothing to compare with)."""
    state = svi_engine.TrainState(None, None, svi_engine.Tracker(jnp.zeros(4), jnp.full(4, 2.0), jnp.array(10)))
    first = svi_engine.Convergence(jnp.zeros(4), jnp.array(jnp.inf), jnp.array(jnp.inf), jnp.array(False),
                                   jnp.array(0))
    assert not bool(svi_engine.check_epoch(state, first, 0.05).converged)
    # The tracker's average is 0 + 2.0 / 10 = 0.2 in every coordinate.
    moved = first._replace(average=jnp.full(4, -0.1), epochs=jnp.array(1))
    record = svi_engine.check_epoch(state, moved, 0.05)
    assert not bool(record.converged) and float(record.rms_change) == pytest.approx(0.3)
    still = first._replace(average=jnp.full(4, 0.19), epochs=jnp.array(1))
    assert bool(svi_engine.check_epoch(state, still, 0.05).converged)
    # One coordinate far off fails the largest-change bound even when the rms is small.
    one_off = first._replace(average=jnp.array([0.2, 0.2, 0.2, -0.1]), epochs=jnp.array(1))
    assert not bool(svi_engine.check_epoch(state, one_off, 0.1).converged)


def test_epochs_double_and_the_step_size_halves():
    chunk = 50
    epochs = np.asarray(svi_engine.epoch_of(jnp.arange(0, 800), chunk))
    # Epoch k runs chunk * 2**k steps: 50 at epoch 0, 100 at epoch 1, 200 at epoch 2, 400 at epoch 3.
    assert [int((epochs == k).sum()) for k in range(4)] == [50, 100, 200, 400]
    assert [s for s in range(1, 800) if svi_engine.is_epoch_end(s, chunk)] == [50, 150, 350, 750]


def _with_weights(x=None):
    w = numpyro.param("w", jnp.ones(2))
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("x", dist.Normal(mu * w.sum(), 1.0), obs=x)


def _conjugate(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    with numpyro.plate("data", 5 if y is None else len(y)):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def test_auto_picks_laplace_only_for_global_latent_gaussian_guides():
    y = {"y": np.zeros(5, np.float32)}
    sites = inspect_model(_conjugate, y)
    options = svi_engine.SVIOptions()
    for name in ("auto_normal", "auto_mvn"):
        plan = svi_engine.plan_for(_conjugate, svi_engine.make_guide(_conjugate, name), options, sites, y)
        assert (plan.init, plan.stop) == ("laplace", "converge")
    plan = svi_engine.plan_for(_conjugate, svi_engine.make_guide(_conjugate, "auto_delta"), options, sites, y)
    assert (plan.init, plan.stop) == ("prior", "max_steps")
    assert plan.reasons == ("its guide is AutoDelta, not auto_normal or auto_mvn",)
    # A model with learnable parameters (a network) keeps the behaviour from before: prior start, all steps.
    x = {"x": np.zeros(3, np.float32)}
    weights = inspect_model(_with_weights, x)
    plan = svi_engine.plan_for(_with_weights, svi_engine.make_guide(_with_weights, None), options, weights, x)
    assert (plan.init, plan.stop) == ("prior", "max_steps")
    assert "learnable parameters (w)" in plan.reasons[0]
    # Asked for explicitly, converge runs on any model.
    plan = svi_engine.plan_for(_with_weights, svi_engine.make_guide(_with_weights, None),
                               svi_engine.SVIOptions(stop="converge"), weights, x)
    assert (plan.init, plan.stop) == ("prior", "converge")


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [("init", "bfgs", r"`init` must be 'auto', 'laplace' or 'prior'; got 'bfgs'"),
     ("stop", "never", r"`stop` must be 'auto', 'converge' or 'max_steps'; got 'never'"),
     ("tolerance", 0.0, r"`tolerance` must be a positive number; got 0.0. Example: tolerance=0.05"),
     ("tolerance", "tight", r"`tolerance` must be a positive number"),
     ("laplace_starts", -1, r"`laplace_starts` must be 0 or more; got -1. Example: laplace_starts=8")],
)
def test_bad_options_are_refused_before_compiling(option, value, match):
    timer = CompileTimer()
    with timer.measure(), pytest.raises(ValueError, match=match):
        ppzoo.fit(_conjugate, {"y": np.zeros(5, np.float32)}, engine="svi", **{option: value})
    assert timer.count == 0


@pytest.mark.parametrize(
    ("model", "data", "guide", "why"),
    [(_with_weights, {"x": np.zeros(3, np.float32)}, None, r"learnable parameters \(w\)"),
     (_conjugate, {"y": np.zeros(5, np.float32)}, "auto_delta", "not auto_normal or auto_mvn")],
)
def test_laplace_on_a_model_it_does_not_fit_is_refused_before_compiling(model, data, guide, why):
    timer = CompileTimer()
    with timer.measure(), pytest.raises(ValueError, match=rf"init='laplace' needs a global-latent model.*{why}.*init='prior'"):
        ppzoo.fit(model, data, engine="svi", init="laplace", guide=guide)
    assert timer.count == 0


# ------------------------------------------------------------------ several L-BFGS starts (a multimodal posterior)


def _two_modes(minor_weight):
    """z ~ Normal(0, 10) times a two-component mixture likelihood: a minor mode at 0.2 (nearest the prior median
    0, where L-BFGS from the median stops) and a major one at 1.8, both of sd 0.3. The density ratio of the
    two modes is (1 - w) / w, since the components have the same width and barely overlap."""

    def model():
        z = numpyro.sample("z", dist.Normal(0.0, 10.0))
        mixture = jnp.logaddexp(jnp.log(minor_weight) + dist.Normal(0.2, 0.3).log_prob(z),
                                jnp.log1p(-minor_weight) + dist.Normal(1.8, 0.3).log_prob(z))
        numpyro.factor("likelihood", mixture)

    return model


@pytest.mark.parametrize(("minor_weight", "warned"), [(0.3, True), (0.004, False)])
def test_several_starts_find_the_highest_mode_and_warn_when_another_is_comparable(minor_weight, warned):
    # Density ratio 2.3 (within the factor 100: a warning) and 249 (beyond it: the minor mode holds < 1% of
    # the mass, no warning). L-BFGS from the prior median alone ends at the minor mode; with the uniform
    # starts the Laplace start is the major one, and so are the fit's draws (a Gaussian around 1.8 with sd
    # ~0.3: |mean - 1.8| < 0.1 is > 10 Monte Carlo sds of the 1000-draw mean, and far from 0.2).
    model = _two_modes(minor_weight)
    start, layout = laplace.initial_point(model, {}, jax.random.PRNGKey(0))
    potential = laplace.flat_potential(model, layout, {})
    alone = laplace.laplace(potential, start)
    several = laplace.laplace(potential, start, more_starts=laplace.uniform_starts(jax.random.PRNGKey(1), 8, 1))
    assert abs(float(alone.loc[0]) - 0.2) < 0.01 and abs(float(several.loc[0]) - 1.8) < 0.01
    assert int(several.optima.chosen) > 0 and laplace.other_modes(alone) == []
    gaps = laplace.other_modes(several)
    if warned:  # the minor mode: log((1 - w) / w) = 0.85 nats lower, (1.8 - 0.2) / 0.3 = 5.3 sds away
        assert len(gaps) == 1 and abs(gaps[0][0] - np.log(0.7 / 0.3)) < 0.05 and abs(gaps[0][1] - 5.33) < 0.2
    else:
        assert gaps == []
    fit = ppzoo.fit(model, {}, engine="svi", seed=0, guide="auto_normal", psis_draws=0)
    assert abs(float(np.mean(fit.samples["z"])) - 1.8) < 0.1
    multimodal = [w for w in fit.warnings if "within a factor 100 of the density" in w]
    assert bool(multimodal) == warned, fit.warnings
    if warned:
        assert "0.8 nats lower, 5.3 posterior sds away" in multimodal[0] and "check the fit against NUTS" in multimodal[0]


def _correlated(rho):
    """A correlated bivariate normal posterior: flat prior, the density as a factor."""

    def model():
        z = numpyro.sample("z", dist.ImproperUniform(constraints.real, (), (2,)))
        numpyro.factor("density", dist.MultivariateNormal(jnp.zeros(2), jnp.array([[1.0, rho], [rho, 1.0]])).log_prob(z))

    return model


def test_a_mean_field_guide_on_a_correlated_posterior_is_warned_before_training():
    # For a Gaussian the best mean-field sds are 1 / sqrt(H_ii); against the marginal sd 1 that is
    # sqrt(1 - rho^2): 0.31 at rho = -0.95 (warned, below 0.85), 0.87 at rho = 0.5 (not warned; the
    # boundary 0.85 is rho = 0.53).
    def approximation(covariance):
        tril = jnp.linalg.cholesky(jnp.asarray(covariance))
        return laplace.Laplace(jnp.zeros(len(tril)), tril, jnp.array(True), jnp.array(0.0), jnp.array(1))

    layout = laplace.Layout(("z",), ((2,),))
    text = svi_engine.mean_field_warning(approximation([[1.0, -0.95], [-0.95, 1.0]]), layout)
    assert text.startswith("SVI guide auto_normal is mean-field: at the MAP the posterior's correlations limit its "
                           "sds to 0.31 of the marginal sds for z[0] (2 of 2 unconstrained coordinates below 0.85)")
    assert svi_engine.mean_field_warning(approximation([[1.0, 0.5], [0.5, 1.0]]), layout) is None
    # On a fit: AutoNormal is warned, AutoMultivariateNormal (which holds the correlation) is not.
    normal = ppzoo.fit(_correlated(-0.95), {}, engine="svi", seed=0, guide="auto_normal", psis_draws=0)
    mvn = ppzoo.fit(_correlated(-0.95), {}, engine="svi", seed=0, guide="auto_mvn", psis_draws=0)
    assert any("is mean-field" in w and "0.31 of the marginal sds" in w for w in normal.warnings), normal.warnings
    assert not any("is mean-field" in w for w in mvn.warnings)
    assert np.std(normal.samples["z"][..., 0]) < 0.45  # the guide's sds are indeed too small (~0.31)


def correlated_pair(y=None):
    """Two latents at correlation -0.95 and one observation of their sum: a Gaussian posterior."""
    x = numpyro.sample("x", dist.MultivariateNormal(jnp.zeros(2), jnp.array([[1.0, -0.95], [-0.95, 1.0]])))
    numpyro.sample("y", dist.Normal(x.sum(), 1.0), obs=y)


@pytest.mark.parametrize("options", [
    pytest.param(dict(guide="auto_mvn", importance_resample=True), id="resampled"),
    pytest.param(dict(guide="auto_normal", steps=400, tolerance=1e-6), id="not-converged-mean-field"),
    pytest.param(dict(guide="auto_mvn", learning_rate=1e8, psis_draws=0), id="nan-stop-no-psis"),
])
def test_one_program_fit_equals_the_general_path(monkeypatch, options):
    """A global-latent fit on the default plan runs as one compiled program (``run_global``); it must give what
    the general path (separate programs for the Laplace start, the chunks, PSIS and the draws) gives: same
    draws, losses, warnings and diagnostics. Exact equality is what was measured (the same operations on the
    same keys) on most draws; XLA fuses the two programs differently, which moved a loss near zero by 2.4e-7
    (one float32 ulp of the terms summed), hence tolerances of 1e-5."""
    data = {"y": np.float32(0.3)}
    small = dict(num_draws=200, laplace_starts=2, **options)
    small.setdefault("psis_draws", 100)
    runs = []
    real = svi_engine.run_global
    monkeypatch.setattr(svi_engine, "run_global", lambda *a, **k: runs.append(1) or real(*a, **k))
    with pytest.warns(UserWarning) if options.get("learning_rate") or options.get("tolerance") else nullcontext():
        one = ppzoo.fit(correlated_pair, data, engine="svi", seed=3, **small)
    assert runs == [1]
    monkeypatch.setattr(svi_engine, "in_one_program", lambda *a, **k: False)
    with pytest.warns(UserWarning) if options.get("learning_rate") or options.get("tolerance") else nullcontext():
        general = ppzoo.fit(correlated_pair, data, engine="svi", seed=3, **small)
    assert runs == [1]
    assert one.warnings == general.warnings
    np.testing.assert_allclose(one.losses, general.losses, rtol=1e-5, atol=1e-5)  # losses cross zero
    for name in general.samples:
        np.testing.assert_allclose(one.samples[name], general.samples[name], rtol=1e-5, atol=1e-6)
    assert one.pareto_k == pytest.approx(general.pareto_k, abs=1e-5) if general.pareto_k is not None else one.pareto_k is None
    assert set(one.diagnostics) == set(general.diagnostics)
    if options.get("learning_rate"):
        assert any("SVI stopped at step" in w for w in one.warnings)
        assert one.diagnostics["psis_skipped"] == general.diagnostics["psis_skipped"]
    if options.get("tolerance"):
        assert any("did not converge" in w for w in one.warnings)
        assert any("mean-field" in w for w in one.warnings)

