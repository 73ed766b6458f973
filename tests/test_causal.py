"""Interventions and counterfactuals (ppzoo.causal) and the linear SCM: closed forms and errors."""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppzoo
from ppzoo.causal import counterfactual, intervene, topological_order

# Graph a -> b -> c <- d with known parameters (nodes in this order = the columns of x).
NODES = ("a", "b", "c", "d")
EDGES = (("a", "b"), ("b", "c"), ("d", "c"))
BIAS = np.array([0.5, 1.0, -0.5, 0.0])
WEIGHTS = np.array([2.0, -1.0, 0.5])
NOISE = np.array([1.0, 0.5, 0.3, 0.8])


def _simulate(num: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    eps = rng.normal(size=(num, 4))
    a = BIAS[0] + NOISE[0] * eps[:, 0]
    d = BIAS[3] + NOISE[3] * eps[:, 3]
    b = BIAS[1] + WEIGHTS[0] * a + NOISE[1] * eps[:, 1]
    c = BIAS[2] + WEIGHTS[1] * b + WEIGHTS[2] * d + NOISE[2] * eps[:, 2]
    return np.stack([a, b, c, d], 1).astype(np.float32)


@pytest.fixture(scope="module")
def scm_fit():
    model = ppzoo.models.get("linear_scm", nodes=NODES, edges=EDGES)
    return ppzoo.fit(model, {"x": _simulate(500, 0)}, engine="nuts", seed=0, num_warmup=300, num_samples=200, num_chains=2)


def _interventional_moments(draws, node, do_a=None):
    """Closed-form mean and variance of ``node`` under do(a = do_a) for each posterior draw, as a mixture."""
    bias, w, s = draws["bias"], draws["weights"], draws["noise_scale"]
    a_mean = bias[:, 0] if do_a is None else np.full(len(bias), do_a)
    a_var = s[:, 0] ** 2 if do_a is None else np.zeros(len(bias))
    b_mean = bias[:, 1] + w[:, 0] * a_mean
    b_var = w[:, 0] ** 2 * a_var + s[:, 1] ** 2
    d_mean, d_var = bias[:, 3], s[:, 3] ** 2
    c_mean = bias[:, 2] + w[:, 1] * b_mean + w[:, 2] * d_mean
    c_var = w[:, 1] ** 2 * b_var + w[:, 2] ** 2 * d_var + s[:, 2] ** 2
    mean, var = {"a": (a_mean, a_var), "b": (b_mean, b_var), "c": (c_mean, c_var), "d": (d_mean, d_var)}[node]
    return mean.mean(), np.sqrt(var.mean() + mean.var())


def test_topological_order_and_cycles():
    assert topological_order(["c", "b", "a"], [("a", "b"), ("b", "c")]) == ("a", "b", "c")
    adjacency = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    assert topological_order(["a", "b", "c"], adjacency) == ("a", "b", "c")
    with pytest.raises(ValueError, match=r"cycle: a -> b -> c -> a"):
        topological_order(["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "a")])
    with pytest.raises(ValueError, match="unknown node 'z'"):
        topological_order(["a", "b"], [("a", "z")])
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        ppzoo.models.get("linear_scm", nodes=("a", "b"), edges=(("a", "b"), ("b", "a")))
    with pytest.raises(ValueError, match="clash"):
        ppzoo.models.get("linear_scm", nodes=("weights", "b"), edges=())


def test_intervene_matches_closed_form(scm_fit):
    draws = intervene(scm_fit, do={"a": 1.5}, seed=1)
    num_draws, num_data = draws["c"].shape
    assert num_draws == scm_fit.num_chains * scm_fit.num_draws and num_data == 500
    assert np.all(draws["a"] == 1.5)
    for node in ("b", "c", "d"):
        mean, sd = _interventional_moments(draws, node, do_a=1.5)
        values = draws[node].ravel()
        # Given the same posterior draws the only error is the regenerated noise: independent across
        # data points and draws, so the standard error of the mean is sd / sqrt(n), of the sd about
        # sd / sqrt(2 n). Tolerance: 4 standard errors.
        n = values.size
        assert abs(values.mean() - mean) < 4 * sd / np.sqrt(n), node
        assert abs(values.std() - sd) < 4 * sd / np.sqrt(2 * n), node


def test_do_on_a_cause_changes_effects_not_other_causes(scm_fit):
    baseline = intervene(scm_fit, do={}, seed=2)
    treated = intervene(scm_fit, do={"a": 3.0}, seed=2)
    n = baseline["d"].size
    # d is another cause of c: unchanged (same seed: the same noise draws give identical values).
    np.testing.assert_allclose(treated["d"], baseline["d"], atol=1e-5)
    # b and c are effects of a: E[b] moves by w_ab (3 - E[a]) ~ 2 * 2.5, far beyond Monte Carlo error.
    assert abs(treated["b"].mean() - baseline["b"].mean()) > 20 * baseline["b"].std() / np.sqrt(n)
    assert abs(treated["c"].mean() - baseline["c"].mean()) > 20 * baseline["c"].std() / np.sqrt(n)


def test_do_on_an_effect_leaves_causes_unchanged(scm_fit):
    baseline = intervene(scm_fit, do={}, seed=3)
    treated = intervene(scm_fit, do={"c": -4.0, "b": 0.0}, seed=3)  # a multi-node intervention
    for node in ("a", "d"):
        np.testing.assert_allclose(treated[node], baseline[node], atol=1e-5)
    assert np.all(treated["c"] == -4.0) and np.all(treated["b"] == 0.0)
    # Observational closed form for a (Monte Carlo check of the baseline itself).
    mean, sd = _interventional_moments(baseline, "a")
    assert abs(baseline["a"].mean() - mean) < 4 * sd / np.sqrt(baseline["a"].size)


@pytest.mark.parametrize("method", ["guide", "nuts"])
def test_counterfactual_linear_scm_is_exact(scm_fit, method):
    units = _simulate(6, 7)
    cf = counterfactual(scm_fit, {"x": units}, do={"b": 0.0}, method=method, return_sites=["a", "b", "c", "d", "weights"])
    w_bc = cf["weights"][:, 1:2]
    # Abduction is exact for additive Gaussian noise: c' = c + w_bc (0 - b) per posterior draw; a, d keep
    # their factual values.
    np.testing.assert_allclose(cf["c"], units[:, 2] + w_bc * (0.0 - units[:, 1]), atol=1e-4)
    np.testing.assert_allclose(cf["a"], np.broadcast_to(units[:, 0], cf["a"].shape), atol=1e-5)
    np.testing.assert_allclose(cf["d"], np.broadcast_to(units[:, 3], cf["d"].shape), atol=1e-5)


# A model with a per-datum latent cause: z ~ N(0, 1); x1 ~ N(z, S1); x2 ~ N(W x1 + V z, S2).
S1, S2, W, V = 0.5, 0.5, 0.7, 1.0


def latent_model(x1=None, x2=None, *, num_data: int = 10):
    with numpyro.plate("data", num_data if x1 is None else len(x1)):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        x1 = numpyro.sample("x1", dist.Normal(z, S1), obs=x1)
        numpyro.sample("x2", dist.Normal(W * x1 + V * z, S2), obs=x2)


def explicit_noise_model(x=None, *, num_data: int = 10):
    """The same cause written with explicit exogenous noise and a deterministic causal variable."""
    with numpyro.plate("data", num_data if x is None else len(x)):
        eps = numpyro.sample("eps", dist.Normal(0.0, 1.0))
        a = numpyro.deterministic("a", 1.0 + eps)
        numpyro.sample("x", dist.Normal(2.0 * a, 0.5), obs=x)


def _posterior_z(x1, x2):
    precision = 1.0 + 1.0 / S1**2 + V**2 / S2**2
    return (x1 / S1**2 + V * (x2 - W * x1) / S2**2) / precision, precision**-0.5


@pytest.fixture(scope="module")
def latent_fit():
    rng = np.random.default_rng(3)
    z = rng.normal(size=8)
    x1 = (z + S1 * rng.normal(size=8)).astype(np.float32)
    x2 = (W * x1 + V * z + S2 * rng.normal(size=8)).astype(np.float32)
    return ppzoo.fit(latent_model, {"x1": x1, "x2": x2}, engine="svi", seed=0, steps=3000, learning_rate=0.02,
                     guide="auto_normal", num_draws=1000)


@pytest.mark.parametrize("method", ["guide", "nuts"])
def test_counterfactual_abducts_latent_noise(latent_fit, method):
    x1, x2 = latent_fit.data["x1"], latent_fit.data["x2"]
    cf = counterfactual(latent_fit, None, do={"z": 1.0}, method=method, seed=1, num_samples=1000,
                        nuts_options={"num_warmup": 300, "num_samples": 1000})
    # do(z = 1): x1' = x1 + (1 - z), x2' = x2 + (W + V)(1 - z) with z from its Gaussian posterior.
    mean, sd = _posterior_z(x1, x2)
    np.testing.assert_allclose(cf["x2"] - x2, (W + V) / 1.0 * (cf["x1"] - x1), atol=1e-4)
    # 1000 draws: MC standard error of the mean sd/sqrt(1000) ~ 0.01 for independent draws (guide);
    # NUTS draws are autocorrelated (ESS >= 250 on this Gaussian), so the tolerance is 4 sd / sqrt(250),
    # plus 0.02 for SVI's optimisation error.
    tol = 4 * sd / np.sqrt(250) + 0.02
    np.testing.assert_allclose(cf["x1"].mean(0), x1 + 1.0 - mean, atol=tol)
    np.testing.assert_allclose(cf["x1"].std(0), np.full_like(mean, sd), atol=tol + 0.02)


def test_counterfactual_explicit_noise_and_deterministic_do():
    x = np.array([1.0, 2.5, -0.5, 3.0], dtype=np.float32)
    fit = ppzoo.fit(explicit_noise_model, {"x": x}, engine="svi", seed=0, steps=2000, learning_rate=0.02,
                    guide="auto_normal", num_draws=500)
    cf = counterfactual(fit, None, do={"a": 0.0}, method="guide", seed=0)
    # x' = 2 * 0 + 0.5 * (x - 2 a) / 0.5 = x - 2 a, a = 1 + eps from the guide's posterior of eps.
    np.testing.assert_allclose(cf["x"], x - 2.0 * (1.0 + cf["eps"]), atol=1e-4)
    assert np.all(cf["a"] == 0.0)
    # Posterior of a given x: precision 1 + 16, mean (1 + 4 * 2 x) / 17 in terms of a = 1 + eps.
    a_mean = (1.0 + 8.0 * x) / 17.0
    np.testing.assert_allclose(cf["x"].mean(0), x - 2.0 * a_mean, atol=0.1)
    sim = intervene(fit, do={"a": 2.0}, num_samples=50)
    assert abs(sim["x"].mean() - 4.0) < 4 * 0.5 / np.sqrt(sim["x"].size)


def test_bad_inputs(scm_fit, latent_fit):
    with pytest.raises(ValueError, match=r"unknown site 'zz'.*Sites that can be intervened on: .*a"):
        intervene(scm_fit, do={"zz": 1.0})
    with pytest.raises(ValueError, match=r"do\['a'\] has shape \(3,\), which does not broadcast to the site's shape \(500,\)"):
        intervene(scm_fit, do={"a": np.zeros(3)})
    with pytest.raises(ValueError, match="observed only"):
        intervene(latent_fit, do={"x2": 0.0})
    with pytest.raises(ValueError, match="NaN or inf"):
        intervene(scm_fit, do={"a": np.nan})
    with pytest.raises(ValueError, match="unknown return site"):
        intervene(scm_fit, do={"a": 0.0}, return_sites=["nope"])
    with pytest.raises(ValueError, match="num_samples"):
        intervene(scm_fit, do={"a": 0.0}, num_samples=0)
    with pytest.raises(TypeError, match="ppzoo.Fit"):
        intervene({"samples": {}}, do={"a": 0.0})
    with pytest.raises(ValueError, match=r"shape \(num_data, 4\)"):
        counterfactual(scm_fit, {"x": np.zeros((3, 5), np.float32)}, do={"a": 0.0})
    with pytest.raises(ValueError, match=r"shape \(num_data, 4\)"):
        ppzoo.fit(ppzoo.models.get("linear_scm", nodes=NODES, edges=EDGES), {"x": np.zeros((9, 3))}, engine="nuts")
    with pytest.raises(ValueError, match="method"):
        counterfactual(scm_fit, None, do={"a": 0.0}, method="exact")
    with pytest.raises(ValueError, match="needs an SVI fit"):
        counterfactual(_nuts_latent(latent_fit), None, do={"z": 0.0}, method="guide")
    with pytest.raises(ValueError, match="autoguide"):
        counterfactual(latent_fit, {"x1": np.zeros(3, np.float32), "x2": np.zeros(3, np.float32)}, do={"z": 0.0})


def _nuts_latent(latent_fit):
    import dataclasses

    return dataclasses.replace(latent_fit, engine="nuts")  # only the engine is read before the error
