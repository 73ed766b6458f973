"""Smoke tests of ``ppzoo run shapes`` and ``ppzoo run digits`` with tiny settings (the full runs' numbers
are in the README and the issue notes). Each writes a complete report; the checks are on its content."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ppzoo.case_studies import digits, shapes
from ppzoo.results import read_results


def test_shapes_case_study_writes_the_comparison(tmp_path):
    out = shapes.main([
        "--out", str(tmp_path / "shapes"), "--num-data", "200", "--steps", "40", "--batch-size", "32",
        "--metric-points", "60", "--posterior-images", "2", "--num-warmup", "20", "--num-samples", "20",
        "--models", "vae,factor_vae",
    ])
    table = pd.read_csv(out / "comparison.csv", index_col="model")
    assert list(table.index) == ["vae", "factor_vae"]
    assert set(shapes.METRIC_COLUMNS) <= set(table.columns)
    assert table[list(shapes.METRIC_COLUMNS)].notna().all().all()
    page = (out / "index.html").read_text()
    for heading in ("Comparison of the six models", "Amortization gap", "Model: factor_vae", "Closed loop",
                    "Posterior collapse: active latent dimensions"):
        assert heading in page
    # Every model's encoder is checked for collapse, and every NUTS fit for convergence, in the verdict strip.
    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    assert set(verdicts.loc[verdicts["name"] == "posterior collapse", "engine"]) == {"vae", "factor_vae"}
    assert len(verdicts[verdicts["name"] == "convergence"]) == 2
    results = read_results(out)["values"]  # the headline numbers the README is rendered from
    assert results["factor_vae_mig"] == table.loc["factor_vae", "mig"] and "vae_collapsed" in results
    # The study's claims lead the strip: the ordering against the VAE is not judged on one seed.
    claims = verdicts[verdicts["kind"] == "claim"]
    assert verdicts["kind"].iloc[0] == "claim" and len(claims) == 2
    ordering, collapse = claims.iloc[0], claims.iloc[1]
    assert ordering["name"].startswith("factor_vae beats the plain VAE on the FactorVAE score (")
    assert ordering["verdict"] == "n/a" and ordering["detail"].startswith("one seed: an ordering needs at least 3")
    assert collapse["name"].startswith("no model collapsed") and collapse["verdict"] in ("PASS", "FAIL")
    assert "#sec-comparison-of-the-six-models" in page


def test_digits_case_study_says_which_metrics_apply(tmp_path):
    out = digits.main([
        "--out", str(tmp_path / "digits"), "--steps", "40", "--held-out", "50", "--posterior-images", "2",
        "--num-warmup", "20", "--num-samples", "20", "--models", "beta_vae",
    ])
    page = (out / "index.html").read_text()
    assert "cannot: needs the true generative factors" in page
    assert "gaussian_total_correlation" in page
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
