"""Tests of the iVAE zoo model (and its VAE variant), the encoder helper, the exact posterior and the case study."""

import types

import jax
import numpy as np
import numpyro.distributions as dist
import optax
import pytest
from numpyro import handlers
from numpyro.infer import SVI, Predictive, Trace_ELBO
from numpyro.optim import optax_to_numpyro

import ppzoo
from ppzoo.amortization import amortization_gap
from ppzoo.metrics import mcc
from ppzoo.models.ivae import anneal_extension, encode, prior_log_variance, reconstruction_weight
from ppzoo.models.ivae import entry as ivae_entry  # registry name "ivae"

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
    model = ivae_entry(num_sources=K, **SMALL)
    return ppzoo.fit(model, _tiny_data(), engine="svi", steps=50, learning_rate=1e-2, num_draws=20, seed=0)


# ------------------------------------------------------------------------------------------- structure


@pytest.mark.parametrize("conditional", [True, False])
def test_sites_and_shapes(conditional):
    model = ivae_entry(num_sources=K, conditional_prior=conditional, **SMALL)
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
        table = prior_log_variance(model, params)
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


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
def test_encoder_covariance(covariance):
    """The full encoder's covariance is L L^T with L = diag(s) (I + B); the diagonal one is diag(s^2)."""
    data = _tiny_data()
    model = ivae_entry(num_sources=K, encoder_covariance=covariance, **SMALL)
    trace = handlers.trace(handlers.seed(model.make_guide(), 0)).get_trace(**data)
    fn = trace["z"]["fn"]
    params = jax.tree.leaves(trace["encoder$params"]["value"])
    assert (8, 2 * K + (K * (K - 1) // 2 if covariance == "full" else 0)) in [np.shape(p) for p in params]
    if covariance == "diagonal":
        assert isinstance(fn, dist.Independent) and isinstance(fn.base_dist, dist.Normal)
        return
    assert isinstance(fn, dist.MultivariateNormal)
    tril = np.asarray(fn.scale_tril)
    assert tril.shape == (data["x"].shape[0], K, K)
    np.testing.assert_array_equal(np.triu(tril, 1), 0.0)
    assert np.all(np.diagonal(tril, axis1=-2, axis2=-1) > 0)
    assert np.any(np.abs(np.tril(tril, -1)) > 0)  # the off-diagonal outputs are used
    # encode() returns the marginal sds of the same Gaussian.
    fit = types.SimpleNamespace(model=model, params={"encoder$params": trace["encoder$params"]["value"]}, data=data)
    mean, sd = encode(fit.model, fit.params, data["x"], data["u"])
    np.testing.assert_allclose(mean, fn.loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sd, np.sqrt(np.einsum("nij,nij->ni", tril, tril)), rtol=1e-5)


def test_prior_predictive_generates_data():
    model = ivae_entry(num_sources=K, num_observed=D, **SMALL)
    u = np.repeat(np.arange(M), 5)
    draws = Predictive(model, num_samples=3)(jax.random.key(0), u=u)
    assert draws["x"].shape == (3, u.size, D) and draws["z"].shape == (3, u.size, K)
    assert np.all(np.isfinite(draws["x"]))
    vae = ivae_entry(num_sources=K, num_observed=D, conditional_prior=False, **SMALL)
    assert Predictive(vae, num_samples=2)(jax.random.key(1), num_data=7)["x"].shape == (2, 7, D)


def test_minibatch_elbo_is_unbiased_for_the_full_elbo():
    """Subsampling scales the minibatch ELBO by N / batch: its mean over batches is the full-data ELBO."""
    data = _tiny_data(n_per_segment=25)
    full = ivae_entry(num_sources=K, **SMALL)
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
    mean, sd = encode(tiny_fit.model, tiny_fit.params, data["x"], data["u"])
    assert mean.shape == sd.shape == (40, K) and np.all(sd > 0)
    # The fit's draws come from the same encoder: their mean approaches the encoder mean
    # (20 draws: standard error sd / sqrt(20); 5 standard errors).
    draws = tiny_fit.samples["z"][0]
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * sd / np.sqrt(20))
    new_mean, _ = encode(tiny_fit.model, tiny_fit.params, data["x"][:3] + 1.0, np.array([0, 3, 3]))
    assert new_mean.shape == (3, K)
    assert prior_log_variance(tiny_fit.model, tiny_fit.params).shape == (M, K)
    assert prior_log_variance(tiny_fit.model.config, tiny_fit.params).shape == (M, K)  # the config will do


def test_encode_rejects_other_fits():
    with pytest.raises(TypeError, match="ivae"):
        encode(ppzoo.models.get("ica"), {}, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="no encoder weights"):
        encode(ivae_entry(num_segments=2), {}, np.zeros((2, 2)), np.array([0, 1]))
    with pytest.raises(TypeError, match="ivae"):
        prior_log_variance(ppzoo.models.get("ica"), {})
    with pytest.raises(ValueError, match="prior_net"):
        prior_log_variance(ivae_entry(num_segments=2), {})


def test_prior_log_variance_names_a_missing_size(tiny_fit):
    with pytest.raises(ValueError, match="pass num_sources"):
        prior_log_variance(tiny_fit.model.with_config(num_sources=None), tiny_fit.params)
    with pytest.raises(ValueError, match="pass num_segments"):
        prior_log_variance(tiny_fit.model.with_config(num_segments=None), tiny_fit.params)
    table = prior_log_variance(tiny_fit.model.with_config(num_sources=None, num_segments=None), tiny_fit.params,
                               num_sources=K, num_segments=M)
    np.testing.assert_array_equal(table, prior_log_variance(tiny_fit.model, tiny_fit.params))


# ------------------------------------------------------------------------------------------- bad input


def test_u_length_differs_from_x():
    model = ivae_entry(**SMALL)
    data = _tiny_data()
    with pytest.raises(ValueError, match=r"`u` has 39 entries but `x` has 40 rows"):
        ppzoo.fit(model, {"x": data["x"], "u": data["u"][:-1]}, engine="svi", steps=1)


def test_single_segment_warns_not_identifiable():
    model = ivae_entry(hidden=(8,), num_segments=1)
    data = _tiny_data(num_segments=1)
    with pytest.warns(UserWarning, match=r"`u` has a single segment .*not identifiable"):
        model.check_data(data, model.config)


def test_fitting_needs_num_segments():
    with pytest.raises(ValueError, match=r"num_segments is None.*num_segments=4\)"):
        ppzoo.fit(ppzoo.models.get("ivae", hidden=(8,)), _tiny_data(), engine="svi", steps=1)


def test_more_sources_than_observed_dimensions():
    model = ivae_entry(num_sources=D + 1, **SMALL)
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
    model = ivae_entry(**SMALL)
    with pytest.raises(error, match=match):
        model.check_data(change(_tiny_data()), model.config)


@pytest.mark.parametrize(
    "config, error, match",
    [
        ({"num_sources": 0}, ValueError, "num_sources must be a positive integer"),
        ({"batch_size": -3}, ValueError, "batch_size must be a positive integer"),
        ({"hidden": (8, 0)}, ValueError, "hidden must be a non-empty tuple"),
        ({"hidden": ()}, ValueError, "hidden must be a non-empty tuple"),
        ({"activation": "swish"}, ValueError, "activation must be one of"),
        ({"observation_noise": 0.0}, ValueError, "observation_noise must be a positive number"),
        ({"encoder_covariance": "low_rank"}, ValueError, "encoder_covariance must be 'full' or 'diagonal'"),
        ({"conditional_prior": "yes"}, TypeError, "conditional_prior must be True or False"),
        ({"seed": 1.5}, TypeError, "seed must be an integer"),
        ({"anneal_steps": -1}, ValueError, "anneal_steps must be a non-negative integer"),
        ({"anneal_start_weight": 0.0}, ValueError, "anneal_start_weight must be a positive number"),
        ({"latent_dim": 3}, TypeError, "Unknown config field.*'latent_dim'"),
    ],
)
def test_bad_config(config, error, match):
    with pytest.raises(error, match=match):
        ivae_entry(**config)


# ------------------------------------------------------------------------------------------- annealing


def test_reconstruction_weight_schedule():
    """w(t) = 1 + (w0 - 1) max(0, 1 - t / T): w0 at step 0, halfway at T / 2, 1 from T on; 1 when off."""
    config = ivae_entry(anneal_steps=100, anneal_start_weight=11.0).config
    weights = np.asarray(reconstruction_weight(config, np.array([0, 50, 100, 250])))
    np.testing.assert_allclose(weights, [11.0, 6.0, 1.0, 1.0], rtol=1e-6)
    # A start weight below 1 anneals the decoder noise down: 0.01 -> 1 (noise sd / 10 -> noise sd).
    rising = ivae_entry(anneal_steps=100, anneal_start_weight=0.01).config
    np.testing.assert_allclose(np.asarray(reconstruction_weight(rising, np.array([0, 50, 100]))), [0.01, 0.505, 1.0],
                               rtol=1e-5)
    off = ivae_entry().config
    np.testing.assert_allclose(np.asarray(reconstruction_weight(off, np.array([0, 10]))), 1.0)
    # The extension counts steps and hands the weight to model and guide.
    ext = anneal_extension(config)
    state = ext.init(jax.random.key(0), {}, {})
    for _ in range(50):
        state, aux = ext.update(state, {}, {}, jax.random.key(0))
    assert int(state) == 50 and float(aux) == 0.0
    np.testing.assert_allclose(float(ext.model_kwargs(state)["recon_weight"]), 6.0, rtol=1e-6)


def test_recon_weight_scales_the_likelihood_only():
    model = ivae_entry(num_sources=K, **SMALL)
    data = _tiny_data()

    def log_probs(**kwargs):
        tr = handlers.trace(handlers.seed(model, jax.random.key(0))).get_trace(**data, **kwargs)
        return {name: float(tr[name]["fn"].log_prob(tr[name]["value"]).sum() * (tr[name]["scale"] or 1.0))
                for name in ("x", "z")}

    plain, weighted = log_probs(), log_probs(recon_weight=4.0)
    np.testing.assert_allclose(weighted["x"], 4.0 * plain["x"], rtol=1e-5)
    np.testing.assert_allclose(weighted["z"], plain["z"], rtol=1e-6)


def test_fit_with_annealing_runs_the_extension():
    model = ivae_entry(num_sources=K, anneal_steps=20, anneal_start_weight=10.0, **SMALL)
    assert hasattr(model.make_guide(), "svi_extension")
    assert not hasattr(ivae_entry(num_sources=K, **SMALL).make_guide(), "svi_extension")
    fit = ppzoo.fit(model, _tiny_data(), engine="svi", steps=30, learning_rate=1e-2, num_draws=5, seed=0)
    assert int(fit.params["anneal$state"]) == 30  # one count per SVI step
    assert np.all(np.isfinite(encode(fit.model, fit.params, _tiny_data()["x"], _tiny_data()["u"])[0]))


def test_xtanh_networks_match_the_mixing_activation():
    """``activation="xtanh"`` is the data's own nonlinearity, tanh(h) + 0.1 h (reference: ilkhem/iVAE)."""
    from ppzoo import nn
    from ppzoo.data import nonlinear_ica

    h = np.linspace(-6, 6, 25)
    weights = [np.eye(2), np.eye(2)]  # mix() applies the activation between its two layers
    np.testing.assert_allclose(np.asarray(nn.ACTIVATIONS["xtanh"](h)), np.tanh(h) + 0.1 * h, rtol=1e-6)
    np.testing.assert_allclose(nonlinear_ica.mix(np.c_[h, h], weights, "xtanh")[:, 0], np.tanh(h) + 0.1 * h)
    assert ivae_entry(activation="xtanh").config.activation == "xtanh"


def test_hidden_from_a_list_becomes_a_tuple():
    assert ivae_entry(hidden=[8, 4]).config.hidden == (8, 4)


def test_generating_without_u_is_an_error():
    model = ivae_entry(num_observed=D, **SMALL)
    with pytest.raises(ValueError, match="needs the auxiliary variable `u`"):
        handlers.seed(model, 0)()


# ---------------------------------------------------------------------------- recovery and exact posterior

# Reduced setting of the issue: 3 sources, 10 segments x 500 training points (+100 held out), 2-layer xtanh
# mixing, standardized x, decoder noise sd 0.1, full-covariance encoder (the default), trained by ppzoo.fit's SVI
# engine on minibatches of 64. Thresholds MEASURED with exactly this setting and training (a script over seeds 0-2,
# seed = data, network and SVI seed; the test runs seed 0; no other seeds tried). Held-out Pearson MCC:
#   iVAE: 0.968, 0.948, 0.925   (mean 0.947; with the mean-field encoder 0.958, 0.921, 0.879)
#   VAE:  0.683, 0.754, 0.734   (mean 0.724)
#   iVAE - VAE: 0.285, 0.194, 0.191
# RECOVERY_MIN sits 0.075 below the worst iVAE seed (and 0.10 above the best VAE seed); RECOVERY_MARGIN is about
# half the smallest gap, so the test holds for any of the measured seeds (and small numerical differences between
# platforms).
RECOVERY_MIN = 0.85
RECOVERY_MARGIN = 0.10
RECOVERY = dict(num_sources=3, num_segments=10, points_per_segment=600, num_layers=2, activation="xtanh")
HELDOUT = 100
TRAIN = dict(steps=5000, learning_rate=3e-3, num_draws=1)
NET = dict(hidden=(32, 32), observation_noise=0.1, batch_size=64)


def test_split_heldout_splits_each_segment_and_standardises_with_training_statistics():
    from ppzoo.data.nonlinear_ica import split_heldout

    ds = ppzoo.data.load("nonlinear_ica", seed=0, num_sources=2, num_segments=3, points_per_segment=10, num_layers=1)
    train, test, info = split_heldout(ds, 4)
    assert len(train["x"]) == 18 and len(test["x"]) == 12
    np.testing.assert_array_equal(np.bincount(test["u"]), [4, 4, 4])  # the last 4 points of every segment
    np.testing.assert_array_equal(test["z"], np.asarray(ds.truth["z"]).reshape(3, 10, 2)[:, 6:].reshape(12, 2))
    assert train["x"].dtype == np.float32
    np.testing.assert_allclose(train["x"].mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(train["x"].std(0), 1.0, rtol=1e-5)
    np.testing.assert_allclose(test["x"] * info["x_sd"] + info["x_mean"],
                               np.asarray(ds.data["x"]).reshape(3, 10, -1)[:, 6:].reshape(12, -1), rtol=1e-5, atol=1e-5)
    for bad in (0, 10, 2.0):
        with pytest.raises(ValueError, match=r"`heldout_per_segment` must be an integer in \[1, 10\)"):
            split_heldout(ds, bad)
    with pytest.raises(ValueError, match="nonlinear_ica"):
        split_heldout(ppzoo.data.load("linear_ica", num_data=10, num_sources=2, seed=0), 1)


@pytest.fixture(scope="module")
def recovery():
    from ppzoo.data.nonlinear_ica import split_heldout

    ds = ppzoo.data.load("nonlinear_ica", seed=0, **RECOVERY)
    train, test, _ = split_heldout(ds, HELDOUT)
    data = {"x": train["x"], "u": train["u"]}
    out = {"train": train, "test": test}
    for name, conditional in (("ivae", True), ("vae", False)):
        model = ppzoo.models.get("ivae", num_segments=10, conditional_prior=conditional, seed=0, **NET)
        out[name] = ppzoo.fit(model, data, engine="svi", seed=0, **TRAIN)
    return out


@pytest.mark.slow
def test_ivae_recovers_the_sources_and_beats_the_vae(recovery):
    test = recovery["test"]
    ivae_mcc = mcc(encode(recovery["ivae"].model, recovery["ivae"].params, test["x"], test["u"])[0], test["z"])
    vae_mcc = mcc(encode(recovery["vae"].model, recovery["vae"].params, test["x"], test["u"])[0], test["z"])
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
    mean, sd = encode(fit.model, fit.params, held["x"], held["u"])
    gap = amortization_gap(mean, sd, exact.samples["z"], true=test["z"][chosen])
    # The exact posterior mean is the Bayes estimate under the fitted model; the issue expects it to recover the
    # sources at least as well as the amortized encoder. MEASURED (this setting, full-covariance encoder, 20 held-out
    # points, seeds 0-2): max r_hat 1.0084, 1.0110, 1.0069; MCC encoder 0.969, 0.962, 0.895; MCC NUTS 0.968,
    # 0.966, 0.919. So the two are about equal (NUTS - encoder: -0.001, +0.005, +0.025), not reliably better: with
    # 20 points each MCC is noisy. The tolerance 0.03 is 30 times the largest measured shortfall (it was set at
    # 5 times the shortfall of 0.006 measured with the mean-field encoder). Seed 1's r_hat 1.011 is just above the
    # issue's 1.01: the test (seed 0) asserts 1.01, which is met, but not with room for every seed.
    assert gap["mcc_mcmc"] >= gap["mcc_encoder"] - 0.03, gap


# ----------------------------------------------------------------------------------- linear ICA baseline


@pytest.mark.slow
def test_linear_ica_recovers_linearly_mixed_sources():
    """With one mixing layer the mixing is linear, and the zoo's Bayesian ICA (SVI) recovers the sources.

    Segment-wise Gaussian sources are, pooled over segments, scale mixtures of Gaussians (super-Gaussian), so
    the Laplace source prior fits them. MEASURED held-out MCC with exactly this setting, seeds 0-2: 0.9997,
    0.9971, 0.9957 (FastICA 0.999, 0.999, 0.996); at the paper's size (5 sources, 40 x 1000 points, 1 layer,
    3000 steps, standardized x) 0.9998 and 0.9996 on seeds 0-1. With the earlier mean-field q(z | x) it was
    0.964, 0.975, 0.912 here and 0.78-0.86 at the paper's size: a diagonal q pays for the exact posterior's
    correlation (non-orthogonal mixing, small noise) and the ELBO then prefers rotated sources; the guide's
    shared full covariance removed that. The threshold is the issue's 0.95, 0.045 below the worst measured
    seed; the test runs seed 0.
    """
    from ppzoo.data.nonlinear_ica import split_heldout

    ds = ppzoo.data.load("nonlinear_ica", seed=0, num_sources=3, num_segments=10, points_per_segment=200, num_layers=1)
    train, test, _ = split_heldout(ds, 50)
    fit = ppzoo.fit(ppzoo.models.get("ica", num_sources=3), {"x": train["x"]}, engine="svi", seed=0, steps=3000,
                    learning_rate=0.02, num_draws=1)
    unmixing, offset = np.asarray(fit.params["unmixing"]), np.asarray(fit.params["source_offset"])
    assert mcc(test["x"] @ unmixing.T + offset, test["z"]) >= 0.95


# ------------------------------------------------------------------------------------------ case study


def test_case_study_smoke(tmp_path):
    """``ppzoo run nonlinear_ica`` end to end with tiny settings: every section, the MCC table and the csv."""
    import dataclasses

    from ppzoo.case_studies import nonlinear_ica

    args = nonlinear_ica.parse_args(["--out", str(tmp_path / "report"), "--seeds", "1", "--steps", "30"])
    args.settings = dataclasses.replace(
        args.settings, num_segments=3, points_per_segment=40, heldout_per_segment=10, num_layers=1,
        segment_grid=(3,), layer_grid=(1,), hidden=(8,), batch_size=16, ica_steps=30, nuts_points=3,
        nuts_warmup=30, nuts_samples=30, nuts_chains=2, mcmc_engines=("blackjax",),
    )
    out = nonlinear_ica.run(args)
    page = (out / "index.html").read_text()
    for heading in ("MCC: iVAE, VAE, linear ICA, FastICA", "MCC against the number of segments",
                    "Recovered sources", "ELBO curves", "Posterior predictive checks", "Amortization gap",
                    "Posterior collapse: active latent dimensions"):
        assert heading in page, heading
    import pandas as pd

    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    assert verdicts.loc[verdicts["name"] == "posterior collapse", "engine"].tolist() == ["iVAE", "VAE"]
    assert verdicts.loc[verdicts["name"] == "convergence", "verdict"].isin(["PASS", "FAIL"]).all()
    # The study's own claims lead the strip; an ordering of methods over one seed is not judged.
    claims = verdicts[verdicts["kind"] == "claim"].set_index("name")
    assert verdicts["kind"].iloc[0] == "claim" and len(claims) == 3
    ordering = claims.loc[[n for n in claims.index if n.startswith("iVAE held-out MCC")]]
    assert len(ordering) == 1 and ordering["verdict"].item() == "n/a"
    assert ordering["detail"].item() == "one seed: an ordering needs at least 3 (run --seeds 3)."
    assert any(n.startswith("exact posterior converged (blackjax: max r_hat") for n in claims.index)
    assert any(n.startswith("encoder agrees with the exact posterior (blackjax:") for n in claims.index)
    assert claims["verdict"].isin(["PASS", "FAIL", "n/a"]).all()
    assert "#sec-amortization-gap-the-encoder-against-the-exact-posterior" in page
    assert "encoder PSIS k-hat, median over 30 points" in page and "share of those points with k-hat &gt; 0.7" in page

    rows = pd.read_csv(out / "mcc.csv")
    assert set(rows["method"]) == {"iVAE", "VAE", "linear ICA", "FastICA"}
    assert set(rows["segments"]) == {3}
    assert rows[["pearson_in", "pearson_out", "spearman_in", "spearman_out"]].apply(np.isfinite).all().all()


def test_case_study_rejects_bad_options():
    from ppzoo.case_studies import nonlinear_ica

    with pytest.raises(SystemExit):
        nonlinear_ica.parse_args(["--seeds", "0"])
    with pytest.raises(SystemExit):
        nonlinear_ica.parse_args(["--mcmc-engines", "hmc"])
