"""Smoke tests of ``ppzoo run shapes`` and ``ppzoo run digits`` with tiny settings (the full runs' numbers
are in the README and the issue notes). Each writes a complete report; the checks are on its content."""

from __future__ import annotations

import pandas as pd

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
