"""Smoke tests of ``ppzoo run shapes`` and ``ppzoo run digits`` with tiny settings (the default runs' numbers
are in results/shapes.json and results/digits.json), and tests of what the two studies share: seeds trained
together are independent runs, a cache resumes a run, the ordering claims need three seeds."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest

import ppzoo
from ppzoo.case_studies import digits, shapes
from ppzoo.case_studies import _vae_common
from ppzoo.case_studies._vae_common import Checkpoint, ModelCache, train_family, train_seeds
from ppzoo.results import read_results

TINY = {"network": "mlp", "batch_size": 16, "latent_dim": 2, "mlp_hidden": (16,)}


@pytest.fixture(scope="module")
def tiny_shapes():
    return ppzoo.data.load("shapes", image_size=32, num_data=100, seed=0).data["x"]


def test_seeds_trained_together_are_the_runs_of_each_seed_alone(tiny_shapes):
    # The vmapped program changes how the work is batched, not what each seed computes: seed 1 trained beside
    # seed 0 equals seed 1 trained alone up to float32 rounding (~1e-8 here; 1e-5 leaves room for other BLAS
    # orderings), and differs from seed 0.
    both = train_seeds(tiny_shapes, "vae", seeds=[0, 1], config=TINY, steps=30, learning_rate=1e-3)
    alone = train_seeds(tiny_shapes, "vae", seeds=[1], config=TINY, steps=30, learning_rate=1e-3)
    assert [t.seed for t in both] == [0, 1] and both[1].model.config.init_seed == 1
    gaps = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), both[1].params, alone[0].params))
    assert max(gaps) < 1e-5
    np.testing.assert_allclose(both[1].losses, alone[0].losses, rtol=1e-5)
    assert not np.allclose(both[0].losses, both[1].losses, rtol=1e-3)
    assert both[0].warnings == [] and len(both[0].losses) == 30


def test_a_seed_that_goes_nan_stops_alone_with_a_warning(tiny_shapes):
    # Adam at 1e6 blows the weights up at the first step: each seed keeps its last finite parameters and says so.
    out = train_seeds(tiny_shapes, "vae", seeds=[0, 1], config=TINY, steps=20, learning_rate=1e6)
    for t in out:
        assert len(t.warnings) == 1 and t.warnings[0].startswith("SVI stopped at step")
        assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(t.params))


def test_the_cache_resumes_a_run_and_refuses_other_settings(tiny_shapes, tmp_path, capsys):
    cache = ModelCache(tmp_path / "cache")
    settings = dict(names=["vae"], common=TINY, specific={}, steps=20, learning_rate=1e-3, tag="t", cache=cache,
                    data_settings={"num_data": 100})
    first = train_family(tiny_shapes, seeds=[0], **settings)["vae"][0]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["vae-seed0.pkl"]  # no temporary left
    # Seed 0 is loaded, seed 1 trained and added.
    again = train_family(tiny_shapes, seeds=[0, 1], **settings)["vae"]
    assert again[0].cached and not again[1].cached
    np.testing.assert_array_equal(again[0].losses, first.losses)
    np.testing.assert_array_equal(again[0].mean, first.mean)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["vae-seed0.pkl", "vae-seed1.pkl"]
    # Other settings: trained again, and said so.
    other = train_family(tiny_shapes, seeds=[0], **{**settings, "steps": 10})["vae"][0]
    assert not other.cached and len(other.losses) == 10
    assert "made with other settings; training again" in capsys.readouterr().out


def test_a_run_stopped_mid_model_resumes_from_its_checkpoint_and_ends_where_an_uninterrupted_one_ends(
        tiny_shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(_vae_common, "_chunk_size", lambda steps: 10)  # three chunks of the 30 steps
    settings = dict(names=["vae"], common=TINY, specific={}, steps=30, learning_rate=1e-3, tag="t",
                    data_settings={"num_data": 100})
    whole = train_family(tiny_shapes, seeds=[0, 1], **settings)["vae"]
    cache = ModelCache(tmp_path / "cache", checkpoint_every_s=0.0)  # a checkpoint after every chunk
    save = Checkpoint.save

    def save_then_stop(self, entry):
        save(self, entry)
        raise KeyboardInterrupt  # the run is stopped right after its first checkpoint (step 10)

    monkeypatch.setattr(Checkpoint, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_family(tiny_shapes, seeds=[0, 1], cache=cache, **settings)
    assert sorted(p.name for p in cache.folder.iterdir()) == ["vae-seeds0_1.partial.pkl"]
    monkeypatch.setattr(Checkpoint, "save", save)
    resumed = train_family(tiny_shapes, seeds=[0, 1], cache=cache, **settings)["vae"]
    assert "vae: resumed from vae-seeds0_1.partial.pkl at step 10 of 30" in capsys.readouterr().out
    # The same compiled chunks on the same saved state and keys: equal to the uninterrupted run, bit for bit.
    for a, b in zip(whole, resumed):
        np.testing.assert_array_equal(a.losses, b.losses)
        jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    assert sorted(p.name for p in cache.folder.iterdir()) == ["vae-seed0.pkl", "vae-seed1.pkl"]  # checkpoint gone
    # A checkpoint made with other settings is not used.
    cache.checkpoint("vae", [0], [{"other": 1}]).save({"next_step": 10, "seconds": 0.0, "leaves": [], "losses": None})
    assert cache.checkpoint("vae", [0], [{"mine": 1}]).load() is None
    assert "a checkpoint made with other settings; starting from step 0" in capsys.readouterr().out


def _per_seed(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = {(name, seed): {"factor_vae_score": v, "mig": v / 10} for name, vs in values.items()
            for seed, v in enumerate(vs)}
    frame = pd.DataFrame(rows).T
    frame.index.names = ["model", "seed"]
    return frame


def test_the_ordering_claim_needs_three_seeds_and_every_seed():
    wins = shapes.model_claims(_per_seed({"vae": [0.3, 0.4, 0.5], "beta_vae": [0.6, 0.7, 0.8]}), [0, 1, 2])
    assert [c.passed for c in wins] == [True] and wins[0].name.startswith("beta_vae beats the plain VAE")
    # Better on the mean, worse on seed 2: FAIL, naming the seed.
    mixed = shapes.model_claims(_per_seed({"vae": [0.3, 0.4, 0.9], "beta_vae": [0.6, 0.7, 0.8]}), [0, 1, 2])[0]
    assert mixed.passed is False and "on seed 2 (of 3)" in mixed.detail
    one = shapes.model_claims(_per_seed({"vae": [0.3], "beta_vae": [0.6]}), [0])[0]
    assert one.passed is None and one.detail.startswith("one seed: an ordering needs at least 3")


def test_rendered_once_gives_the_oracle_images_and_renders_each_batch_once():
    ds = ppzoo.data.load("shapes", image_size=32, num_data=10, seed=0)
    calls = []

    class Counting:
        factor_sizes = ds.factor_sizes
        sample_factors = ds.sample_factors

        def observations_from_factors(self, indices):
            calls.append(len(indices))
            return ds.observations_from_factors(indices)

    oracle = shapes.RenderedOnce(Counting())
    indices = ds.sample_factors(np.random.default_rng(0), 50)
    first, second = oracle.observations_from_factors(indices), oracle.observations_from_factors(indices.copy())
    np.testing.assert_array_equal(first, ds.observations_from_factors(indices))
    np.testing.assert_array_equal(second, first)
    assert calls == [50] and first.dtype == np.float32


def test_shapes_case_study_writes_the_comparison(tmp_path):
    out = shapes.main([
        "--out", str(tmp_path / "shapes"), "--num-data", "200", "--steps", "40", "--batch-size", "32",
        "--metric-points", "60", "--metric-rows", "150", "--posterior-images", "2", "--num-warmup", "20",
        "--num-samples", "20", "--models", "vae,factor_vae", "--seeds", "0",
    ])
    table = pd.read_csv(out / "comparison.csv", index_col=["model", "seed"])
    assert list(table.index) == [("vae", 0), ("factor_vae", 0)]
    assert set(shapes.METRIC_COLUMNS) <= set(table.columns)
    assert table[list(shapes.METRIC_COLUMNS)].notna().all().all()
    page = (out / "index.html").read_text()
    for heading in ("Comparison of the six models", "Amortization gap", "Model: factor_vae", "Closed loop",
                    "Posterior collapse: active latent dimensions", "Every model and seed"):
        assert heading in page
    # Every model's encoder is checked for collapse, and every NUTS fit for convergence, in the verdict strip.
    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    assert set(verdicts.loc[verdicts["name"] == "posterior collapse", "engine"]) == {"vae seed 0", "factor_vae seed 0"}
    assert len(verdicts[verdicts["name"] == "convergence"]) == 2
    results = read_results(out)["values"]  # the headline numbers the README is rendered from
    assert results["factor_vae_seed_0_mig"] == table.loc[("factor_vae", 0), "mig"] == results["factor_vae_mig_mean"]
    assert results["vae_collapsed_seeds"] in (0, 1) and results["factor_vae_beats_vae"] == "n/a"
    # The encoders' per-image PSIS, as on the page, for the README's shapes block.
    assert 0 <= results["factor_vae_encoder_share_k_above_0_7"] <= 1
    assert np.isfinite(results["vae_encoder_pareto_k_median"])
    # The study's claims lead the strip: the ordering against the VAE is not judged on one seed.
    claims = verdicts[verdicts["kind"] == "claim"]
    assert verdicts["kind"].iloc[0] == "claim" and len(claims) == 2
    ordering, collapse = claims.iloc[0], claims.iloc[1]
    assert ordering["name"].startswith("factor_vae beats the plain VAE on the FactorVAE score (")
    assert ordering["verdict"] == "n/a" and ordering["detail"].startswith("one seed: an ordering needs at least 3")
    assert collapse["name"].startswith("no model collapsed") and collapse["verdict"] in ("PASS", "FAIL")
    assert "#sec-comparison-of-the-six-models" in page


def test_shapes_arguments_are_checked():
    with pytest.raises(SystemExit):
        shapes.parse_args(["--seeds", "0,0"])
    with pytest.raises(SystemExit):
        shapes.parse_args(["--seeds", "a"])
    args = shapes.parse_args(["--full"])
    assert (args.steps, args.network, args.image_size, args.seeds, args.out) == (
        300_000, "mlp", 32, [0, 1, 2], "reports/shapes_full")


def test_digits_case_study_says_which_metrics_apply(tmp_path):
    out = digits.main([
        "--out", str(tmp_path / "digits"), "--steps", "40", "--held-out", "50", "--posterior-images", "2",
        "--num-warmup", "20", "--num-samples", "20", "--models", "beta_vae",
    ])
    page = (out / "index.html").read_text()
    assert "cannot: needs the true generative factors" in page
    assert "gaussian_total_correlation" in page
    assert "share of images with k-hat &gt; 0.7" in page  # the encoder's per-image PSIS beside the gap
    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    assert verdicts.loc[verdicts["name"] == "posterior collapse", "engine"].tolist() == ["beta_vae"]
    assert isinstance(read_results(out)["values"]["beta_vae_collapsed"], bool)
    claims = verdicts[verdicts["kind"] == "claim"].reset_index(drop=True)
    assert [n.split(":")[0] for n in claims["name"]] == ["no model collapsed",
                                                         "every model reconstructs held-out digits better than the "
                                                         "mean digit does (error at least 10% lower)"]
    assert claims["verdict"].isin(["PASS", "FAIL"]).all()
    # A collapsed encoder cannot pass the reconstruction claim, so the two verdicts cannot both flatter it.
    if read_results(out)["values"]["beta_vae_collapsed"]:
        assert claims["verdict"].tolist() == ["FAIL", "FAIL"]


def test_reconstruction_claim_is_lost_by_the_mean_digit():
    rng = np.random.default_rng(0)
    images = (rng.random((50, 8, 8)) < 0.3).astype(np.float32)
    baseline = digits.reconstruction_nats(images, images.mean(0))
    # The mean image itself (a collapsed encoder's reconstruction) scores the baseline: FAIL.
    collapsed = digits.reconstruction_nats(images, np.broadcast_to(images.mean(0), images.shape))
    assert collapsed == pytest.approx(baseline)
    good = digits.reconstruction_nats(images, np.where(images > 0, 0.9, 0.1))
    assert good == pytest.approx(-np.log(0.9), rel=1e-6)
    claim = digits.reconstruction_claim({"vae": good, "beta_vae": collapsed}, baseline)
    assert claim.passed is False and "beta_vae" in claim.detail and "+0%" in claim.detail
    assert digits.reconstruction_claim({"vae": good}, baseline).passed is True
