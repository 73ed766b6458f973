"""CausalGAN's controller: do() against conditioning, exact and in closed form; errors; sites and shapes.

The controller is a linear-Gaussian SCM here (``mechanism="linear"``, ``num_components=1``), its weights set by
hand, so the interventional and conditional laws are known in closed form. Sizes are tiny: one trace per check,
nothing trained (the adversarial training is exercised by the pendulum study, ``case_studies/_causal_gan.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers

import ppzoo.models
from ppzoo.case_studies._causal_gan import CausalGANFit, generate_images, label_tv
from ppzoo.models.causal_gan import condition_labels, controller

TINY = dict(image_shape=(2, 2, 1), noise_dim=2, hidden=(4,), mechanism="linear", num_components=1)


def linear_controller(concepts, edges, weights, biases, scales):
    """A linear-Gaussian controller: ``weights[(cause, effect)]``, ``biases[c]``, ``scales[c]`` set by hand."""
    model = ppzoo.models.get("causal_gan", concepts=concepts, edges=edges, **TINY)
    config = model.config
    trace = handlers.trace(handlers.seed(controller, 0)).get_trace(num_data=2, config=config)
    params = {k: s["value"] for k, s in trace.items() if s["type"] == "param"}
    for c in concepts:
        net = jax.tree.map(np.array, params[f"mechanism_{c}$params"])
        layer = net["layers"][0]  # one affine layer, outputs (logit, mean); the logit is unused with one component
        parents = config.parents(c)
        layer["kernel"][:] = 0.0
        for i, p in enumerate(parents):
            layer["kernel"][i, 1] = weights[(p, c)]
        layer["bias"][:] = 0.0
        # A root's input is the constant 1, so its "kernel" carries the bias too: keep the total at biases[c].
        layer["bias"][1] = biases.get(c, 0.0) - (0.0 if parents else layer["kernel"][0, 1])
        params[f"mechanism_{c}$params"] = net
    params["noise_scale"] = jnp.asarray([[scales[c]] for c in concepts], jnp.float32)
    return model, params


def draw(model, params, key, num, do=None):
    """The controller's concepts, ``num`` rows, under ``do`` (one compiled program: cheaper than op-by-op)."""
    do = do or {}

    def run(params, key):
        program = handlers.substitute(controller, data=params)
        if do:
            program = handlers.do(program, data={k: jnp.full((num,), v) for k, v in do.items()})
        trace = handlers.trace(handlers.seed(program, key)).get_trace(num_data=num, config=model.config)
        # Under do() the trace keeps the value the site would have drawn; the program used the intervened one.
        return {c: jnp.full(num, do[c]) if c in do else trace[c]["value"] for c in model.config.concepts}

    return jax.tree.map(np.asarray, jax.jit(run)(params, key))


def test_do_changes_only_descendants_exactly_on_a_linear_gaussian_controller():
    # a -> b -> c, d on its own: do(b) must leave a and d draw for draw (same seed), and move c by w_bc (v - b).
    model, params = linear_controller(("a", "b", "c", "d"), (("a", "b"), ("b", "c")),
                                      {("a", "b"): 0.7, ("b", "c"): -1.3}, {"a": 0.2, "d": -0.5},
                                      {"a": 1.0, "b": 0.5, "c": 0.3, "d": 2.0})
    key, v = jax.random.key(3), 2.0
    seen, done = draw(model, params, key, 64), draw(model, params, key, 64, do={"b": v})
    np.testing.assert_array_equal(done["a"], seen["a"])
    np.testing.assert_array_equal(done["d"], seen["d"])
    np.testing.assert_allclose(done["c"] - seen["c"], -1.3 * (v - seen["b"]), rtol=1e-5, atol=1e-5)
    # and the descendant's law really moved: E[c] under do(b=2) is -2.6, observationally -1.3 * 0.7 * 0.2 = -0.18
    assert abs(done["c"].mean() - seen["c"].mean()) > 1.0


def test_conditioning_differs_from_intervening_on_a_confounded_graph():
    # a confounds b and c: a -> b, a -> c, b -> c, a ~ N(0, 1), b = 0.8 a + N(0, 0.6^2), c = 0.5 a + b + N(0, 0.5^2).
    # do(b = v): E[a] = 0, E[c] = v.  Conditioning on b = v: E[a | b] = 0.8 v / (0.64 + 0.36) = 0.8 v,
    # Var[a | b] = 1 - 0.64 = 0.36, E[c | b] = v + 0.5 * 0.8 v = 1.4 v, Var[c | b] = 0.25 * 0.36 + 0.25 = 0.34.
    model, params = linear_controller(("a", "b", "c"), (("a", "b"), ("a", "c"), ("b", "c")),
                                      {("a", "b"): 0.8, ("a", "c"): 0.5, ("b", "c"): 1.0}, {},
                                      {"a": 1.0, "b": 0.6, "c": 0.5})
    v, n = 1.5, 4000
    done = draw(model, params, jax.random.key(0), n, do={"b": v})
    cond = np.asarray(condition_labels(jax.random.key(1), model.config, params, {"b": v}, num_samples=n,
                                       num_proposals=40 * n))
    # Tolerance: 5 Monte Carlo standard errors. For do(): sd(a) = 1, sd(c) = sqrt(0.25 + 0.25) over n draws. For the
    # conditioned draws (resampled from likelihood-weighted proposals) at most twice the plain error is allowed
    # for the duplicates resampling makes: 5 * 2 * sd / sqrt(n).
    assert abs(done["a"].mean() - 0.0) < 5 * 1.0 / np.sqrt(n)
    assert abs(done["c"].mean() - v) < 5 * np.sqrt(0.5) / np.sqrt(n)
    assert abs(cond[:, 0].mean() - 0.8 * v) < 10 * 0.6 / np.sqrt(n)
    assert abs(cond[:, 2].mean() - 1.4 * v) < 10 * np.sqrt(0.34) / np.sqrt(n)
    np.testing.assert_allclose(cond[:, 1], v)
    # the two operations differ by far more than the tolerance: 1.2 in E[a], 0.6 in E[c]
    assert cond[:, 0].mean() - done["a"].mean() > 1.0


def test_unknown_concept_is_refused_by_name():
    model = ppzoo.models.get("causal_gan", **ppzoo.models.get("causal_gan").example.config)
    fit = CausalGANFit(model, {}, {}, np.zeros(0), np.zeros(0), 0.0, [])
    with pytest.raises(ValueError, match=r"do names unknown concept\(s\) 'shadow_lenght'.*concepts: a, b"):
        generate_images(fit, jax.random.key(0), 4, do={"shadow_lenght": 1.0})
    with pytest.raises(ValueError, match=r"given names unknown concept\(s\) 'c'"):
        condition_labels(jax.random.key(0), model.config, {}, {"c": 1.0}, num_samples=4)
    with pytest.raises(ValueError, match="unknown node|unknown"):
        ppzoo.models.get("causal_gan", concepts=("a", "b"), edges=(("a", "c"),))
    with pytest.raises(ValueError, match="cycle"):
        ppzoo.models.get("causal_gan", concepts=("a", "b"), edges=(("a", "b"), ("b", "a")))
    with pytest.raises(ValueError, match="clash"):
        ppzoo.models.get("causal_gan", concepts=("x", "b"), edges=())


def test_default_model_sites_and_shapes():
    # The default concepts and graph (the pendulum's), small networks and images to keep the weights' init cheap.
    model = ppzoo.models.get("causal_gan", image_shape=(4, 4, 3), hidden=(4,), mechanism_hidden=(3,))

    def run(key):
        trace = handlers.trace(handlers.seed(model, key)).get_trace(num_data=5)
        return {k: s["value"] for k, s in trace.items() if s["type"] in ("sample", "deterministic")}

    shapes = {k: v.shape for k, v in jax.eval_shape(run, jax.random.key(0)).items()}
    concepts = ("pendulum_angle", "light_angle", "shadow_length", "shadow_position")
    assert shapes == {**{c: (5,) for c in concepts}, "z": (5, 16), "x_mean": (5, 4, 4, 3), "x": (5, 4, 4, 3)}
    assert model.config.parents("shadow_length") == ("pendulum_angle", "light_angle")
    assert model.config.descendants("light_angle") == ("shadow_length", "shadow_position")
    with pytest.raises(ValueError, match=r"`x` must have shape \(num_data, 4, 4, 3\)"):
        model(x=np.zeros((2, 8, 8, 3), np.float32))


def test_label_tv_on_identical_disjoint_and_shifted_samples():
    rng = np.random.default_rng(0)
    labels = rng.standard_normal((1000, 2))
    medians = np.zeros(2)
    assert label_tv(labels, labels, medians) == 0.0
    assert label_tv(np.full((10, 2), 1.0), np.full((10, 2), -1.0), medians) == 1.0
    # one concept always above its median against a fair split: half the mass moves
    shifted = labels.copy()
    shifted[:, 0] = np.abs(shifted[:, 0])
    assert label_tv(shifted, labels, medians) == pytest.approx(np.mean(labels[:, 0] <= 0), abs=1e-12)


def test_trainer_runs_and_interventions_reach_the_generator():
    # Smoke run of both stages at the smallest size (4 adversarial steps): finite losses of every named term, the
    # generator's weights moved, and do() on the root changes the generated images (through the child's label).
    from ppzoo.case_studies._causal_gan import LOSS_NAMES, fit

    model = ppzoo.models.get("causal_gan", **ppzoo.models.get("causal_gan").example.config)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 2, 2, 1)).astype(np.float32)
    u = rng.standard_normal((16, 2)).astype(np.float32)
    trained = fit(jax.random.key(0), model, x, u, controller_steps=5, steps=4, batch_size=8, hidden=(4,), chunk_size=2)
    assert trained.losses.dtype.names == LOSS_NAMES and len(trained.losses) == 4
    assert all(np.isfinite(trained.losses[n]).all() for n in LOSS_NAMES) and not trained.warnings
    start = handlers.trace(handlers.seed(model, 0)).get_trace(num_data=2)["decoder$params"]["value"]
    moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max(), start, trained.params["decoder$params"])
    assert max(jax.tree.leaves(moved)) > 0
    seen, _ = generate_images(trained, jax.random.key(1), 6)
    done, labels = generate_images(trained, jax.random.key(1), 6, do={"a": 3.0})
    np.testing.assert_array_equal(labels[:, 0], 3.0)
    assert np.abs(done - seen).max() > 0
