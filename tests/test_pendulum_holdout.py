"""Out-of-support interventions on the pendulum: hold-out regions, shadow-free rendering, do() against
conditioning, nonlinear CausalVAE mechanisms, and the errors of bad input (issue 20, items 2-4)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

import ppzoo
from ppzoo.data.pendulum import FACTOR_NAMES, HOLDOUT_REGIONS, in_region, intervene, load, render
from ppzoo.graphs import descendants


@pytest.fixture(scope="module")
def full():
    return load(image_size=32, split="train", effect_noise=1.5)


@pytest.mark.parametrize("region", [("angle_block", "extrapolation")])
def test_holdout_removes_the_region_from_training(full, region):
    regions = (region,) if isinstance(region, str) else region
    held = load(image_size=32, split="train", effect_noise=1.5, holdout=list(regions))
    factors = held.truth["factors"]
    inside_full = np.zeros(len(full.truth["factors"]), dtype=bool)
    for r in regions:
        assert not in_region(factors, r).any()  # no training image lies in the region
        inside_full |= in_region(full.truth["factors"], r)
    # Exactly the region's images are gone, and the images still match their factors.
    assert inside_full.any() and held.info["held_out"] == inside_full.sum()
    np.testing.assert_array_equal(factors, full.truth["factors"][~inside_full])
    np.testing.assert_array_equal(held.data["x"], full.data["x"][~inside_full])
    if "extrapolation" in regions:  # beyond the training range: every light angle left is above the box
        assert factors[:, 1].min() >= HOLDOUT_REGIONS["extrapolation"]["light_angle"][1]


def test_shadow_free_region_is_out_of_support_and_removes_nothing():
    ds = load(image_size=32, split="train", effect_noise=1.5, holdout="shadow_free")
    assert ds.info["held_out"] == 0 and ds.truth["factors"][:, 2].min() >= 3.0


def test_shadow_free_image_has_no_shadow_pixels():
    factors = np.array([[0.3, 1.7, 0.0, 10.0], [0.3, 1.7, 6.0, 10.0], [-0.5, 1.0, 0.0, 4.0]])
    images = render(factors, 96)
    # The shadow is drawn on the ground (y = -0.5, pixel row ~85 at 96 px, 4 px thick); nothing else reaches below
    # row 80 (the bob's lowest point is y = 1).
    band = slice(80, 96)
    assert np.all(images[0, band] == 1.0) and np.all(images[2, band] == 1.0)  # white: no shadow pixel at all
    assert (images[1, band] < 0.5).any()  # the same scene with a shadow has one there
    # Everything above the ground is the same picture.
    np.testing.assert_array_equal(images[0, :80], images[1, :80])


def test_simulator_do_changes_only_descendants():
    ds = load(image_size=32, split="test", effect_noise=1.5)
    factors, noise = ds.truth["factors"][:50], ds.truth["effect_noise"][:50]
    for name in FACTOR_NAMES:
        value = 0.2 if "angle" in name and name.startswith("p") else (1.5 if name == "light_angle" else 0.0)
        after = intervene(factors, {name: value}, noise=noise)
        changed = np.any(np.abs(after - factors) > 1e-12, axis=0)
        kids = set(descendants(FACTOR_NAMES, ds.graph, name))
        for j, other in enumerate(FACTOR_NAMES):
            if other != name and other not in kids:
                assert not changed[j], f"do({name}) moved {other}"
        if name in ("pendulum_angle", "light_angle"):
            assert changed[2] and changed[3]


def test_mlp_mechanism_do_changes_only_descendants():
    """CausalVAE's nonlinear causal layer with A set to the pendulum's graph: the fixed-point solution satisfies
    z_i = g_i(A_:i z) + noise_i, and do() on a concept moves exactly its descendants (noise held fixed)."""
    from ppzoo.models.causal_vae import mlp_mechanism, mlp_nodes

    graph = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32)
    adjacency = jnp.asarray(1.3 * graph)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    weights = {"w_in": jax.random.normal(keys[0], (4, 4, 8)), "b_in": jax.random.normal(keys[1], (4, 8)),
               "w_out": jax.random.normal(keys[2], (4, 8)), "b_out": jnp.zeros(4)}
    noise = jnp.asarray(np.random.default_rng(0).standard_normal((5, 4, 1)), dtype=jnp.float32)

    @functools.partial(jax.jit, static_argnums=0)
    def solve(name, value):
        fn = lambda: mlp_nodes(adjacency, weights, noise, FACTOR_NAMES)  # noqa: E731
        return (handlers.do(fn, data={name: value}) if name else fn)()[..., 0]

    def run(do=None):
        name, value = next(iter(do.items())) if do else (None, 0.0)
        return np.asarray(solve(name, value))

    z = run()
    np.testing.assert_allclose(z, np.asarray(mlp_mechanism(adjacency, weights, jnp.asarray(z))) + noise[..., 0],
                               atol=1e-5)
    for i, name in enumerate(FACTOR_NAMES):
        moved = np.abs(run({name: 2.5}) - z).max(0) > 1e-6
        kids = {FACTOR_NAMES.index(k) for k in descendants(FACTOR_NAMES, graph, name)}
        assert moved[i]
        assert {j for j in range(4) if moved[j] and j != i} == kids


def test_conditioning_differs_from_intervening_on_a_confounded_graph():
    """c -> x, c -> y, x -> y, all linear-Gaussian (unit noise): E[y | do(x=1)] = 2 while E[y | x=1] = 2 + 3 E[c |
    x=1] = 2 + 3 / 2 = 3.5 in closed form. Tolerances: 5 Monte Carlo standard errors (the importance-weighted
    estimate's from its effective sample size)."""

    def toy():
        c = numpyro.sample("c", dist.Normal(0.0, 1.0))
        x = numpyro.sample("x", dist.Normal(c, 1.0))
        numpyro.sample("y", dist.Normal(2.0 * x + 3.0 * c, 1.0))

    n = 50_000
    keys = jax.random.split(jax.random.PRNGKey(0), n)

    def draw(program, key):
        trace = handlers.trace(handlers.seed(program, key)).get_trace()
        return trace["y"]["value"], trace["x"]["fn"].log_prob(trace["x"]["value"])

    y_do, _ = jax.vmap(lambda k: draw(handlers.do(toy, data={"x": 1.0}), k))(keys)
    y_cond, log_w = jax.vmap(lambda k: draw(handlers.condition(toy, data={"x": 1.0}), k))(keys)
    y_do, y_cond, w = np.asarray(y_do), np.asarray(y_cond), np.exp(np.asarray(log_w) - np.max(log_w))
    w /= w.sum()
    do_mean, do_se = y_do.mean(), y_do.std() / np.sqrt(n)
    cond_mean = np.sum(w * y_cond)
    ess = 1.0 / np.sum(w**2)
    cond_se = np.sqrt(np.sum(w * (y_cond - cond_mean) ** 2)) / np.sqrt(ess)
    assert abs(do_mean - 2.0) < 5 * do_se
    assert abs(cond_mean - 3.5) < 5 * cond_se
    assert cond_mean - do_mean > 1.0  # the two differ by far more than their errors (1.5 against ~0.03)


def test_mechanisms_learn_only_from_the_labels_with_their_input_gradient_kept():
    """SCM-VAE's image pathway calls the mechanisms with no gradient to their weights and the exact one to their
    inputs."""
    from ppzoo.models.scm_vae import _without_weight_gradient

    w = jnp.array([[0.5, -1.0], [2.0, 0.3]])
    x = jnp.array([[0.2, -0.7], [1.1, 0.4]])

    def f(weights, inputs):
        return jnp.tanh(inputs @ weights)

    def total(weights, inputs):
        return _without_weight_gradient(lambda v: f(weights, v), inputs).sum()

    np.testing.assert_allclose(_without_weight_gradient(lambda v: f(w, v), x), f(w, x), rtol=1e-6)
    grad_w, grad_x = jax.grad(total, argnums=(0, 1))(w, x)
    np.testing.assert_array_equal(grad_w, 0.0)
    np.testing.assert_allclose(grad_x, jax.grad(lambda v: f(w, v).sum())(x), rtol=1e-6)


def test_bad_holdout_and_intervention_inputs_give_clear_errors():
    with pytest.raises(ValueError, match=r"light_angle = \[4, 5\) lies outside the factor's range \[0, 3.14159\]"):
        load(image_size=32, holdout={"light_angle": (4.0, 5.0)})
    with pytest.raises(ValueError, match="holdout region 'moon' is unknown. Valid: 'shadow_free', 'angle_block'"):
        load(image_size=32, holdout="moon")
    with pytest.raises(ValueError, match="holdout region names unknown factor 'sun_height'"):
        load(image_size=32, holdout={"sun_height": (0.0, 1.0)})
    with pytest.raises(ValueError, match="removes every image"):
        load(image_size=32, holdout={"pendulum_angle": (-1.5, 1.5)})
    with pytest.raises(ValueError, match="do has unknown factor.*'sun_height'"):
        intervene(np.zeros((1, 4)) + [0.0, 1.5, 5.0, 10.0], {"sun_height": 1.0})
    from ppzoo.models.causal_vae import decode

    model = ppzoo.models.get("causal_vae", mlp_hidden=(4,), image_shape=(4, 4))
    with pytest.raises(ValueError, match=r"do names unknown concept\(s\) \['sun_height'\]"):
        decode(model, {}, np.zeros((1, 4, 1)), do={"sun_height": 1.0})
    with pytest.raises(ValueError, match="mechanism='mlp' takes scalar concepts"):
        ppzoo.models.get("causal_vae", mechanism="mlp", concept_dim=2)
    from ppzoo.case_studies import pendulum

    with pytest.raises(SystemExit):
        pendulum.parse_args(["--holdout", "moon"])
    # No causal NUTS fit for the page's engine section: refused when parsed, not a traceback at report time.
    for argv in (["--nuts-images", "0"], ["--models", "beta_vae"]):
        with pytest.raises(SystemExit):
            pendulum.parse_args(argv)
    assert pendulum.parse_args(["--holdout", "none"]).holdout == []
    assert pendulum.parse_args([]).holdout == ["shadow_free", "angle_block", "extrapolation"]
