"""ppzoo.fit: the same program through three engines, the ArviZ output, and bad input."""

from __future__ import annotations

import arviz_stats
import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppzoo
from ppzoo._runtime import CompileTimer
from tests.conftest import conjugate_model, conjugate_posterior

GROUPS = ("posterior", "sample_stats", "observed_data", "log_likelihood", "posterior_predictive", "prior", "prior_predictive")


@pytest.mark.parametrize("engine", ["nuts", "blackjax", "svi"])
def test_conjugate_posterior_matches_closed_form(conjugate_fits, conjugate_data, engine):
    fit = conjugate_fits[engine]
    mean, sd = conjugate_posterior(conjugate_data)
    draws = fit.samples["mu"]
    assert draws.shape[:2] == ((4, 1000) if engine != "svi" else (1, 4000))
    tree = fit.to_arviz()
    # Monte Carlo standard errors of the mean and the sd from ArviZ (ESS-based, so they hold for
    # autocorrelated MCMC draws and independent SVI draws alike); 4 MCSE is a 1-in-16,000 false alarm.
    mcse_mean = float(arviz_stats.mcse(tree, var_names=["mu"], method="mean")["mu"])
    mcse_sd = float(arviz_stats.mcse(tree, var_names=["mu"], method="sd")["mu"])
    if engine == "svi":
        # SVI's AutoNormal family contains this Gaussian posterior, so only optimisation error is added to
        # the Monte Carlo error: Adam at a constant rate 0.01 with one-particle gradients leaves the final
        # iterate jittering by about the rate, i.e. < 0.1 posterior sd (0.22 here).
        assert abs(draws.mean() - mean) < 4 * mcse_mean + 0.1 * sd
        assert abs(draws.std() - sd) < 4 * mcse_sd + 0.1 * sd
    else:
        assert abs(draws.mean() - mean) < 4 * mcse_mean
        assert abs(draws.std() - sd) < 4 * mcse_sd


@pytest.mark.parametrize("engine", ["nuts", "blackjax", "svi"])
def test_datatree_groups_and_arviz_functions(conjugate_fits, engine):
    tree = conjugate_fits[engine].to_arviz()
    assert set(GROUPS) <= set(tree.children)
    assert tree["posterior"]["mu"].dims == ("chain", "draw")
    assert tree["log_likelihood"]["y"].dims == ("chain", "draw", "data")
    assert tree["observed_data"]["y"].dims == ("data",)
    assert tree["posterior_predictive"]["y"].dims[:2] == ("chain", "draw")
    assert tree["prior_predictive"]["y"].sizes["data"] == 20
    if engine != "svi":
        stats = tree["sample_stats"]
        for name in ("diverging", "lp", "acceptance_rate", "tree_depth", "n_steps", "step_size", "energy"):
            assert name in stats, name
        assert stats["diverging"].dtype == bool
    summary = arviz_stats.summary(tree)
    assert {"mean", "sd", "ess_bulk", "ess_tail", "r_hat", "mcse_mean"} <= set(summary.columns)
    ok, details = arviz_stats.diagnose(tree, show_diagnostics=False, return_diagnostics=True)
    assert "rhat" in details
    loo = arviz_stats.loo(tree)
    assert np.isfinite(loo.elpd)


def test_mcmc_chains_converge_on_conjugate(conjugate_fits):
    for engine in ("nuts", "blackjax"):
        summary = arviz_stats.summary(conjugate_fits[engine].to_arviz(), var_names=["mu"])
        assert summary.loc["mu", "r_hat"] < 1.01
        assert summary.loc["mu", "ess_bulk"] > 400
        assert not conjugate_fits[engine].sample_stats["diverging"].any()


def test_timings_separate_compile_from_run(conjugate_fits):
    for fit in conjugate_fits.values():
        t = fit.timings
        assert t["compile_s"] > 0 and t["run_s"] >= 0
        assert t["total_s"] == pytest.approx(t["compile_s"] + t["run_s"], rel=1e-6)


def test_chains_share_one_compiled_program(conjugate_data):
    """Four chains compile no more programs than two: chains are not recompiled one by one."""
    counts = {}
    # Data of different lengths in the two runs, so that the second cannot reuse the first's programs.
    for chains, length in ((2, 19), (4, 18)):
        timer = CompileTimer()
        with timer.measure():
            ppzoo.fit(conjugate_model, {"y": conjugate_data[:length]}, engine="blackjax", seed=1, num_warmup=50,
                      num_samples=50, num_chains=chains)
        counts[chains] = timer.count
    assert counts[4] <= counts[2]


def test_svi_compiles_once_whatever_the_steps(conjugate_data):
    counts = {}
    for steps, length in ((100, 17), (400, 16)):  # different shapes: no reuse between the two runs
        timer = CompileTimer()
        with timer.measure():
            ppzoo.fit(conjugate_model, {"y": conjugate_data[:length]}, engine="svi", steps=steps, chunk_size=100,
                      num_draws=10)
        counts[steps] = timer.count
    assert counts[400] <= counts[100]  # a recompile per chunk would add 3


@pytest.mark.parametrize("step_loop", ["scan", "python"])
def test_svi_nan_loss_stops_and_keeps_last_good_params(step_loop):
    def model(y=None):
        push = numpyro.param("push", 0.0)  # unconstrained on purpose
        numpyro.factor("reward", push)  # a constant gradient: Adam raises `push` by ~lr every step
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        # ... until push > 3, where the scale is sqrt of a negative number: NaN at a known step (~7).
        numpyro.sample("y", dist.Normal(mu, jax.numpy.sqrt(3.0 - push) + 0.1), obs=y)

    with pytest.warns(UserWarning, match=r"SVI stopped at step \d+: .*last finite loss"):
        fit = ppzoo.fit(model, {"y": np.zeros(5, np.float32)}, engine="svi", steps=400, learning_rate=0.5,
                        num_draws=10, step_loop=step_loop, chunk_size=50)
    assert any("SVI stopped" in w for w in fit.warnings)
    assert np.isfinite(fit.params["push"]) and fit.params["push"] <= 3.0  # the last good value is kept
    assert np.all(np.isfinite(fit.losses[:-1])) and not np.isfinite(fit.losses[-1])
    assert len(fit.losses) < 400


def test_svi_step_loops_agree(conjugate_data):
    """One compiled scan per chunk and one compiled step called from Python run the same steps."""
    fits = {
        loop: ppzoo.fit(conjugate_model, {"y": conjugate_data}, engine="svi", steps=130, chunk_size=50, num_draws=10,
                        seed=3, step_loop=loop)
        for loop in ("scan", "python")
    }
    assert len(fits["scan"].losses) == len(fits["python"].losses) == 130
    # Same keys, same arithmetic; only XLA's fusion differs between the two programs: float32 rounding.
    np.testing.assert_allclose(fits["scan"].losses, fits["python"].losses, rtol=1e-4)
    for name, value in fits["scan"].params.items():
        np.testing.assert_allclose(value, fits["python"].params[name], rtol=1e-4, atol=1e-6)


def test_svi_takes_any_optax_optimizer(conjugate_data):
    """`optimizer` replaces Adam: a schedule that is 0 from the start leaves the guide at its initial values."""
    import optax

    frozen = ppzoo.fit(conjugate_model, {"y": conjugate_data}, engine="svi", steps=60, num_draws=10, seed=1,
                       optimizer=optax.adam(optax.constant_schedule(0.0)), guide="auto_normal")
    moving = ppzoo.fit(conjugate_model, {"y": conjugate_data}, engine="svi", steps=60, num_draws=10, seed=1,
                       guide="auto_normal")
    start = ppzoo.fit(conjugate_model, {"y": conjugate_data}, engine="svi", steps=1, num_draws=10, seed=1,
                      learning_rate=1e-12, guide="auto_normal")
    for name, value in frozen.params.items():
        np.testing.assert_allclose(value, start.params[name], rtol=1e-6, atol=1e-9)
        assert not np.allclose(moving.params[name], start.params[name])
    with pytest.raises(TypeError, match=r"`optimizer` must be an optax.GradientTransformation"):
        ppzoo.fit(conjugate_model, {"y": conjugate_data}, engine="svi", optimizer="adam")


def test_svi_step_loop_auto_detects_convolutions(conjugate_data):
    from ppzoo.inference.svi import _contains_convolution

    kernel = jax.numpy.ones((3, 3, 1, 2))

    def conv(x):
        return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def conv_in_scan(x):
        return jax.lax.scan(lambda c, _: (conv(c)[..., :1], None), x, None, length=2)[0]

    x = jax.numpy.ones((1, 4, 4, 1))
    assert _contains_convolution(conv, x) and _contains_convolution(conv_in_scan, x)
    assert not _contains_convolution(lambda x: jax.numpy.tanh(x @ x.T), jax.numpy.ones((3, 3)))
    with pytest.raises(ValueError, match="step_loop"):
        ppzoo.fit(conjugate_model, {"y": conjugate_data}, engine="svi", step_loop="while")


def test_fixed_network_weights_then_mcmc():
    """A tiny decoder learned by SVI, then NUTS and BlackJAX over z with the weights held fixed."""
    from ppzoo import nn

    def model(x=None, *, num_data: int = 30):
        decoder = nn.mlp("decoder", 1, (8, 2), activation="tanh")
        with numpyro.plate("data", num_data if x is None else x.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
            numpyro.sample("x", dist.Normal(decoder(z), 0.1).to_event(1), obs=x)

    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 1))
    x = (np.concatenate([np.tanh(z), 0.5 * z], 1) + 0.05 * rng.normal(size=(30, 2))).astype(np.float32)
    svi = ppzoo.fit(model, {"x": x}, engine="svi", steps=1500, learning_rate=0.02, num_draws=100)
    assert "decoder$params" in svi.params
    with pytest.raises(ValueError, match="engine='svi' or engine='adversarial' first"):
        ppzoo.fit(model, {"x": x}, engine="nuts")
    for engine in ("nuts", "blackjax"):
        fit = ppzoo.fit(model, {"x": x}, engine=engine, params=svi.params, num_warmup=200, num_samples=200,
                        num_chains=2)
        assert fit.samples["z"].shape == (2, 200, 30, 1)
        # With the learned decoder held fixed, the MCMC posterior regenerates the data: replicated x within
        # 0.3 of the observed on average (noise sd 0.05 plus the decoder's own error). z itself is not
        # identified by 30 points, so it is not compared with the truth.
        replicated = fit.to_arviz()["posterior_predictive"]["x"].mean(("chain", "draw")).values
        assert np.mean(np.abs(replicated - x)) < 0.3


# ---------------------------------------------------------------- bad input: each names the input and the fix


@pytest.fixture
def y():
    return np.zeros(5, np.float32)


def test_unknown_engine(y):
    with pytest.raises(ValueError, match=r"Unknown engine 'hmc'.*'svi', 'nuts', 'blackjax'"):
        ppzoo.fit(conjugate_model, {"y": y}, engine="hmc")


def test_unknown_option_lists_valid(y):
    with pytest.raises(TypeError, match=r"Unknown option\(s\) 'num_sample' for engine='nuts'.*num_samples"):
        ppzoo.fit(conjugate_model, {"y": y}, engine="nuts", num_sample=10)
    with pytest.raises(TypeError, match=r"'num_samples' for engine='svi'.*steps"):
        ppzoo.fit(conjugate_model, {"y": y}, engine="svi", num_samples=10)


@pytest.mark.parametrize(
    ("engine", "option", "value"),
    [("nuts", "num_samples", 0), ("blackjax", "num_chains", -1), ("svi", "steps", 0), ("svi", "learning_rate", -1.0),
     ("nuts", "num_warmup", -5), ("nuts", "target_accept_prob", 1.5)],
)
def test_non_positive_settings(y, engine, option, value):
    with pytest.raises(ValueError, match=option):
        ppzoo.fit(conjugate_model, {"y": y}, engine=engine, **{option: value})


def test_nan_and_inf_in_data():
    bad = np.array([0.0, np.nan, 1.0], np.float32)
    with pytest.raises(ValueError, match=r"data\['y'\] contains 1 NaN or inf.*index \(1,\)"):
        ppzoo.fit(conjugate_model, {"y": bad})
    with pytest.raises(ValueError, match=r"data\['y'\] contains 1 NaN or inf"):
        ppzoo.fit(conjugate_model, {"y": np.array([np.inf, 0.0])})


def test_data_key_not_a_model_argument(y):
    with pytest.raises(TypeError, match=r"data key\(s\) 'x' are not arguments of the model.*num_data, y"):
        ppzoo.fit(conjugate_model, {"x": y})


def test_missing_observed_array():
    with pytest.raises(ValueError, match="no observed site"):
        ppzoo.fit(conjugate_model, {"num_data": 5})


def test_data_not_a_mapping(y):
    with pytest.raises(TypeError, match=r"`data` must be a mapping.*ds.data"):
        ppzoo.fit(conjugate_model, y)


def test_bad_seed(y):
    with pytest.raises(TypeError, match="`seed` must be an integer or a JAX key"):
        ppzoo.fit(conjugate_model, {"y": y}, seed="zero")


def test_unknown_model_name(y):
    with pytest.raises(ValueError, match=r"Unknown model 'icaa'.*ica"):
        ppzoo.fit("icaa", {"x": y})


def test_bad_guide_name(y):
    with pytest.raises(ValueError, match=r"`guide` must be one of 'auto_normal'"):
        ppzoo.fit(conjugate_model, {"y": y}, engine="svi", guide="normal")


def test_errors_come_before_compiling(y):
    timer = CompileTimer()
    with timer.measure(), pytest.raises(ValueError):
        ppzoo.fit(conjugate_model, {"y": np.array([np.nan])}, engine="nuts")
    assert timer.count == 0


@pytest.mark.parametrize("guide", ["auto_mvn", "auto_delta", "auto_lowrank"])
def test_autoguides(conjugate_data, guide):
    fit = ppzoo.fit(conjugate_model, {"y": conjugate_data}, engine="svi", guide=guide, steps=300,
                    learning_rate=0.05, num_draws=50)
    mean, _ = conjugate_posterior(conjugate_data)
    assert fit.samples["mu"].shape == (1, 50)
    # 300 Adam steps at rate 0.05 from the prior get the location within 0.1 (the posterior sd is 0.22).
    assert abs(np.median(fit.samples["mu"]) - mean) < 0.1 + 3 * 0.22 * (guide != "auto_delta")


def test_floyd_subsample_draws_uniform_subsets():
    """The SVI engine's minibatch indices: distinct, in range, every index and pair equally likely."""
    from scipy import stats

    from ppzoo.inference.svi import floyd_subsample

    draws = 20000
    idx = np.asarray(jax.jit(jax.vmap(lambda k: floyd_subsample(50, 10, k)))(jax.random.split(jax.random.key(0), draws)))
    assert idx.min() >= 0 and idx.max() < 50
    assert all(len(set(row)) == 10 for row in idx)
    # Inclusion counts of the 50 indices: multinomial-like, chi-square at the 0.1% level (a uniformity
    # failure of a few percent per index would give p << 1e-3 at 200,000 inclusions).
    assert stats.chisquare(np.bincount(idx.ravel(), minlength=50)).pvalue > 1e-3
    # A pair (first and last index) is included with probability 10 * 9 / (50 * 49); 4 binomial sds.
    p_pair = 90 / 2450
    both = np.mean((idx == 0).any(1) & (idx == 49).any(1))
    assert abs(both - p_pair) < 4 * np.sqrt(p_pair * (1 - p_pair) / draws)
