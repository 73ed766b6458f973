"""The ``"adversarial"`` engine: recovery on a 1-D Gaussian, the discriminator's optimum, the sleep phase, errors."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from flax import nnx
from numpyro.distributions import constraints

import ppzoo
from ppzoo import inference
from ppzoo.inference.adversarial import AdversarialOptions

LOC, SCALE, NOISE, N = 3.0, 0.5, 0.05, 4000


def linear_generator(x=None, *, num_data=None):
    """x = loc + scale z + small noise, z ~ N(0, 1): a linear generator with a known inverse."""
    n = x.shape[0] if x is not None else num_data
    loc = numpyro.param("loc", 0.0)
    scale = numpyro.param("scale", 1.0, constraint=constraints.positive)
    with numpyro.plate("data", n):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        numpyro.sample("x", dist.Normal(loc + scale * z, NOISE), obs=x)


def linear_guide(x=None, *, num_data=None):
    """q(z | x) = N(w x + c, exp(log_s)): the family that holds the generator's exact inverse."""
    w, c = numpyro.param("w", 0.0), numpyro.param("c", 0.0)
    log_s = numpyro.param("log_s", 0.0)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("z", dist.Normal(w * x + c, jnp.exp(log_s)))


def shifted_1d(x=None):
    """x = loc + z with z ~ N(0, 1), rows of one column."""
    loc = numpyro.param("loc", 1.0)
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
        numpyro.sample("x", dist.Delta(loc + z, event_dim=1), obs=x)


@pytest.fixture(scope="module")
def gaussian_fit():
    x = LOC + SCALE * np.random.default_rng(0).standard_normal(N).astype(np.float32)
    fit = ppzoo.fit(linear_generator, {"x": x}, engine="adversarial", seed=0, steps=2000, batch_size=256,
                    learning_rate=1e-2, chunk_size=2000, discriminator_hidden=(32, 32), guide=linear_guide,
                    num_draws=10)
    return fit, x


def test_recovers_location_and_scale_of_a_gaussian(gaussian_fit):
    fit, x = gaussian_fit
    # Tolerance: the discriminator sees 256-row batches, whose mean varies with sd 0.5 / 16 = 0.031 and whose
    # sd with 0.5 / sqrt(2 * 256) = 0.022; the generator chases that noise around the equilibrium, so
    # 0.1 (about 3 such sds) for the location and 0.06 for the scale. The data's own error is smaller
    # (0.5 / sqrt(4000) = 0.008). The loss ends at the equilibrium values log 2 and 2 log 2.
    assert abs(float(fit.params["loc"]) - LOC) < 0.1, fit.params["loc"]
    assert abs(float(fit.params["scale"]) - np.sqrt(SCALE**2 - NOISE**2)) < 0.06, fit.params["scale"]
    assert fit.losses.dtype.names == ("generator", "discriminator", "sleep")
    tail = fit.losses[-200:]
    assert abs(np.mean(tail["generator"]) - np.log(2)) < 0.05
    assert abs(np.mean(tail["discriminator"]) - 2 * np.log(2)) < 0.05
    assert not fit.warnings
    assert fit.samples["z"].shape == (1, 10, N)
    assert "discriminator$state" in fit.params


def test_sleep_phase_guide_recovers_the_generators_inverse(gaussian_fit):
    fit, _ = gaussian_fit
    loc, scale = float(fit.params["loc"]), float(fit.params["scale"])
    # The exact posterior of z given x under the fitted generator (conjugate Gaussian):
    # mean = scale (x - loc) / (scale^2 + noise^2), sd = noise / sqrt(scale^2 + noise^2).
    grid = np.linspace(loc - 2 * scale, loc + 2 * scale, 9)
    exact_mean = scale * (grid - loc) / (scale**2 + NOISE**2)
    exact_sd = NOISE / np.sqrt(scale**2 + NOISE**2)
    guide_mean = float(fit.params["w"]) * grid + float(fit.params["c"])
    # 0.05 in z (prior sd 1): the guide is fitted by SGD on 256 generated rows per step, whose gradient noise
    # leaves its slope within a few percent; an untrained guide (w = c = 0) is off by up to 2.
    np.testing.assert_allclose(guide_mean, exact_mean, atol=0.05)
    assert abs(np.exp(float(fit.params["log_s"])) - exact_sd) < 0.03
    assert np.mean(fit.losses["sleep"][-200:]) < np.mean(fit.losses["sleep"][:50])


def test_discriminator_optimum_is_the_density_ratio():
    """Real N(0, 1) against a generator held at N(1, 1): the optimal logit is log p_real / p_gen = 0.5 - x."""

    x = np.random.default_rng(1).standard_normal((N, 1)).astype(np.float32)
    disc = ppzoo.nn.MLP(1, (32, 32, 1), activation="leaky_relu", rngs=nnx.Rngs(0))

    fit = ppzoo.fit(shifted_1d, {"x": x}, engine="adversarial", seed=0, steps=1500, batch_size=512,
                    chunk_size=1500, optimizer=optax.sgd(0.0), discriminator=disc,
                    discriminator_optimizer=optax.adam(3e-3), num_draws=1)
    assert float(fit.params["loc"]) == 1.0  # held fixed by a zero learning rate
    graph, state = nnx.split(disc)
    nnx.replace_by_pure_dict(state, fit.params["discriminator$state"])
    grid = np.linspace(-1.5, 2.5, 17, dtype=np.float32)[:, None]
    logits = np.asarray(nnx.merge(graph, state)(grid))[:, 0]
    # 0.25 in logit where both densities have mass: the discriminator sees fresh generated rows every step but
    # only 4000 real ones, and its last steps' minibatch noise moves the logit by ~0.1 (Adam, 512 rows).
    np.testing.assert_allclose(logits, 0.5 - grid[:, 0], atol=0.25)


# ------------------------------------------------------------------------------------------------ errors


@pytest.fixture
def no_training_compile(caplog):
    """Fails if the training program compiles: the errors must come first (eager checks may compile tiny ops)."""
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        yield
    compiled = [r.getMessage() for r in caplog.get_records("call") if "run_fast" in r.getMessage()
                or "run_guarded" in r.getMessage()]
    assert not compiled, compiled


X = np.zeros(16, np.float32)


def test_model_without_observed_site_is_refused(no_training_compile):
    def factor_only(x=None):
        loc = numpyro.param("loc", 0.0)
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        numpyro.factor("fit", -jnp.sum((x - loc - z) ** 2))

    with pytest.raises(ValueError, match="needs an observed site drawn from the generator"):
        ppzoo.fit(factor_only, {"x": X}, engine="adversarial", batch_size=4)


def test_model_without_params_is_refused(no_training_compile):
    def fixed(x=None):
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("x", dist.Normal(numpyro.sample("z", dist.Normal(0.0, 1.0)), 0.1), obs=x)

    with pytest.raises(ValueError, match="no numpyro.param site"):
        ppzoo.fit(fixed, {"x": X}, engine="adversarial", batch_size=4)


def test_guide_without_code_sites_is_refused(no_training_compile):
    def wrong_guide(x=None, *, num_data=None):
        numpyro.param("w", 0.0)
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("u", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"must sample code sites of the model.*\['u'\].*Latent sites of the model: \['z'\]"):
        ppzoo.fit(linear_generator, {"x": X}, engine="adversarial", batch_size=4, guide=wrong_guide)

    def empty_guide(x=None, *, num_data=None):
        numpyro.param("w", 0.0)

    with pytest.raises(ValueError, match="it samples no site"):
        ppzoo.fit(linear_generator, {"x": X}, engine="adversarial", batch_size=4, guide=empty_guide)


@pytest.mark.parametrize("n_critic", [0, -1, 1.5])
def test_n_critic_below_one_is_refused(n_critic, no_training_compile):
    with pytest.raises(ValueError, match=r"`n_critic` must be an integer >= 1"):
        ppzoo.fit(linear_generator, {"x": X}, engine="adversarial", n_critic=n_critic)


def test_discriminator_with_two_logits_is_refused(no_training_compile):
    two = ppzoo.nn.MLP(1, (4, 2), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"one logit per row.*returns \(4, 2\)"):
        ppzoo.fit(shifted_1d, {"x": X[:, None]}, engine="adversarial", batch_size=4, discriminator=two)
    with pytest.raises(ValueError, match=r"fails on a batch of 'x' rows of shape \(4,\)"):
        ppzoo.fit(linear_generator, {"x": X}, engine="adversarial", batch_size=4, discriminator=two)
    with pytest.raises(TypeError, match="must be a flax.nnx.Module"):
        AdversarialOptions(discriminator=lambda x: x)


def test_option_errors_name_the_option():
    with pytest.raises(ValueError, match="`batch_size`=32 exceeds the 16 rows of 'x'"):
        ppzoo.fit(linear_generator, {"x": X}, engine="adversarial", batch_size=32)
    with pytest.raises(ValueError, match="`info_weight`=1.0 needs a `guide`"):
        AdversarialOptions(info_weight=1.0)
    with pytest.raises(ValueError, match="`gradient_penalty` must be a number >= 0"):
        AdversarialOptions(gradient_penalty=-1.0)
    with pytest.raises(TypeError, match=r"Unknown option\(s\) 'num_samples' for engine='adversarial'"):
        ppzoo.fit(linear_generator, {"x": X}, engine="adversarial", num_samples=10)


def test_sbc_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="SBC does not apply to engine='adversarial'"):
        ppzoo.sbc(linear_generator, {"x": X}, engine="adversarial", num_simulations=4, batch_size=4)


def test_engine_record():
    record = inference.get("adversarial")
    assert not record.is_mcmc and record.learns_params
