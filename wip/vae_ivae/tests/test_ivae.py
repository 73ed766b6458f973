"""Tests of the iVAE zoo model (and its VAE variant), the encoder helper and the amortization gap."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from numpyro import handlers
from numpyro.infer import SVI, Predictive, Trace_ELBO
from numpyro.optim import optax_to_numpyro

import ppzoo
from ppzoo.amortization import amortization_gap, gaussian_w2, marginal_w2
from ppzoo.metrics import mcc
from ppzoo.models.ivae import IVAEConfig, encode, prior_log_variance

K, M, D = 2, 4, 3  # tiny sizes for the structural tests
SMALL = dict(num_segments=M, hidden=(8,))


def _tiny_data(n_per_segment=10, num_segments=M, seed=0):
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(num_segments), n_per_segment)
    x = rng.normal(size=(u.size, D)).astype(np.float32)
    return {"x": x, "u": u}


@pytest.fixture(scope="module")
def tiny_fit():
    """One short SVI fit through ppzoo.fit (all points every step), reused by several tests."""
    model = ppzoo.models.get("ivae", num_sources=K, **SMALL)
    return ppzoo.fit(model, _tiny_data(), engine="svi", steps=50, learning_rate=1e-2, num_draws=20, seed=0)


# ------------------------------------------------------------------------------------------- structure


@pytest.mark.parametrize("conditional", [True, False])
def test_sites_and_shapes(conditional):
    model = ppzoo.models.get("ivae", num_sources=K, conditional_prior=conditional, **SMALL)
    data = _tiny_data()
    n = data["x"].shape[0]
    trace = handlers.trace(handlers.seed(model, 0)).get_trace(**data)
    assert trace["z"]["value"].shape == (n, K) and not trace["z"]["is_observed"]
    assert trace["x"]["is_observed"] and trace["x"]["fn"].event_shape == (D,)
    assert [f.name for f in trace["z"]["cond_indep_stack"]] == ["data"]
    assert "decoder$params" in trace
    assert ("prior_net$params" in trace) == conditional
    if conditional:
        # The prior of each point is its segment's row of the prior network's table.
        scale = trace["z"]["fn"].base_dist.scale
        params = {k: v["value"] for k, v in trace.items() if v["type"] == "param"}
        fake_fit = types.SimpleNamespace(model=model, params=params, data=data)
        table = prior_log_variance(fake_fit)
        assert table.shape == (M, K)
        np.testing.assert_allclose(scale, np.exp(0.5 * table[data["u"]]), rtol=1e-5)
    else:
        z = trace["z"]["value"]
        expected = -0.5 * (z**2 + np.log(2 * np.pi)).sum(-1)  # standard normal prior
        np.testing.assert_allclose(trace["z"]["fn"].log_prob(z), expected, rtol=1e-5)
    guide_trace = handlers.trace(handlers.seed(model.make_guide(), 0)).get_trace(**data)
    assert guide_trace["z"]["value"].shape == (n, K)
    encoder_in = jax.tree.leaves(guide_trace["encoder$params"]["value"])
    # The iVAE's encoder sees [x, one_hot(u)], the VAE's only x: the first kernel is (D + M) x hidden or D x hidden.
    assert (D + M if conditional else D, 8) in [np.shape(leaf) for leaf in encoder_in]


def test_prior_predictive_generates_data():
    model = ppzoo.models.get("ivae", num_sources=K, num_observed=D, **SMALL)
    u = np.repeat(np.arange(M), 5)
    draws = Predictive(model, num_samples=3)(jax.random.key(0), u=u)
    assert draws["x"].shape == (3, u.size, D) and draws["z"].shape == (3, u.size, K)
    assert np.all(np.isfinite(draws["x"]))
    vae = ppzoo.models.get("ivae", num_sources=K, num_observed=D, conditional_prior=False, **SMALL)
    assert Predictive(vae, num_samples=2)(jax.random.key(1), num_data=7)["x"].shape == (2, 7, D)


def test_minibatch_elbo_is_unbiased_for_the_full_elbo():
    """Subsampling scales the minibatch ELBO by N / batch: its mean over batches is the full-data ELBO."""
    data = _tiny_data(n_per_segment=25)
    full = ppzoo.models.get("ivae", num_sources=K, **SMALL)
    batched = full.with_config(batch_size=10)
    svi = SVI(full, full.make_guide(), optax_to_numpyro(optax.adam(1e-3)), Trace_ELBO())
    state = svi.init(jax.random.key(0), **data)
    params = svi.get_params(state)
    keys = jax.random.split(jax.random.key(1), 200)

    def losses(model):
        loss = lambda key: Trace_ELBO().loss(key, params, model, model.make_guide(), **data)  # noqa: E731
        return np.asarray(jax.jit(jax.vmap(loss))(keys))

    a, b = losses(full), losses(batched)
    # Both are Monte Carlo estimates of the same expectation; their means agree within 4 standard errors.
    se = np.sqrt(a.var() / a.size + b.var() / b.size)
    assert abs(a.mean() - b.mean()) < 4 * se
    assert b.std() > a.std()  # subsampling adds variance: the test would pass trivially if it subsampled nothing


# -------------------------------------------------------------------------------------- ppzoo.fit


def test_fit_with_ppzoo_svi_and_datatree_groups(tiny_fit):
    assert np.all(np.isfinite(tiny_fit.losses)) and len(tiny_fit.losses) == 50
    assert tiny_fit.losses[-10:].mean() < tiny_fit.losses[:10].mean()
    assert tiny_fit.samples["z"].shape == (1, 20, M * 10, K)
    assert {"encoder$params", "decoder$params", "prior_net$params"} <= set(tiny_fit.params)
    tree = tiny_fit.to_arviz(predictive_draws=10, prior_draws=10)
    groups = {"posterior", "sample_stats", "observed_data", "log_likelihood", "posterior_predictive", "prior",
              "prior_predictive"}
    assert groups <= set(tree.children)
    assert tree["log_likelihood"]["x"].shape == (1, 20, 40)


def test_encode_matches_the_guide_and_handles_new_points(tiny_fit):
    data = tiny_fit.data
    mean, sd = encode(tiny_fit, data["x"], data["u"])
    assert mean.shape == sd.shape == (40, K) and np.all(sd > 0)
    # The fit's draws come from the same encoder: their mean approaches the encoder mean
    # (20 draws: standard error sd / sqrt(20); 5 standard errors).
    draws = tiny_fit.samples["z"][0]
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * sd / np.sqrt(20))
    new_mean, _ = encode(tiny_fit, data["x"][:3] + 1.0, np.array([0, 3, 3]))
    assert new_mean.shape == (3, K)
    assert prior_log_variance(tiny_fit).shape == (M, K)


def test_encode_rejects_other_fits():
    with pytest.raises(TypeError, match="ivae"):
        encode(types.SimpleNamespace(model=ppzoo.models.get("ica"), params={}, data={}), np.zeros((2, 2)))


# ------------------------------------------------------------------------------------------- bad input


def test_u_length_differs_from_x():
    model = ppzoo.models.get("ivae", **SMALL)
    data = _tiny_data()
    with pytest.raises(ValueError, match=r"`u` has 39 entries but `x` has 40 rows"):
        ppzoo.fit(model, {"x": data["x"], "u": data["u"][:-1]}, engine="svi", steps=1)


def test_single_segment_warns_not_identifiable():
    model = ppzoo.models.get("ivae", hidden=(8,))
    data = _tiny_data(num_segments=1)
    with pytest.warns(UserWarning, match=r"`u` has a single segment .*not identifiable"):
        model.check_data(data, model.config)


def test_more_sources_than_observed_dimensions():
    model = ppzoo.models.get("ivae", num_sources=D + 1, **SMALL)
    with pytest.raises(ValueError, match=r"num_sources=4 is larger than the observed dimension of `x` \(3\)"):
        ppzoo.fit(model, _tiny_data(), engine="svi", steps=1)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda d: {"x": d["x"]}, ValueError, "needs the auxiliary variable `u`"),
        (lambda d: {**d, "u": np.eye(M)[d["u"]].astype(np.int64)}, ValueError, "must be 1-D integer segment indices"),
        (lambda d: {**d, "u": d["u"].astype(np.float32)}, TypeError, "integer segment indices"),
        (lambda d: {**d, "u": d["u"] - 1}, ValueError, "negative segment index"),
        (lambda d: {**d, "u": d["u"] + 1}, ValueError, "segment index 4 but num_segments=4"),
        (lambda d: {**d, "x": d["x"][:, 0]}, ValueError, "must be 2-D"),
    ],
)
def test_bad_data(change, error, match):
    model = ppzoo.models.get("ivae", **SMALL)
    with pytest.raises(error, match=match):
        model.check_data(change(_tiny_data()), model.config)


@pytest.mark.parametrize(
    "config, error, match",
    [
        ({"num_sources": 0}, ValueError, "num_sources must be a positive integer"),
        ({"batch_size": -3}, ValueError, "batch_size must be a positive integer"),
        ({"hidden": [8]}, ValueError, "hidden must be a non-empty tuple"),
        ({"hidden": ()}, ValueError, "hidden must be a non-empty tuple"),
        ({"activation": "swish"}, ValueError, "activation must be one of"),
        ({"observation_noise": 0.0}, ValueError, "observation_noise must be a positive number"),
        ({"conditional_prior": "yes"}, TypeError, "conditional_prior must be True or False"),
        ({"seed": 1.5}, TypeError, "seed must be an integer"),
        ({"latent_dim": 3}, TypeError, "Unknown config field.*'latent_dim'"),
    ],
)
def test_bad_config(config, error, match):
    with pytest.raises(error, match=match):
        ppzoo.models.get("ivae", **config)


def test_generating_without_u_is_an_error():
    model = ppzoo.models.get("ivae", num_observed=D, **SMALL)
    with pytest.raises(ValueError, match="needs the auxiliary variable `u`"):
        handlers.seed(model, 0)()


# ------------------------------------------------------------------------------------ amortization gap


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


# ---------------------------------------------------------------------------- recovery and exact posterior

# Reduced setting of the issue: 3 sources, 10 segments x 500 training points (+100 held out), 2-layer xtanh
# mixing, standardized x, decoder noise sd 0.1. Trained with NumPyro's SVI on minibatches of 64 (ppzoo.fit's SVI engine cannot yet
# draw a subsampled model on all the data; once it can, this becomes ppzoo.fit(..., engine="svi")).
# Thresholds MEASURED with exactly this setting and training (script over seeds 0-4, seed = data and network
# seed; the test runs seed 0). Held-out Pearson MCC:
#   iVAE: 0.956, 0.942, 0.872, 0.926, 0.861   (mean 0.911)
#   VAE:  0.753, 0.832, 0.802, 0.844, 0.801   (mean 0.806)
#   iVAE - VAE: 0.203, 0.110, 0.070, 0.082, 0.060
# RECOVERY_MIN sits 0.06 below the worst seed and RECOVERY_MARGIN at half the smallest gap, so the test holds for
# any of the measured seeds (and for small numerical differences between platforms) while still failing for a
# model that does not use u (the VAE's best seed is 0.844 < 0.86) or that does no better than the VAE.
RECOVERY_MIN = 0.80
RECOVERY_MARGIN = 0.03
RECOVERY = dict(num_sources=3, num_segments=10, points_per_segment=600, num_layers=2, activation="xtanh")
HELDOUT = 100
TRAIN = dict(steps=5000, learning_rate=3e-3)
NET = dict(hidden=(32, 32), observation_noise=0.1, batch_size=64)


def _train(model, data, *, steps, learning_rate, seed):
    svi = SVI(model, model.make_guide(), optax_to_numpyro(optax.adam(learning_rate)), Trace_ELBO())
    state = svi.init(jax.random.key(seed), **data)
    step = lambda carry, _: svi.update(carry, **data)  # noqa: E731
    state, losses = jax.jit(lambda s: jax.lax.scan(step, s, None, length=steps))(state)
    return types.SimpleNamespace(model=model, params=svi.get_params(state), data=data, losses=np.asarray(losses))


@pytest.fixture(scope="module")
def recovery():
    from ppzoo.case_studies.nonlinear_ica import split_heldout

    ds = ppzoo.data.load("nonlinear_ica", seed=0, **RECOVERY)
    train, test, _ = split_heldout(ds, HELDOUT)
    data = {"x": train["x"], "u": train["u"]}
    out = {"train": train, "test": test}
    for name, conditional in (("ivae", True), ("vae", False)):
        model = ppzoo.models.get("ivae", num_segments=10, conditional_prior=conditional, seed=0, **NET)
        out[name] = _train(model, data, seed=0, **TRAIN)
    return out


@pytest.mark.slow
def test_ivae_recovers_the_sources_and_beats_the_vae(recovery):
    test = recovery["test"]
    ivae_mcc = mcc(encode(recovery["ivae"], test["x"], test["u"])[0], test["z"])
    vae_mcc = mcc(encode(recovery["vae"], test["x"], test["u"])[0], test["z"])
    assert ivae_mcc > RECOVERY_MIN, (ivae_mcc, vae_mcc)
    assert ivae_mcc > vae_mcc + RECOVERY_MARGIN, (ivae_mcc, vae_mcc)


@pytest.mark.slow
def test_exact_posterior_of_held_out_sources(recovery):
    """NUTS on held-out points with the decoder and prior fixed: converged, and as good as the encoder."""
    test, fit = recovery["test"], recovery["ivae"]
    chosen = np.random.default_rng(0).choice(len(test["x"]), size=20, replace=False)
    held = {"x": test["x"][chosen], "u": test["u"][chosen]}
    exact = ppzoo.fit(fit.model.with_config(batch_size=None), held, engine="nuts", params=fit.params, seed=0,
                      num_warmup=500, num_samples=500, num_chains=4)
    import arviz_base
    import arviz_stats

    posterior = arviz_base.from_dict({"posterior": {"z": exact.samples["z"]}})
    rhat = np.asarray(arviz_stats.rhat(posterior, var_names=["z"])["z"])
    assert rhat.max() <= 1.01
    mean, sd = encode(fit, held["x"], held["u"])
    gap = amortization_gap(mean, sd, exact.samples["z"], true=test["z"][chosen])
    # The exact posterior mean is the Bayes estimate under the fitted model; it should not recover the sources
    # worse than the amortized encoder. 20 points make each MCC noisy (sd ~ 0.02 between subsets), hence 0.03.
    assert gap["mcc_mcmc"] >= gap["mcc_encoder"] - 0.03, gap
