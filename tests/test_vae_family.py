"""The disentangling VAE family: registry conformance, the beta identity, the regularizers, the FactorVAE
extension point, NaN handling, bad input, and the conv lowerings.

Everything runs on tiny random binary images with tiny MLPs, and each model is compiled once per module.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from flax import nnx
from numpyro import handlers
from numpyro.infer import Trace_ELBO

import ppzoo
from ppzoo import nn
from ppzoo.inference import SVIExtension
from ppzoo.models.beta_tcvae import total_correlation
from ppzoo.models.dip_vae import dip_covariance, dip_penalty
from ppzoo.models.factor_vae import permute_dims
from ppzoo.models.vae import encode, posterior_model, sample_latent

MODELS = ("vae", "beta_vae", "beta_tcvae", "factor_vae", "dip_vae_i", "dip_vae_ii")
GROUPS = {"posterior", "sample_stats", "observed_data", "log_likelihood", "posterior_predictive", "prior", "prior_predictive"}
TINY = {"network": "mlp", "mlp_hidden": (8,), "latent_dim": 2, "batch_size": None}
EXTRA = {"factor_vae": {"discriminator_hidden": (8,), "discriminator_learning_rate": 1e-2}}


def tiny(name: str, **changes):
    return ppzoo.models.get(name, **{**TINY, **EXTRA.get(name, {}), **changes})


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return (np.random.default_rng(0).random((12, 8, 8)) < 0.3).astype(np.float32)


@pytest.fixture(scope="module")
def fits(images):
    """One short SVI fit of every model (full batch, so ``to_arviz`` pairs each z with its own image). The PSIS
    diagnostic is off (psis_draws=0): 30 steps leave an unreliable encoder by design, and the diagnostic is
    tested in tests/test_psis.py."""
    return {
        name: ppzoo.fit(tiny(name), {"x": images}, engine="svi", seed=0, steps=30, learning_rate=1e-2, num_draws=4,
                        psis_draws=0)
        for name in MODELS
    }


# ---------------------------------------------------------------------------------------------- conformance


@pytest.mark.parametrize("name", MODELS)
def test_prior_predictive_generates_binary_images(name):
    # x=None runs the generative program (eagerly: no compile): z ~ N(0, I), x ~ Bernoulli(decoder(z)).
    model = tiny(name, image_shape=(8, 8))
    trace = handlers.trace(handlers.seed(model, 0)).get_trace(num_data=3)
    assert trace["x"]["value"].shape == (3, 8, 8) and not trace["x"]["is_observed"]
    assert trace["z"]["value"].shape == (3, 2)
    assert set(np.unique(np.asarray(trace["x"]["value"]))) <= {0, 1}


@pytest.mark.parametrize("name", MODELS)
def test_svi_fit_and_arviz_groups(fits, images, name):
    fit = fits[name]
    assert fit.samples["z"].shape == (1, 4, len(images), 2)
    assert np.all(np.isfinite(fit.losses)) and not fit.warnings
    assert {"encoder$params", "decoder$params"} <= set(fit.params)
    tree = fit.to_arviz(predictive_draws=4, prior_draws=4)
    assert GROUPS <= set(tree.children)
    assert tree["posterior"]["z"].dims[:3] == ("chain", "draw", "data")
    assert tree["log_likelihood"]["x"].dims == ("chain", "draw", "data")
    mean, sd = encode(fit.model, fit.params, images)
    assert mean.shape == sd.shape == (len(images), 2) and np.all(sd > 0)


def test_minibatch_subsamples_the_plate_in_model_and_guide(images):
    model = tiny("vae", batch_size=4)
    with handlers.seed(rng_seed=0):
        guide_trace = handlers.trace(model.make_guide()).get_trace(x=images)
        model_trace = handlers.trace(handlers.replay(model, guide_trace)).get_trace(x=images)
    rows = np.asarray(guide_trace["data"]["value"])
    assert rows.shape == (4,) and np.array_equal(np.asarray(model_trace["data"]["value"]), rows)
    np.testing.assert_array_equal(model_trace["x"]["value"], images[rows])  # the same images in both
    assert model_trace["x"]["scale"] == pytest.approx(len(images) / 4)  # the ELBO is scaled to the data set


@pytest.mark.parametrize(("name", "engine"), [("vae", "nuts"), ("dip_vae_ii", "blackjax")])
def test_mcmc_on_latents_with_learned_weights_fixed(fits, images, name, engine):
    # posterior_model drops the regularizer and the subsampling: the same program for all six models.
    fit = ppzoo.fit(
        posterior_model(fits[name].model), {"x": images[:3]}, engine=engine, seed=0, params=fits[name].params,
        num_warmup=30, num_samples=30, num_chains=2,
    )
    assert fit.samples["z"].shape == (2, 30, 3, 2)
    assert np.all(np.isfinite(fit.samples["z"]))


# ---------------------------------------------------------------------------------------------- beta identity


def test_beta_scale_gives_reconstruction_plus_beta_kl_on_linear_gaussian():
    """Trace_ELBO with handlers.scale(beta) on z in model and guide = -(E_q log p(x|z) - beta KL(q || p))."""
    beta, w, b, sigma, x = 3.0, 1.7, -0.4, 0.6, 1.1
    m, s = 0.3, 0.45

    def model(x):
        z = sample_latent("z", dist.Normal(0.0, 1.0), beta)
        numpyro.sample("x", dist.Normal(w * z + b, sigma), obs=x)

    def guide(x):
        sample_latent("z", dist.Normal(m, s), beta)

    particles = 200_000
    loss = Trace_ELBO(num_particles=particles).loss(jax.random.key(0), {}, model, guide, x)
    reconstruction = -0.5 * np.log(2 * np.pi * sigma**2) - ((x - w * m - b) ** 2 + w**2 * s**2) / (2 * sigma**2)
    kl = np.log(1.0 / s) + (s**2 + m**2) / 2 - 0.5
    # Monte Carlo standard error of the particle average, from the integrand's sd under q.
    z = np.random.default_rng(1).normal(m, s, 100_000)
    integrand = (
        -0.5 * np.log(2 * np.pi * sigma**2) - (x - w * z - b) ** 2 / (2 * sigma**2)
        + beta * (-0.5 * z**2 + 0.5 * ((z - m) / s) ** 2 + np.log(s))
    )
    standard_error = integrand.std() / np.sqrt(particles)
    assert abs(-float(loss) - (reconstruction - beta * kl)) < 5 * standard_error  # 5 SE: ~1 in 1.7 million


def test_beta_vae_scales_z_in_model_and_guide(images):
    model = tiny("beta_vae", beta=2.5)
    guide = model.make_guide()
    with handlers.seed(rng_seed=0):
        model_trace = handlers.trace(model).get_trace(x=images)
        guide_trace = handlers.trace(guide).get_trace(x=images)
    assert model_trace["z"]["scale"] == pytest.approx(2.5)
    assert guide_trace["z"]["scale"] == pytest.approx(2.5)
    assert model_trace["x"]["scale"] is None
    plain = handlers.trace(handlers.seed(posterior_model(model), 0)).get_trace(x=images)
    assert plain["z"]["scale"] is None


# ---------------------------------------------------------------------------------------------- regularizers


def test_tc_estimator_identity_for_identical_encoders():
    # Every image has the same q(z|x) = N(0, I): q(z) factorizes (TC = 0), and MWS returns exactly
    # (K - 1) log N (its known bias; the minibatch sum is M identical terms weighted 1 / (N M)).
    k, m, n = 4, 32, 1000
    z = jax.random.normal(jax.random.key(0), (m, k))
    tc = total_correlation(z, jnp.zeros((m, k)), jnp.ones((m, k)), dataset_size=n)
    np.testing.assert_allclose(np.asarray(tc), (k - 1) * np.log(n), rtol=1e-5)


def test_tc_estimator_tracks_the_true_total_correlation():
    # Codes z = (u + e1, u + e2), u ~ N(0, 1), e ~ N(0, s^2), encoded with sd s: the aggregate posterior is
    # Gaussian with correlation rho = 1 / (1 + s^2), TC = -log(1 - rho^2) / 2 = 1.96 nats for s = 0.1; codes
    # with independent dimensions have TC = 0. MWS is biased, but the difference of its estimates on the
    # same batch size must land near the true difference (measured: 1.6-1.7 over seeds; bounds 0.5x-1.5x).
    m, n, s = 256, 1000, 0.1
    true_tc = -0.5 * np.log(1.0 - (1.0 / (1.0 + s**2)) ** 2)
    keys = jax.random.split(jax.random.key(1), 3)
    shared = jax.random.normal(keys[0], (m, 1)) * jnp.ones((1, 2))
    independent = jax.random.normal(keys[1], (m, 2))
    scale = s * jnp.ones((m, 2))
    noise = s * jax.random.normal(keys[2], (m, 2))
    dependent_tc = float(total_correlation(shared + noise, shared, scale, dataset_size=n).mean())
    independent_tc = float(total_correlation(independent + noise, independent, scale, dataset_size=n).mean())
    assert 0.5 * true_tc < dependent_tc - independent_tc < 1.5 * true_tc


def test_beta_tcvae_factor_is_named_per_image_and_scaled_with_the_minibatch(images):
    model = tiny("beta_tcvae", beta=5.0, batch_size=4)
    with handlers.seed(rng_seed=0):
        guide_trace = handlers.trace(model.make_guide()).get_trace(x=images)
        trace = handlers.trace(handlers.replay(model, guide_trace)).get_trace(x=images)
    site = trace["total_correlation"]
    assert site["type"] == "sample" and site["fn"].log_factor.shape == (4,)
    assert [frame.name for frame in site["cond_indep_stack"]] == ["data"]
    assert site["scale"] == pytest.approx(len(images) / 4)  # weighed like the likelihood: N x batch mean
    assert "total_correlation" not in handlers.trace(handlers.seed(posterior_model(model), 0)).get_trace(x=images)


def test_dip_covariances_and_penalty_on_known_values():
    loc = jnp.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    np.testing.assert_allclose(dip_covariance(loc), np.diag([0.5, 2.0]), atol=1e-6)  # 1/M normalisation
    scale = jnp.array([[1.0, 2.0]] * 4)
    np.testing.assert_allclose(dip_covariance(loc, scale), np.diag([1.5, 6.0]), atol=1e-6)  # + E[diag sd^2]
    correlated = jnp.array([[1.0, 1.0], [-1.0, -1.0]])
    cov = dip_covariance(correlated)
    np.testing.assert_allclose(cov, np.ones((2, 2)), atol=1e-6)
    # off-diagonal: 2 entries of 1 -> lambda_od * 2; diagonal exactly 1 -> 0.
    assert float(dip_penalty(cov, 3.0, 7.0)) == pytest.approx(6.0)
    assert float(dip_penalty(jnp.diag(jnp.array([0.5, 2.0])), 3.0, 7.0)) == pytest.approx(7.0 * (0.25 + 1.0))


@pytest.mark.parametrize(("name", "with_scale"), [("dip_vae_i", False), ("dip_vae_ii", True)])
def test_dip_factor_is_n_times_the_batch_penalty(images, name, with_scale):
    model = tiny(name, lambda_od=2.0, lambda_d_factor=3.0)
    trace = handlers.trace(handlers.seed(model, 0)).get_trace(x=images)
    weights = {"encoder$params": trace["encoder$params"]["value"]}
    loc, scale = handlers.substitute(
        lambda: ppzoo.models.vae.encoder_network(model.config, (8, 8))(jnp.asarray(images)), data=weights
    )()
    penalty = dip_penalty(dip_covariance(loc, scale if with_scale else None), 2.0, 6.0)
    np.testing.assert_allclose(float(trace["dip_penalty"]["fn"].log_factor), -len(images) * float(penalty), rtol=1e-5)


# ---------------------------------------------------------------------------------------------- FactorVAE


def test_permute_dims_permutes_each_column():
    z = jnp.arange(40.0).reshape(10, 4)
    permuted = np.asarray(permute_dims(jax.random.key(0), z))
    for j in range(4):
        assert sorted(permuted[:, j]) == sorted(np.asarray(z[:, j]))
    assert not np.array_equal(permuted, np.asarray(z))


def test_factor_vae_extension_trains_the_discriminator(fits):
    fit = fits["factor_vae"]
    state = fit.params["discriminator$state"]
    initial = nnx.to_pure_dict(
        nnx.split(nn.MLP(2, (8, 2), activation="leaky_relu", rngs=nnx.Rngs(fit.model.config.init_seed + 2)))[1]
    )
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state.params, initial)
    assert max(jax.tree.leaves(moved)) > 0  # Adam moved every step; 30 steps at lr 1e-2
    assert np.isfinite(float(state.loss)) and float(state.loss) > 0  # a cross-entropy


def test_svi_extension_option_runs_once_per_step():
    """A generic extension (a step counter) passed as an option: updated once per applied SVI step."""

    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    counter = SVIExtension(
        init=lambda key, params, data: {"count": jnp.zeros((), jnp.int32)},
        update=lambda state, params, data, key: ({"count": state["count"] + 1}, jnp.zeros(())),
        model_kwargs=lambda state: {},
        name="counter",
    )
    fit = ppzoo.fit(model, {"y": np.float32(0.5)}, engine="svi", steps=7, chunk_size=3, extension=counter, num_draws=2)
    assert int(fit.params["counter$state"]["count"]) == 7


# ---------------------------------------------------------------------------------------------- failures


def test_nan_loss_stops_training_and_keeps_last_good_params(images):
    # Adam at learning rate 1e8 throws the encoder's log-variances to ~1e8 on the first step, so the next
    # step's encoder sd overflows to inf and its loss is NaN.
    with pytest.warns(UserWarning, match=r"SVI stopped at step \d+: .*last finite loss -?[\d.]+"):
        fit = ppzoo.fit(tiny("vae"), {"x": images}, engine="svi", seed=0, steps=50, learning_rate=1e8, num_draws=2)
    assert len(fit.losses) < 50
    assert np.isfinite(fit.losses[:-1]).all()
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(fit.params))


@pytest.mark.parametrize(
    ("name", "config", "error", "match"),
    [
        ("vae", {"latent_dim": 0}, ValueError, "latent_dim must be a positive integer"),
        ("beta_vae", {"beta": -1.0}, ValueError, "beta must be positive"),
        ("beta_vae", {"beta": 0.0}, ValueError, "beta must be positive"),
        ("beta_tcvae", {"beta": -0.5}, ValueError, r"beta must be non-negative"),
        ("factor_vae", {"gamma": -1.0}, ValueError, "gamma must be non-negative"),
        ("dip_vae_i", {"lambda_od": -2.0}, ValueError, "lambda_od must be non-negative"),
        ("vae", {"network": "cnn"}, ValueError, "network must be 'conv' or 'mlp'"),
        ("vae", {"batch_size": 0}, ValueError, "batch_size must be a positive integer or None"),
        ("vae", {"image_shape": (8, 8)}, ValueError, "multiples of 16"),
        ("vae", {"latent_size": 3}, TypeError, "Unknown config field"),
    ],
)
def test_bad_config(name, config, error, match):
    with pytest.raises(error, match=match):
        ppzoo.models.get(name, **config)


@pytest.mark.parametrize(
    ("x", "config", "match"),
    [
        (np.zeros((12, 64), np.float32), {}, r"must be images of shape \(num_data, height, width\)"),
        (np.zeros((12, 8, 8, 1), np.float32), {}, "channel axis"),
        (np.full((12, 8, 8), 2.0, np.float32), {}, r"must lie in \[0, 1\]"),
        (np.full((12, 8, 8), -0.5, np.float32), {}, r"must lie in \[0, 1\]"),
        (np.zeros((12, 8, 8), np.float32), {"network": "conv"}, "multiples of 16"),
        (np.zeros((12, 8, 8), np.float32), {"image_shape": (16, 16)}, "image_shape is"),
        (np.zeros((12, 8, 8), np.float32), {"batch_size": 64}, "fewer than VAEConfig.batch_size=64"),
    ],
)
def test_bad_data_raises_before_compiling(x, config, match):
    with pytest.raises(ValueError, match=match):
        ppzoo.fit(tiny("vae", **config), {"x": x}, engine="svi", steps=2)


def test_bad_extension_option():
    with pytest.raises(TypeError, match="extension"):
        ppzoo.fit(tiny("vae"), {"x": np.zeros((4, 8, 8), np.float32)}, engine="svi", steps=2, extension=object())


# ---------------------------------------------------------------------------------------------- networks


@pytest.mark.parametrize("size", [16, 32])
def test_conv_lowerings_compute_the_same_function(size):
    x = jax.random.uniform(jax.random.key(0), (2, size, size))
    xla = nn.ConvEncoder((size, size), 6, lowering="xla", rngs=nnx.Rngs(0))
    s2d = nn.ConvEncoder((size, size), 6, lowering="space_to_depth", rngs=nnx.Rngs(0))
    np.testing.assert_allclose(xla(x), s2d(x), atol=1e-5)  # float32 rounding of reordered sums
    z = jax.random.normal(jax.random.key(1), (2, 3))
    transposed = nn.ConvDecoder(3, (size, size), lowering="xla", rngs=nnx.Rngs(1))
    subpixel = nn.ConvDecoder(3, (size, size), lowering="subpixel", rngs=nnx.Rngs(1))
    assert subpixel(z).shape == (2, size, size)
    np.testing.assert_allclose(transposed(z), subpixel(z), atol=1e-5)


def test_conv_vae_trains_on_16_pixel_images():
    x = (np.random.default_rng(2).random((8, 16, 16)) < 0.3).astype(np.float32)
    fit = ppzoo.fit(tiny("vae", network="conv"), {"x": x}, engine="svi", seed=0, steps=3, num_draws=2)
    assert np.all(np.isfinite(fit.losses))
