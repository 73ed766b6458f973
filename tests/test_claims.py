"""The claim builders of ``ppzoo.claims``: orderings over seeds (PASS, FAIL naming where, n/a with too few
seeds), coverage of a truth by a posterior interval, and claims made of parts."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ppzoo.claims import all_of, interval_claim, ordering_claim
from ppzoo.report import Claim


def test_ordering_passes_only_on_the_mean_and_every_seed():
    scores = {"iVAE": [0.97, 0.95, 0.93], "VAE": [0.72, 0.70, 0.75], "FastICA": [0.70, 0.80, 0.72]}
    claim = ordering_claim(scores, winner="iVAE", metric="held-out MCC", section="MCC")
    assert claim.passed is True and claim.section == "MCC"
    assert claim.name == "iVAE held-out MCC 0.950 > VAE 0.723, FastICA 0.740 (mean over 3 seeds; and on every seed)"
    # Better on the mean, worse on seed 1: FAIL, naming the seed.
    scores["VAE"] = [0.72, 0.96, 0.75]
    claim = ordering_claim(scores, winner="iVAE", metric="MCC")
    assert claim.passed is False and "VAE on seed 1 (of 3)" in claim.detail and "on the mean" not in claim.detail


def test_ordering_of_errors_fails_naming_the_winner_on_the_mean():
    # Lower is better: STLSQ's held-out RMSE is smaller on this one data set.
    claim = ordering_claim({"horseshoe": [0.043], "STLSQ": [0.019]}, winner="horseshoe", metric="held-out RMSE",
                           higher_is_better=False, min_seeds=1)
    assert claim.passed is False
    assert claim.name == "horseshoe held-out RMSE 0.043 < STLSQ 0.019 (one value)"
    assert "loses to STLSQ on the mean (0.019 against 0.043)" in claim.detail


def test_ordering_with_too_few_seeds_is_not_judged():
    claim = ordering_claim({"a": [0.9], "b": [0.1]}, winner="a", metric="score", more_seeds="run --seeds 3")
    assert claim.passed is None
    assert claim.detail == "one seed: an ordering needs at least 3 (run --seeds 3)."
    claim = ordering_claim({"a": [1.0, np.nan, 1.0], "b": [0.0, 0.0, 0.0]}, winner="a", metric="score")
    assert claim.passed is None and "not a number for a" in claim.detail
    # A law whose simulation blew up (RMSE inf) loses; it is not "undecided".
    claim = ordering_claim({"a": [np.inf], "b": [0.1]}, winner="a", metric="RMSE", higher_is_better=False, min_seeds=1)
    assert claim.passed is False


def test_ordering_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"no scores for \['c'\]"):
        ordering_claim({"a": [1.0], "b": [0.0]}, winner="a", others=["c"], metric="m")
    with pytest.raises(ValueError, match="one value per seed"):
        ordering_claim({"a": [1.0, 2.0], "b": [0.0]}, winner="a", metric="m")
    with pytest.raises(ValueError, match="nothing to compare"):
        ordering_claim({"a": [1.0]}, winner="a", metric="m")


def test_interval_claim_fails_when_the_truth_is_outside():
    draws = np.random.default_rng(0).normal(0.05, 0.002, size=(2, 1000))  # SVI: confidently 5x the truth
    claim = interval_claim("svi: noise_scale", draws, 0.01, section="ODE")
    assert claim.passed is False and "outside" in claim.detail and claim.section == "ODE"
    assert re.fullmatch(r"svi: noise_scale 0\.0[45]\d* ± 0\.002\d* covers the truth 0\.01 \(99% interval\)", claim.name)
    # 99% interval of N(0, 1): +-2.58; a truth 2 sds out is inside, 3 sds out is not.
    draws = np.random.default_rng(1).normal(0.0, 1.0, 20000)
    assert interval_claim("x", draws, 2.0).passed is True
    assert interval_claim("x", draws, 3.0).passed is False
    with pytest.raises(ValueError, match="must be in"):
        interval_claim("x", draws, 0.0, prob=99)


def test_all_of_fails_on_any_failed_part():
    good, bad, na = Claim("a", True, "ok", "S"), Claim("b", False, "no"), Claim("c", None, "one seed")
    assert all_of("both", [good, good]).passed is True
    assert all_of("both", [good, na]).passed is None
    combined = all_of("all", [good, na, bad])
    assert combined.passed is False and combined.section == "S"
    assert "FAIL: b: no" in combined.detail and "n/a: c: one seed" in combined.detail
