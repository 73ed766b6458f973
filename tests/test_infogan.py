"""InfoGAN (``ppzoo.models.infogan``): sites and shapes, the Q network on the discriminator's trunk, errors, case study.

Sizes are tiny (8 x 8 images, networks of 16-32 units) so that one adversarial fit, shared by the tests of a
module fixture, compiles once.
"""

import logging

import jax
import numpy as np
import pytest
from flax import nnx
from numpyro import handlers

import ppzoo
from ppzoo.models import infogan

SIDE = 8
TINY = {"num_categories": 2, "num_continuous": 2, "noise_dim": 1, "hidden": (32,), "q_hidden": 16}


def squares(n: int, seed: int) -> np.ndarray:
    """``n`` 8 x 8 binary images of a 3 x 3 square at a uniform position."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, SIDE, SIDE), np.float32)
    for i, (r, c) in enumerate(rng.integers(0, SIDE - 2, size=(n, 2))):
        x[i, r : r + 3, c : c + 3] = 1.0
    return x


@pytest.fixture(scope="module")
def tiny_fit():
    """600 steps on 1024 images of 8 x 8 (the Q-recovery test needs a trained generator; compiled once)."""
    model = ppzoo.models.get("infogan", **TINY)
    fit = ppzoo.fit(model, {"x": squares(1024, 0)}, engine="adversarial", seed=0, steps=600, batch_size=64,
                    chunk_size=600, learning_rate=1e-3, num_draws=2, **infogan.adversarial_options(model, (SIDE, SIDE)))
    return model, fit


def test_sites_and_shapes_of_the_generator():
    model = ppzoo.models.get("infogan", **TINY, image_shape=(SIDE, SIDE))
    trace = handlers.trace(handlers.seed(model, 0)).get_trace(num_data=5)
    assert trace["category"]["value"].shape == (5,)
    assert set(np.asarray(trace["category"]["value"]).tolist()) <= {0, 1}
    assert trace["code"]["value"].shape == (5, 2) and np.all(np.abs(trace["code"]["value"]) <= 1)
    assert trace["z"]["value"].shape == (5, 1)
    x = np.asarray(trace["x"]["value"])
    assert x.shape == (5, SIDE, SIDE) and x.min() >= 0 and x.max() <= 1
    # The inversion program: the category summed out, p(category | code, z, x) a distribution per image.
    post = infogan.posterior_model(model)
    trace = handlers.trace(handlers.seed(post, 0)).get_trace(x=x)
    assert "category" not in trace and trace["x"]["is_observed"]
    probs = np.asarray(trace["category_probs"]["value"])
    assert probs.shape == (5, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_marginal_likelihood_is_the_mixture_over_categories():
    # Closed form: log p(x | code, z) = logsumexp_k [log 1/K + log N(x; G(k, code, z), tau^2)].
    model = ppzoo.models.get("infogan", **TINY, image_shape=(SIDE, SIDE), pixel_scale=0.2)
    x = squares(3, 1)
    trace = handlers.trace(handlers.seed(model, 0)).get_trace(num_data=3)
    params = {"decoder$params": trace["decoder$params"]["value"]}
    code, z = np.asarray(trace["code"]["value"]), np.asarray(trace["z"]["value"])
    post = infogan.posterior_model(model, pixel_scale=0.2)
    cond = handlers.substitute(handlers.seed(post, 0), data={**params, "code": code, "z": z})
    got = np.asarray(handlers.trace(cond).get_trace(x=x)["x"]["fn"].log_prob(x))
    per_k = []
    for k in range(2):
        mean = infogan.generate(model, params, np.full(3, k), code, z, (SIDE, SIDE))
        per_k.append(np.sum(-0.5 * ((x - mean) / 0.2) ** 2 - np.log(0.2 * np.sqrt(2 * np.pi)), axis=(1, 2)))
    expected = np.logaddexp(*per_k) - np.log(2)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_encode_returns_codes_of_the_documented_shape(tiny_fit):
    model, fit = tiny_fit
    codes = infogan.encode(model, fit.params, squares(7, 2))
    assert codes.category_probs.shape == (7, 2) and codes.category.shape == (7,)
    assert codes.code.shape == codes.code_scale.shape == (7, 2)
    assert codes.matrix().shape == (7, 3)
    np.testing.assert_allclose(codes.category_probs.sum(1), 1.0, atol=1e-5)
    assert np.all(codes.code_scale > 0)
    assert set(fit.losses.dtype.names) == {"generator", "discriminator", "sleep"}
    assert not fit.warnings
    assert fit.samples["category"].shape == (1, 2, 1024) and fit.samples["code"].shape == (1, 2, 1024, 2)


def test_q_recovers_the_codes_of_the_trained_generator(tiny_fit):
    model, fit = tiny_fit
    keys = jax.random.split(jax.random.key(1), 3)
    n = 1000
    category = np.asarray(jax.random.randint(keys[0], (n,), 0, 2))
    code = np.asarray(jax.random.uniform(keys[1], (n, 2), minval=-1.0, maxval=1.0))
    z = np.asarray(jax.random.normal(keys[2], (n, 1)))
    images = infogan.generate(model, fit.params, category, code, z, (SIDE, SIDE))
    trained = infogan.encode(model, fit.params, images)
    untrained = infogan.encode(model, {"discriminator$state": nnx.to_pure_dict(nnx.state(
        infogan.discriminator(model, (SIDE, SIDE))))}, images)

    def corr(codes):
        return [abs(np.corrcoef(code[:, j], codes.code[:, j])[0, 1]) for j in range(2)]

    # 1000 generated images: the accuracy's sampling sd is <= 0.016 and a correlation's ~0.03, so the bounds
    # below are many sds from chance (accuracy 0.5) and from the untrained Q (measured 0.54; 0.10 and 0.57).
    assert np.mean(trained.category == category) > 0.9
    assert min(corr(trained)) > 0.6, corr(trained)
    assert np.mean(corr(trained)) > np.mean(corr(untrained)) + 0.15, (corr(trained), corr(untrained))


# ------------------------------------------------------------------------------------------------ errors


@pytest.fixture
def no_training_compile(caplog):
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        yield
    compiled = [r.getMessage() for r in caplog.get_records("call") if "run_fast" in r.getMessage()
                or "run_guarded" in r.getMessage()]
    assert not compiled, compiled


def test_bad_inputs_are_refused_before_compiling(no_training_compile):
    with pytest.raises(ValueError, match="marginalize_category=True needs a Gaussian pixel likelihood"):
        ppzoo.models.get("infogan", marginalize_category=True)
    with pytest.raises(ValueError, match="noise_dim must be an integer >= 0"):
        ppzoo.models.get("infogan", noise_dim=-1)
    model = ppzoo.models.get("infogan", **TINY)
    with pytest.raises(ValueError, match="use the model with pixel_scale=None"):
        infogan.adversarial_options(model.with_config(pixel_scale=0.1), (SIDE, SIDE))
    with pytest.raises(ValueError, match="no 'discriminator\\$state'"):
        infogan.encode(model, {}, squares(2, 0))
    with pytest.raises(ValueError, match=r"`x` must be images \(N, height, width\)"):
        infogan.encode(model, {"discriminator$state": {}}, np.zeros((2, 64)))
    with pytest.raises(ValueError, match=r"code must be \(2, 2\) and z \(2, 1\)"):
        infogan.generate(model, {}, np.zeros(2), np.zeros((2, 3)), np.zeros((2, 1)), (SIDE, SIDE))
    options = infogan.adversarial_options(model, (SIDE, SIDE))
    with pytest.raises(ValueError, match="guide_shares_discriminator`=True needs a `guide`.*and `info_weight` > 0"):
        ppzoo.fit(model, {"x": squares(64, 0)}, engine="adversarial", **{**options, "info_weight": 0.0})
    with pytest.raises(ValueError, match="pixel values in \\[0, 1\\]"):
        ppzoo.fit(model, {"x": 2 * squares(64, 0)}, engine="adversarial", **options)
    with pytest.raises(ValueError, match="reads images x through the discriminator's trunk"):
        infogan.infogan_guide(squares(2, 0), config=model.config)


@pytest.mark.slow
def test_case_study_smoke(tmp_path):
    import pandas as pd

    from ppzoo.case_studies import infogan as study

    out = study.main([
        "--out", str(tmp_path / "infogan"), "--num-data", "100", "--steps", "20", "--batch-size", "32", "--seeds", "0",
        "--hidden", "16", "--baseline", "none", "--metric-points", "50", "--metric-rows", "80", "--posterior-images", "4",
        "--num-warmup", "20", "--num-samples", "20", "--num-chains", "2", "--pixel-scale", "0.5",
    ])
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns) == ["model", "seed", "metric", "value"]
    assert {"factor_vae_score", "mig"} <= set(metrics["metric"]) and set(metrics["model"]) == {"infogan"}
    page = (out / "index.html").read_text()
    for heading in ("InfoGAN beside the plain VAE", "Generated images", "Latent traversals", "Losses",
                    "Closed loop: NUTS inverts the generator", "Q network vs NUTS"):
        assert heading in page, heading
    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    assert any(verdicts["name"].str.startswith("NUTS inversion converges"))
