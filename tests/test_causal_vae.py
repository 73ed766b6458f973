"""CausalVAE and SCM-VAE: shapes, the acyclicity penalty, exact do() semantics, errors, the case study."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer import Predictive

import ppzoo
from ppzoo.data.pendulum import GRAPH
from ppzoo.models.causal_vae import PENDULUM_CONCEPTS, acyclicity, structural_hamming_distance

SHAPE = (16, 16, 3)
SMALL = dict(image_shape=SHAPE, mlp_hidden=(8,), batch_size=None)


def _trace(model, do=None, eps=None, params=None, n=5):
    program = model
    if params:
        program = handlers.substitute(program, data=params)
    if eps is not None:
        program = handlers.condition(program, data={"eps": eps})
    if do:
        program = handlers.do(program, data=do)
    return handlers.trace(handlers.seed(program, 0)).get_trace(num_data=n)


@pytest.mark.parametrize("name", ["causal_vae", "scm_vae"])
def test_prior_predictive_shapes(name):
    model = ppzoo.models.get(name, **SMALL)
    draws = Predictive(model, num_samples=3)(jax.random.key(0), num_data=5)
    assert draws["x"].shape == (3, 5, *SHAPE)
    assert draws["eps"].shape == (3, 5, 4, 1)
    assert draws["z"].shape == (3, 5, 4)
    for concept in PENDULUM_CONCEPTS:
        assert draws[concept].shape == (3, 5, 1)
    # the concept sites are the columns of z
    np.testing.assert_allclose(np.concatenate([draws[c] for c in PENDULUM_CONCEPTS], -1), draws["z"], rtol=1e-6)


def test_acyclicity_is_zero_on_a_dag_and_positive_with_a_cycle():
    dag = np.triu(np.random.default_rng(0).normal(size=(4, 4)), 1)
    assert abs(float(acyclicity(dag))) < 1e-5
    assert abs(float(acyclicity(GRAPH.astype(float)))) < 1e-6
    cyclic = dag.copy()
    cyclic[3, 0] = 0.7
    assert float(acyclicity(cyclic)) > 1e-3


def test_structural_hamming_distance():
    assert structural_hamming_distance(GRAPH, GRAPH) == 0
    assert structural_hamming_distance(np.zeros((4, 4)), GRAPH) == 4
    assert structural_hamming_distance(GRAPH.T, GRAPH) == 4  # every edge reversed
    extra = GRAPH.copy()
    extra[2, 3] = 1
    assert structural_hamming_distance(extra, GRAPH) == 1
    with pytest.raises(ValueError, match="square adjacency"):
        structural_hamming_distance(np.zeros((3, 3)), GRAPH)


def test_scm_vae_do_on_a_cause_moves_its_effects_and_not_the_other_cause():
    model = ppzoo.models.get("scm_vae", **SMALL)
    eps = jax.random.normal(jax.random.key(1), (5, 4, 1))
    natural = _trace(model, eps=eps)
    intervened = _trace(model, eps=eps, do={"pendulum_angle": 2.0})
    np.testing.assert_array_equal(intervened["light_angle"]["value"], natural["light_angle"]["value"])
    z_nat, z_do = np.asarray(natural["z"]["value"]), np.asarray(intervened["z"]["value"])
    np.testing.assert_array_equal(z_do[:, 0], 2.0)
    np.testing.assert_array_equal(z_do[:, 1], z_nat[:, 1])
    assert np.all(np.abs(z_do[:, 2:] - z_nat[:, 2:]) > 0)
    # an effect has no children: intervening on it moves nothing else
    on_effect = np.asarray(_trace(model, eps=eps, do={"shadow_length": -1.0})["z"]["value"])
    np.testing.assert_array_equal(on_effect[:, [0, 1, 3]], z_nat[:, [0, 1, 3]])


def test_causal_vae_do_follows_the_linear_scm_exactly():
    model = ppzoo.models.get("causal_vae", **SMALL)
    params = {"adjacency": jnp.asarray(0.5 * GRAPH, dtype=jnp.float32), "noise_scale": jnp.ones(4)}
    eps = jax.random.normal(jax.random.key(2), (5, 4, 1))
    natural = np.asarray(_trace(model, eps=eps, params=params)["z"]["value"])
    e = np.asarray(eps[..., 0])
    np.testing.assert_allclose(natural[:, 2], 0.5 * (e[:, 0] + e[:, 1]) + e[:, 2], rtol=1e-5, atol=1e-6)
    do = np.asarray(_trace(model, eps=eps, params=params, do={"light_angle": 3.0})["z"]["value"])
    np.testing.assert_array_equal(do[:, 0], natural[:, 0])
    np.testing.assert_array_equal(do[:, 1], 3.0)
    np.testing.assert_allclose(do[:, 2:] - natural[:, 2:], np.repeat(0.5 * (3.0 - natural[:, [1]]), 2, axis=1), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_svi():
    """A few SVI steps of each causal VAE on 8 random images (compiled once for the module)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, *SHAPE)).astype(np.float32)
    u = rng.normal(size=(8, 4)).astype(np.float32)
    fits = {}
    for name in ("causal_vae", "scm_vae"):
        model = ppzoo.models.get(name, image_shape=SHAPE, mlp_hidden=(8,), batch_size=4)
        fits[name] = ppzoo.fit(model, {"x": x, "u": u}, engine="svi", steps=20, learning_rate=1e-3, num_draws=2)
    # CausalVAE's causal layer set to the true graph with weight 0.5: effects rise with their causes.
    fits["causal_vae"].params["adjacency"] = jnp.asarray(0.5 * GRAPH, dtype=jnp.float32)
    return x, u, fits


def test_pure_helpers_take_the_model_or_its_config_and_the_params(tiny_svi):
    from ppzoo.models.causal_vae import decode, learned_adjacency, learned_graph

    x, _, fits = tiny_svi
    fit = fits["causal_vae"]
    np.testing.assert_array_equal(learned_adjacency(fit.model, fit.params), 0.5 * GRAPH)
    np.testing.assert_array_equal(learned_graph(fit.model.config, fit.params), GRAPH)  # 0.5 > edge_threshold 0.3
    np.testing.assert_array_equal(learned_graph(fit.model, fit.params, threshold=0.6), np.zeros_like(GRAPH))
    eps = np.random.default_rng(1).normal(size=(3, 4, 1)).astype(np.float32)
    by_model = decode(fit.model, fit.params, eps, do={"light_angle": 1.0})
    by_config = decode(fit.model.config, fit.params, eps, do={"light_angle": 1.0}, image_shape=x.shape[1:])
    assert by_model["x_mean"].shape == (3, *SHAPE)
    np.testing.assert_array_equal(by_model["x_mean"], by_config["x_mean"])
    # Bad input is named before anything compiles.
    with pytest.raises(ValueError, match="pass image_shape"):
        decode(fit.model.with_config(image_shape=None), fit.params, eps)
    with pytest.raises(TypeError, match="causal VAE"):
        decode(ppzoo.models.get("ica"), fit.params, eps)
    with pytest.raises(TypeError, match="'causal_vae'"):
        learned_adjacency(fits["scm_vae"].model, fits["scm_vae"].params)
    with pytest.raises(ValueError, match="no 'adjacency'"):
        learned_graph(fit.model, {})


def test_fit_svi_then_nuts_with_fixed_weights(tiny_svi):
    x, u, fits = tiny_svi
    svi = fits["causal_vae"]
    model = svi.model
    assert np.all(np.isfinite(svi.losses))
    assert {"adjacency", "noise_scale", "encoder$params", "decoder$params"} <= set(svi.params)
    nuts = ppzoo.fit(model.with_config(batch_size=None), {"x": x[:2], "u": u[:2]}, engine="nuts", params=svi.params,
                     num_warmup=10, num_samples=10, num_chains=1)
    assert nuts.samples["eps"].shape == (1, 10, 2, 4, 1)
    assert np.all(np.isfinite(nuts.samples["z"]))


@pytest.mark.parametrize("method", ["guide", "nuts"])
def test_counterfactual_images_causal_vae(tiny_svi, method):
    # Abduction of eps given the images (encoder or NUTS), do(light_angle = 2), prediction. With A = 0.5 on the
    # true graph and the same abducted eps: the other cause keeps its value, each effect moves by
    # 0.5 (2 - light_angle) -- upwards exactly when the cause is raised -- and x is the decoder's mean there.
    from ppzoo.models.causal_vae import decode

    x, _, fits = tiny_svi
    fit = fits["causal_vae"]
    options = {"num_warmup": 20, "num_samples": 10}
    natural = ppzoo.counterfactual(fit, {"x": x[:5]}, do={}, method=method, num_samples=6, seed=1, nuts_options=options)
    cf = ppzoo.counterfactual(fit, {"x": x[:5]}, do={"light_angle": 2.0}, method=method, num_samples=6, seed=1,
                              nuts_options=options)
    assert cf["x"].shape == (6, 5, *SHAPE) and cf["z"].shape == (6, 5, 4)
    np.testing.assert_array_equal(cf["eps"], natural["eps"])  # the same abduction, so a unit-level comparison
    np.testing.assert_allclose(cf["pendulum_angle"], natural["pendulum_angle"], atol=1e-6)
    np.testing.assert_array_equal(cf["light_angle"], 2.0)
    move = 0.5 * (2.0 - natural["light_angle"])
    for effect in ("shadow_length", "shadow_position"):
        np.testing.assert_allclose(cf[effect] - natural[effect], move, atol=1e-5)
        assert np.all(np.sign(cf[effect] - natural[effect]) == np.sign(2.0 - natural["light_angle"]))
    scale = np.asarray(fit.params["noise_scale"])
    np.testing.assert_allclose(cf["pendulum_angle"][..., 0], scale[0] * cf["eps"][..., 0, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cf["x"][0], decode(fit.model, fit.params, cf["eps"][0], do={"light_angle": 2.0})["x_mean"],
                               atol=1e-5)
    if method == "nuts":
        return
    # do on an effect: both causes and the other effect keep their values.
    on_effect = ppzoo.counterfactual(fit, {"x": x[:5]}, do={"shadow_length": -1.0}, method=method, num_samples=6,
                                     seed=1, nuts_options=options)
    for other in ("pendulum_angle", "light_angle", "shadow_position"):
        np.testing.assert_allclose(on_effect[other], natural[other], atol=1e-6)


def test_counterfactual_images_scm_vae(tiny_svi):
    x, _, fits = tiny_svi
    fit = fits["scm_vae"]
    natural = ppzoo.counterfactual(fit, None, do={}, num_samples=4, seed=2)  # fit.data: all 8 units, full batch
    cf = ppzoo.counterfactual(fit, None, do={"pendulum_angle": 1.5, "light_angle": -0.5}, num_samples=4, seed=2)
    assert cf["x"].shape == (4, 8, *SHAPE)
    np.testing.assert_array_equal(cf["pendulum_angle"], 1.5)
    for effect in ("shadow_length", "shadow_position"):
        assert np.all(np.abs(cf[effect] - natural[effect]) > 0)  # both effects follow their mechanisms
    on_effect = ppzoo.counterfactual(fit, None, do={"shadow_position": 0.0}, num_samples=4, seed=2)
    np.testing.assert_allclose(on_effect["z"][..., :3], natural["z"][..., :3], atol=1e-6)


def test_scm_vae_rejects_a_cyclic_graph():
    cycle = (("pendulum_angle", "shadow_length"), ("shadow_length", "light_angle"), ("light_angle", "pendulum_angle"))
    with pytest.raises(ValueError, match="SCMVAEConfig.graph.*cycle.*pendulum_angle -> shadow_length -> light_angle -> pendulum_angle"):
        ppzoo.models.get("scm_vae", graph=cycle)
    with pytest.raises(ValueError, match="self-loop"):
        ppzoo.models.get("scm_vae", graph=(("light_angle", "light_angle"),))
    with pytest.raises(ValueError, match="unknown concept"):
        ppzoo.models.get("scm_vae", graph=(("light_angle", "sun_height"),))


def test_bad_labels_and_shapes_are_named():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, *SHAPE)).astype(np.float32)
    model = ppzoo.models.get("causal_vae", mlp_hidden=(8,), batch_size=4)
    with pytest.raises(ValueError, match=r"labels `u` must have shape \(num_data, 4\)"):
        ppzoo.fit(model, {"x": x, "u": np.zeros((8, 3), np.float32)}, engine="svi", steps=1)
    with pytest.raises(ValueError, match="labels `u` have 7 rows but `x` has 8 images"):
        ppzoo.fit(model, {"x": x, "u": np.zeros((7, 4), np.float32)}, engine="svi", steps=1)
    with pytest.raises(ValueError, match=r"image_shape is \(32, 32, 3\)"):
        ppzoo.fit(model.with_config(image_shape=(32, 32, 3)), {"x": x}, engine="svi", steps=1)
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        ppzoo.fit(model, {"x": x * 3}, engine="svi", steps=1)
    with pytest.raises(ValueError, match="fewer than CausalVAEConfig.batch_size=64"):
        ppzoo.fit(ppzoo.models.get("causal_vae"), {"x": x}, engine="svi", steps=1)


def test_config_errors():
    with pytest.raises(ValueError, match="concept_dim must be a positive integer"):
        ppzoo.models.get("causal_vae", concept_dim=0)
    with pytest.raises(ValueError, match="likelihood must be 'bernoulli' or 'gaussian'"):
        ppzoo.models.get("scm_vae", likelihood="poisson")
    with pytest.raises(ValueError, match="repeated names"):
        ppzoo.models.get("causal_vae", concepts=("a", "a"))
    with pytest.raises(ValueError, match="may not use the model's own site names"):
        ppzoo.models.get("causal_vae", concepts=("x", "b"))
    with pytest.raises(ValueError, match="decoder must be 'joint' or 'per_concept'"):
        ppzoo.models.get("scm_vae", decoder="per_pixel")
    with pytest.raises(ValueError, match="decoder groups must split the concepts"):
        ppzoo.models.get("causal_vae", decoder=(("pendulum_angle",), ("light_angle", "shadow_length")))
    with pytest.raises(ValueError, match="adjacency_gradient must be 'labels' or 'all'"):
        ppzoo.models.get("causal_vae", adjacency_gradient="decoder")
    with pytest.raises(TypeError, match="Unknown config field"):
        ppzoo.models.get("causal_vae", adjacency_weight=1.0)


def test_case_study_smoke(tmp_path):
    from ppzoo.case_studies import pendulum

    out = pendulum.main([
        "--out", str(tmp_path / "report"), "--num-train", "64", "--num-test", "8", "--steps", "10", "--hidden", "16",
        "--batch-size", "16", "--samples", "4", "--nuts-images", "1", "--num-warmup", "5", "--num-samples", "5",
        "--num-chains", "1", "--effect-noise", "0.5", "--decoder", "objects", "--seeds", "2",
        # SCM-VAE goes through the same code as CausalVAE here (CausalModel); it is left out for time (its own
        # fit, NUTS and counterfactual tests are above).
        "--models", "causal_vae,beta_vae",
    ])
    page = (out / "index.html").read_text()
    assert "Interventions and counterfactuals" in page
    pd = __import__("pandas")
    table = pd.read_csv(out / "comparison.csv", index_col=0)
    assert list(table.index) == ["simulator", "causal_vae", "beta_vae"]
    # Each model trained from two seeds, scored on the same images; the comparison is their mean.
    per_seed = pd.read_csv(out / "comparison_per_seed.csv", index_col=[0, 1])
    assert list(per_seed.index) == [("simulator", 0), ("causal_vae", 0), ("beta_vae", 0), ("causal_vae", 1),
                                    ("beta_vae", 1)]
    np.testing.assert_allclose(table.loc["causal_vae", "do_target_mae"],
                               per_seed.loc["causal_vae", "do_target_mae"].mean(), rtol=1e-12)
    moves = __import__("pandas").read_csv(out / "intervention_moves.csv", index_col=[0, 1])
    assert moves.shape == (12, 4) and np.isfinite(moves.to_numpy()).all()
    assert table.loc["simulator", "shd"] == 0 and table.loc["beta_vae", "shd"] == 4
    assert np.all(np.isfinite(table[["do_target_mae", "cf_target_rmse", "cf_effect_rmse"]].to_numpy(float)))
    from ppzoo.results import read_results

    results = read_results(out)["values"]  # the headline numbers the README is rendered from
    assert results["causal_vae_do_target_mae"] == table.loc["causal_vae", "do_target_mae"]
    assert results["seeds"] == 2 and "simulator_do_target_mae_sd" not in results
    np.testing.assert_allclose(results["beta_vae_do_target_mae_sd"],
                               per_seed.loc["beta_vae", "do_target_mae"].std(ddof=1), rtol=1e-12)
    assert results["causal_vae_seed1_cf_effect_direction"] == per_seed.loc[("causal_vae", 1), "cf_effect_direction"]
    assert results["moves_simulator_do_light_angle_shadow_position"] == moves.loc[("simulator", "do(light_angle)"),
                                                                                   "shadow_position"]
    # The study's claims lead the strip; orderings against the beta-VAE are not judged on two seeds.
    verdicts = __import__("pandas").read_csv(out / "verdicts.csv", keep_default_na=False)
    claims = verdicts[verdicts["kind"] == "claim"].reset_index(drop=True)
    assert verdicts["kind"].iloc[0] == "claim"
    assert len(claims) == 5
    names = list(claims["name"])
    assert names[0].startswith("causal_vae: do() sets its target (do-target MAE")
    assert names[1].startswith("causal_vae: do() leaves the causes still")
    assert names[2].startswith("causal_vae largest cause movement under do() (sd)") and claims["verdict"][2] == "n/a"
    assert names[3].startswith("causal_vae counterfactual effect direction right") and claims["verdict"][3] == "n/a"
    assert names[4].startswith("causal_vae learns the true graph (SHD ")
    assert claims["detail"][2] == "2 seeds: an ordering needs at least 3 (run --seeds 3)."
    assert "over 2 seeds" in names[0] and "(seed 1)" in claims["detail"][0]
    # The effect-law error is shown beside how far the effects move, not in the 'lower is better' table.
    assert "Effect law under do(), beside how far the effects move" in page and "do_effect_move" in page
    assert {"do_effect_move", "do_cause_move_max", "do_effect_law_mae"} <= set(table.columns)
    # The default hold-out: the models were trained without the regions and scored on do() into them.
    assert pendulum.HOLDOUT_SECTION in page
    held = pd.read_csv(out / "holdout.csv")
    assert list(held.columns) == ["model", "region", "metric", "value"]
    assert set(held["region"]) == {"shadow_free", "angle_block", "extrapolation"}
    assert set(held["model"]) == {"simulator", "causal_vae", "beta_vae"}
    assert set(held["metric"]) <= {f"{m}{s}" for m in ("do_target_mae", "non_descendant_shift", "effect_error")
                                   for s in ("", "_in_support")}
    assert np.isfinite(held["value"]).all()
    # Not applicable: nothing is left to stay still when both angles are set; the shadow length has no descendants.
    assert held.query("region == 'angle_block' and metric == 'non_descendant_shift'").empty
    assert held.query("region == 'shadow_free' and metric == 'effect_error'").empty
    assert results["holdout_simulator_shadow_free_do_target_mae"] == float(
        held.query("model == 'simulator' and region == 'shadow_free' and metric == 'do_target_mae'")["value"].iloc[0])


def test_pendulum_claims_are_not_won_by_a_do_nothing_model():
    """A model whose do() changes nothing keeps the causes still and the effect law trivially: its target claim
    fails, and with it the causes-still claim; the effect-law table marks its law error."""
    import pandas as pd

    from ppzoo.case_studies import pendulum

    graph = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    columns = ["do_target_mae", "do_cause_move_max", "do_effect_move", "do_effect_law_mae", "cf_effect_direction", "shd"]
    table = pd.DataFrame({
        "simulator": [0.10, 0.03, 0.80, 0.32, 0.94, 0],
        "causal_vae": [0.15, 0.06, 0.50, 0.30, 0.80, 2],
        "scm_vae": [0.90, 0.00, 0.00, 0.05, 0.00, 0],  # do() does nothing
        "beta_vae": [0.50, 0.89, 0.10, 0.27, 0.75, 4],
    }, index=columns).T
    claims = {c.name.split(" (")[0]: c for c in pendulum.study_claims(table, graph)}
    assert claims["causal_vae: do() sets its target"].passed is True
    assert claims["causal_vae: do() leaves the causes still"].passed is True
    assert claims["scm_vae: do() sets its target"].passed is False
    still = claims["scm_vae: do() leaves the causes still"]
    assert still.passed is False and "moves nothing" in still.detail
    assert claims["causal_vae learns the true graph"].passed is False
    orderings = [c for n, c in claims.items() if "largest cause movement" in n or "effect direction" in n]
    assert len(orderings) == 4 and all(c.passed is None for c in orderings)  # one seed
    law = pendulum.effect_law_table(table)
    assert list(law.index[law["effect move / simulator's"] < pendulum.EFFECT_MOVE_SHARE]) == ["scm_vae", "beta_vae"]


def test_pendulum_claims_over_three_seeds():
    """With three training seeds the orderings against the beta-VAE are judged, on the mean and on every seed; the
    other claims must hold on every seed (one seed's miss fails them)."""
    import pandas as pd

    from ppzoo.case_studies import pendulum

    graph = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    columns = ["do_target_mae", "do_cause_move_max", "cf_effect_direction", "shd"]
    rows = {
        ("simulator", 0): [0.10, 0.03, 0.94, 0],
        ("causal_vae", 0): [0.15, 0.06, 0.80, 0],
        ("causal_vae", 1): [0.16, 0.05, 0.82, 0],
        ("causal_vae", 2): [0.25, 0.07, 0.70, 2],  # misses its target (> 2 x 0.10), the graph, and the direction
        ("beta_vae", 0): [0.50, 0.89, 0.75, 4],
        ("beta_vae", 1): [0.45, 0.70, 0.74, 4],
        ("beta_vae", 2): [0.55, 0.95, 0.76, 4],
    }
    table = pd.DataFrame(rows, index=columns).T
    table.index.names = ["model", "seed"]
    claims = {c.name.split(" (")[0]: c for c in pendulum.study_claims(table, graph)}
    target = claims["causal_vae: do() sets its target"]
    assert target.passed is False and "at most 0.250 over 3 seeds" in target.name and "0.250 (seed 2)" in target.detail
    assert claims["causal_vae: do() leaves the causes still"].passed is False  # its do() misses the target on seed 2
    by_name = {c.name: c for c in claims.values()}
    causes = by_name["causal_vae largest cause movement under do() (sd) 0.060 < beta_vae 0.847 (mean over 3 seeds; "
                     "and on every seed)"]
    assert causes.passed is True and "on the mean and on every seed" in causes.detail
    direction = by_name["causal_vae counterfactual effect direction right (share) 0.773 > beta_vae 0.750 (mean over "
                        "3 seeds; and on every seed)"]
    assert direction.passed is False and "beta_vae on seed 2 (of 3)" in direction.detail
    shd = claims["causal_vae learns the true graph"]
    assert shd.passed is False and "SHD 0 / 0 / 2" in shd.name


def test_factor_reader_scores_the_simulator_near_zero():
    """The case study's reader, scored on the simulator's own do(): the floor every model is judged against.

    Half of its training images have the factors drawn independently; a reader trained on observational images
    only reads effects partly off the causes' pixels, so it misreads an intervened effect (target error 0.27-0.31
    sd on seeds 0-2, against 0.09-0.11 for the mixed reader) and makes any image look as if it followed the law.
    Thresholds: about 1.5x the largest of three seeds for the mixed reader, 0.75x the smallest for the other.
    """
    from ppzoo.case_studies import pendulum as case
    from ppzoo.data.scaling import Standardiser
    from ppzoo.metrics.readout import FactorReader

    rng = np.random.default_rng(0)
    ds = ppzoo.data.load("pendulum", image_size=32, split="train")
    pick = rng.choice(len(ds.data["x"]), 1000, replace=False)
    x, factors = ds.data["x"][pick], ds.truth["factors"][pick]
    scaler = Standardiser(factors)
    u = scaler.to_std(factors)
    shuffled = np.stack([rng.permutation(factors[:, j]) for j in range(4)], axis=1)
    values = np.quantile(u, case.QUANTILES, axis=0)
    simulator = case.SimulatorModel(ds, factors, ds.truth["effect_noise"][pick], scaler, ds.factor_names)
    readers = {
        "mixed": FactorReader(np.concatenate([x, ds.observations_from_factors(shuffled)]),
                              np.concatenate([u, scaler.to_std(shuffled)])),
        "observational": FactorReader(x, u),
    }
    scores = {name: case.intervention_scores(simulator, reader, scaler, ds.factor_names, ds.graph, values,
                                             np.random.default_rng(1), 64) for name, reader in readers.items()}
    assert scores["mixed"]["do_target_mae"] < 0.15
    assert scores["mixed"]["do_nondescendant_shift"] < 0.1
    assert scores["observational"]["do_target_mae"] > 0.2
    moves = scores["mixed"]["moves"]  # do(light_angle) moves the shadows, not the pendulum
    names = list(ds.factor_names)
    assert moves[names.index("light_angle"), names.index("pendulum_angle")] < 0.1
    assert moves[names.index("light_angle"), names.index("shadow_position")] > 0.3


GROUPS = (("pendulum_angle",), ("light_angle",), ("shadow_length", "shadow_position"))


@pytest.mark.parametrize("structure", ["per_concept", GROUPS, "joint"])
def test_per_concept_decoder_adds_one_network_per_concept(structure):
    """Per concept (or group), changing one concept's latents shifts the logits alike whatever the other groups are."""
    from numpyro import handlers

    from ppzoo.models.causal_vae import decoder_network

    config = ppzoo.models.get("causal_vae", concept_dim=2, mlp_hidden=(16,), decoder=structure).config
    with handlers.trace() as trace, handlers.seed(rng_seed=0):
        decode = decoder_network(config, (8, 8))
        z = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
        z_other = z.copy()
        z_other[:, 2:] += 1.5  # every concept but the first changes
        moved, moved_other = z.copy(), z_other.copy()
        moved[:, :2] += 1.0
        moved_other[:, :2] += 1.0
        shift = np.asarray(decode(moved) - decode(z))
        shift_other = np.asarray(decode(moved_other) - decode(z_other))
    params = sorted(name for name, site in trace.items() if site["type"] == "param")
    if structure == "per_concept":
        assert params == sorted(f"decoder_{c}$params" for c in config.concepts)
        np.testing.assert_allclose(shift, shift_other, atol=1e-5)
    elif structure == GROUPS:
        assert params == sorted(f"decoder_{g[0]}$params" for g in GROUPS)
        np.testing.assert_allclose(shift, shift_other, atol=1e-5)
    else:
        assert params == ["decoder$params"]
        assert np.abs(shift - shift_other).max() > 1e-3
