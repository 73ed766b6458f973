"""Reference posteriors (posteriordb ports): loading, name assembly, the comparison, and NUTS against Stan."""

from __future__ import annotations

import arviz_stats
import jax
import numpy as np
import pandas as pd
import pytest
from numpyro import handlers
from numpyro.infer import init_to_uniform

import ppzoo
from ppzoo.data import validation_dir
from ppzoo.reference import (
    GaussianHMM,
    ReferencePosterior,
    assemble_draws,
    compare_to_reference,
    load_reference,
    reference_names,
    reference_table,
    stan_names,
)

EIGHT = "eight_schools-eight_schools_noncentered"


def _synthetic_reference(rng: np.random.Generator) -> ReferencePosterior:
    """A reference of 10 x 1000 independent N(0, 1) draws for a vector site and a scalar site."""
    draws = {"theta": rng.normal(size=(10, 1000, 3)), "mu": rng.normal(size=(10, 1000))}
    return ReferencePosterior(
        name="synthetic", model=lambda: None, data={}, draws=draws, summary=pd.DataFrame(), meta={}
    )


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(0)
    ref = _synthetic_reference(rng)
    same = {"theta": rng.normal(size=(4, 1000, 3)), "mu": rng.normal(size=(4, 1000))}
    return ref, same


# ----------------------------------------------------------------------------------------------------------
# compare_to_reference on synthetic draws
# ----------------------------------------------------------------------------------------------------------


def test_identical_distribution_passes(synthetic):
    ref, same = synthetic
    table = compare_to_reference(same, ref)
    assert list(table.index) == ["theta[1]", "theta[2]", "theta[3]", "mu"]
    # Under the null each |z| exceeds 4 with probability 6e-5 and W1 exceeds its bound with < 1e-3
    # (docstring), so the 4 scalars pass together with probability > 0.99.
    assert table["passed"].all(), table
    # 4000 independent draws against 10000: the sd ratio is within 4 * sqrt(1/8000 + 1/20000) = 5%.
    assert np.all(np.abs(table["sd_ratio"] - 1) < 0.05)
    # The MCSEs are arviz_stats' (ESS-based) for both sides.
    ref_mcse = arviz_stats.mcse(ref.draws["mu"], method="mean", chain_axis=0, draw_axis=1)
    np.testing.assert_allclose(table.loc["mu", "ref_mcse"], ref_mcse, rtol=1e-12)


def test_shift_by_one_sd_fails_on_the_mean(synthetic):
    ref, same = synthetic
    shifted = {k: v + 1.0 for k, v in same.items()}
    table = compare_to_reference(shifted, ref)
    assert not table["passed"].any()
    # A 1 sd shift is ~50 standard errors of the mean difference; W1 equals the shift (1 sd).
    assert (table["z_mean"] > 20).all()
    assert (np.abs(table["w1"] - 1.0) < 0.05).all()


def test_fifty_percent_wider_fails_on_the_sd(synthetic):
    ref, same = synthetic
    wider = {k: 1.5 * v for k, v in same.items()}
    table = compare_to_reference(wider, ref)
    assert not table["passed"].any()
    assert (np.abs(table["sd_ratio"] - 1.5) < 0.1).all()
    assert (table["z_sd"] > 20).all()


def test_single_chain_is_treated_as_independent_draws(synthetic):
    ref, same = synthetic
    one_chain = {k: v.reshape((1, -1) + v.shape[2:]) for k, v in same.items()}
    table = compare_to_reference(one_chain, ref)
    flat = one_chain["mu"].ravel()
    np.testing.assert_allclose(table.loc["mu", "mcse"], flat.std(ddof=1) / np.sqrt(flat.size), rtol=1e-12)
    assert table.loc["mu", "ess"] == flat.size
    assert table["passed"].all()


def test_accepts_an_object_with_samples(synthetic):
    ref, same = synthetic

    class FakeFit:
        samples = same

    pd.testing.assert_frame_equal(compare_to_reference(FakeFit(), ref), compare_to_reference(same, ref))


def test_compare_errors(synthetic):
    ref, same = synthetic
    with pytest.raises(ValueError, match="has no site 'mu'"):
        compare_to_reference({"theta": same["theta"]}, ref)
    with pytest.raises(ValueError, match=r"Site 'theta' of the fit has shape \(4, 1000, 2\)"):
        compare_to_reference({**same, "theta": same["theta"][..., :2]}, ref)
    with pytest.raises(TypeError, match="fit_or_samples must be"):
        compare_to_reference([1, 2, 3], ref)
    with pytest.raises(TypeError, match="reference must be a ReferencePosterior"):
        compare_to_reference(same, {"theta": 1})
    with pytest.raises(ValueError, match="z_tol must be a positive number"):
        compare_to_reference(same, ref, z_tol=0)
    with pytest.raises(ValueError, match="at least 4 draws"):
        compare_to_reference({k: v[:1, :2] for k, v in same.items()}, ref)


def test_log_scale_sites_are_compared_on_logged_draws():
    rng = np.random.default_rng(1)
    ref = ReferencePosterior(
        name="lognormal", model=lambda: None, data={}, draws={"k": np.exp(rng.normal(size=(10, 1000)))},
        summary=pd.DataFrame(), meta={}, log_scale=("k",),
    )
    same = {"k": np.exp(rng.normal(size=(4, 1000)))}
    table = compare_to_reference(same, ref)
    assert table.loc["k", "scale"] == "log"
    np.testing.assert_allclose(table.loc["k", "ref_mean"], np.log(ref.draws["k"]).mean(), rtol=1e-12)
    assert table["passed"].all()  # same distribution: passes with probability > 0.999 (see above)
    assert compare_to_reference(same, ref, log_scale=()).loc["k", "scale"] == "identity"
    with pytest.raises(ValueError, match="not sites of the reference"):
        compare_to_reference(same, ref, log_scale=("theta",))
    with pytest.raises(ValueError, match="draws <= 0 for a log_scale site"):
        compare_to_reference({"k": -same["k"]}, ref)


def test_reference_table_condenses_per_case_and_engine(synthetic):
    ref, same = synthetic
    good = compare_to_reference(same, ref)
    bad = compare_to_reference({**same, "mu": same["mu"] + 1.0}, ref)
    table = reference_table({"good": good, "bad": {"synthetic": bad}})
    assert list(table.index) == [("synthetic", "good"), ("synthetic", "bad")]
    assert table.loc[("synthetic", "good"), "passed"]
    row = table.loc[("synthetic", "bad")]
    assert not row["passed"] and row["n_failed"] == 1 and row["failed"] == "mu"
    assert row["max_abs_z_mean"] == pytest.approx(np.abs(bad["z_mean"]).max())
    with pytest.raises(TypeError, match=r"results\['x'\] must be"):
        reference_table({"x": 3})


# ----------------------------------------------------------------------------------------------------------
# Names and loading
# ----------------------------------------------------------------------------------------------------------


def test_assemble_draws_maps_stan_names_to_zero_based_axes():
    columns = {
        "mu": np.zeros((2, 3)),
        "theta[1]": np.full((2, 3), 1.0),
        "theta[2]": np.full((2, 3), 2.0),
        "z[1,1]": np.full((2, 3), 11.0),
        "z[1,2]": np.full((2, 3), 12.0),
        "z[2,1]": np.full((2, 3), 21.0),
        "z[2,2]": np.full((2, 3), 22.0),
    }
    draws = assemble_draws(columns)
    assert draws["theta"].shape == (2, 3, 2) and draws["z"].shape == (2, 3, 2, 2)
    assert (draws["theta"][..., 0] == 1.0).all() and (draws["z"][..., 1, 0] == 21.0).all()
    assert stan_names("z", (2, 2)) == ["z[1,1]", "z[1,2]", "z[2,1]", "z[2,2]"]
    with pytest.raises(ValueError, match="every element of the site must be present"):
        assemble_draws({"theta[1]": np.zeros((1, 2)), "theta[3]": np.zeros((1, 2))})
    with pytest.raises(ValueError, match="both with and without indices"):
        assemble_draws({"theta": np.zeros((1, 2)), "theta[1]": np.zeros((1, 2))})
    with pytest.raises(ValueError, match="Cannot parse the Stan parameter name"):
        assemble_draws({"theta[a]": np.zeros((1, 2))})
    with pytest.raises(ValueError, match="index below 1"):
        assemble_draws({"theta[0]": np.zeros((1, 2))})


def test_load_reference_assembles_the_stan_draws():
    ref = load_reference(EIGHT)
    with np.load(validation_dir() / "posteriordb" / EIGHT / "reference_draws.npz") as packed:
        draws, names = packed["draws"], list(packed["parameter_names"])
    assert ref.draws["theta"].shape == (10, 1000, 8) and ref.draws["theta"].dtype == np.float64
    np.testing.assert_array_equal(ref.draws["theta"][3, :, 0], draws[3, :, names.index("theta[1]")])
    np.testing.assert_array_equal(ref.draws["theta"][9, :, 7], draws[9, :, names.index("theta[8]")])
    np.testing.assert_array_equal(ref.draws["tau"][0], draws[0, :, names.index("tau")])
    # Values of posteriordb's reference_draws.json (chain 3 draw 0, chain 9 draw 999, chain 0 draw 5), kept to
    # float32's 7 digits by the packing.
    np.testing.assert_allclose(ref.draws["theta"][3, 0, 0], 4.44915522912766, rtol=1e-7)
    np.testing.assert_allclose(ref.draws["theta"][9, 999, 7], 8.52019349919917, rtol=1e-7)
    np.testing.assert_allclose(ref.draws["tau"][0, 5], 3.47870837316026, rtol=1e-7)
    # reference_summary.csv was computed from the same pooled draws in float64; float32 storage moves the mean
    # by far less than 1e-6 sd.
    theta1 = ref.draws["theta"][..., 0]
    assert abs(theta1.mean() - ref.summary.loc["theta[1]", "mean"]) < 1e-6 * ref.summary.loc["theta[1]", "sd"]
    assert ref.adapt_delta == 0.95 and not ref.x64 and ref.log_scale == ()
    assert sorted(ref.data) == ["sigma", "y"]
    assert ref.target_accept_prob == ref.adapt_delta
    pk = load_reference("one_comp_mm_elim_abs-one_comp_mm_elim_abs")
    assert pk.log_scale == ("K_m", "V_m") and (pk.adapt_delta, pk.target_accept_prob) == (0.99, 0.995)
    assert load_reference("gp_pois_regr-gp_pois_regr").x64


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown reference posterior 'eight_schools'\. Valid names: arK-arK, "):
        load_reference("eight_schools")


def _site_shapes(ref: ReferencePosterior) -> dict[str, tuple[int, ...]]:
    """Shapes of all sites of one model run, found abstractly (jax.eval_shape: nothing is compiled)."""

    def run(key):
        seeded = handlers.seed(ref.model, key)
        trace = handlers.trace(handlers.substitute(seeded, substitute_fn=init_to_uniform)).get_trace(**ref.data)
        return {name: site["value"] for name, site in trace.items() if site["type"] in ("sample", "deterministic")}

    with jax.enable_x64(ref.x64):
        return {name: value.shape for name, value in jax.eval_shape(run, jax.random.key(0)).items()}


def test_every_port_has_the_reference_sites_with_their_shapes():
    names = reference_names()
    assert len(names) == 15
    for name in names:
        ref = load_reference(name)
        shapes = _site_shapes(ref)
        for site, draws in ref.draws.items():
            assert site in shapes, (name, site)
            assert shapes[site] == draws.shape[2:], (name, site)
        assert set(ref.summary.index) == {n for s, d in ref.draws.items() for n in stan_names(s, d.shape[2:])}


def test_gaussian_hmm_log_prob_equals_the_sum_over_all_state_paths():
    import itertools

    from scipy.stats import norm

    log_trans = np.log(np.array([[0.9, 0.1], [0.3, 0.7]]))
    mu = np.array([3.0, 10.0])
    hmm = GaussianHMM(log_trans, mu, 5)
    assert hmm.sample(jax.random.key(1), (2, 3)).shape == (2, 3, 5)
    y = np.random.default_rng(0).normal(6.0, 4.0, size=5)
    paths = []
    for z in itertools.product(range(2), repeat=5):
        emit = sum(norm.logpdf(y[t], mu[k], 1.0) for t, k in enumerate(z))
        paths.append(np.log(0.5) + sum(log_trans[a, b] for a, b in zip(z[:-1], z[1:])) + emit)
    # Exact identity up to float32 rounding of a sum of ~10 terms of size ~10.
    np.testing.assert_allclose(float(hmm.log_prob(y)), np.logaddexp.reduce(paths), rtol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# NUTS against Stan's reference (slow)
# ----------------------------------------------------------------------------------------------------------

FAST_CASES = ["eight_schools-eight_schools_noncentered", "sblrc-blr", "arK-arK", "arma-arma11"]


def _fit_and_compare(name: str, engine: str) -> pd.DataFrame:
    ref = load_reference(name)
    fit = ppzoo.fit(
        ref.model, ref.data, engine=engine, seed=0, num_warmup=500, num_samples=500, num_chains=2,
        target_accept_prob=ref.target_accept_prob,
    )
    return compare_to_reference(fit, ref)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["nuts", "blackjax"])
@pytest.mark.parametrize("name", FAST_CASES)
def test_nuts_matches_the_stan_reference(name, engine):
    table = _fit_and_compare(name, engine)
    # 2 x 500 draws: the default tolerances already scale with the Monte Carlo error (|z| < 4 with both
    # MCSEs, W1 < 5 sqrt(1/ESS + 1/ESS_ref)); at ESS ~ 500 they flag mean errors above ~0.18 sd, sd errors
    # above ~15% and W1 above ~0.23 sd. Over the 4 cases x 2 engines x 21 scalars the false-alarm
    # probability is about 1%.
    assert table["passed"].all(), table[~table["passed"]].T


@pytest.mark.slow
def test_flat_prior_port_through_ppzoo_fit():
    # Stan's implicit flat prior (ImproperUniform): fit starts it uniformly on the unconstrained scale and
    # leaves the prior groups out of the DataTree. Tolerance as above.
    table = _fit_and_compare("kidiq-kidscore_interaction", "nuts")
    assert table["passed"].all(), table[~table["passed"]].T
    fit = ppzoo.fit(load_reference("kidiq-kidscore_interaction").model, load_reference("kidiq-kidscore_interaction").data,
                    engine="nuts", num_warmup=100, num_samples=100, num_chains=2)
    tree = fit.to_arviz(predictive_draws=50)
    assert "prior" not in tree.children and "posterior_predictive" in tree.children
    assert fit.sites.improper
