"""Failures flagged where they happen: the verdict strip at the top of every page (claims, then checks, each
linked to its evidence, the same rows in verdicts.csv), convergence of every MCMC site (per-datum latents
summarised), numbers from unconverged fits marked, and posterior collapse of a VAE's encoder."""

from __future__ import annotations

import dataclasses
import re

import arviz_stats
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest

import ppzoo
from ppzoo.checks import (
    ACTIVE_VARIANCE,
    Check,
    closed_loop_section,
    convergence_check,
    convergence_diagnostics,
    convergence_table,
    mark_unconverged,
    posterior_collapse,
    unconverged_note,
)
from ppzoo.report import Claim, Section, section_anchor


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


# ------------------------------------------------------------------------------------- the diagnostics


def test_convergence_diagnostics_equal_arviz():
    # Vectorised r_hat, bulk and tail ESS against arviz_stats' per-scalar loop on AR(1) chains from
    # anti-correlated to sticky (phi -0.5 .. 0.98), a third of them with chains offset, and an odd draw count.
    rng = np.random.default_rng(0)
    for chains, draws in ((2, 300), (4, 101)):
        phi = np.linspace(-0.5, 0.98, 30)
        x = np.zeros((chains, draws, 30))
        noise = rng.normal(size=x.shape)
        for t in range(1, draws):
            x[:, t] = phi * x[:, t - 1] + noise[:, t]
        x[1, :, :10] += np.linspace(0.0, 3.0, 10)
        r_hat, bulk, tail = convergence_diagnostics(x)
        np.testing.assert_allclose(r_hat, arviz_stats.rhat(x), rtol=1e-10)
        np.testing.assert_allclose(bulk, arviz_stats.ess(x), rtol=1e-10)
        np.testing.assert_allclose(tail, arviz_stats.ess(x, method="tail", prob=(0.05, 0.95)), rtol=1e-10)
    r_hat, bulk, _ = convergence_diagnostics(x[:1])
    assert np.isnan(r_hat).all() and np.isfinite(bulk).all()  # one chain: no between-chain r_hat
    with pytest.raises(ValueError, match="at least 4 draws per chain"):
        convergence_diagnostics(np.zeros((2, 3, 5)))


# ---------------------------------------------------------------------------------- an unconverged fit


def scale_and_sources(x=None, *, num_data: int = 30):
    """A global scale and one latent per observation (ICA in one dimension)."""
    scale = numpyro.sample("scale", dist.LogNormal(0.0, 0.5))
    with numpyro.plate("data", num_data if x is None else len(x)):
        z = numpyro.sample("z", dist.Laplace(0.0, 1.0))
        numpyro.sample("x", dist.Normal(scale * z, 0.3), obs=x)


#: Chain 1 of these scalars is shifted by this many posterior sds (z[7] the most: the worst r_hat).
SHIFTS = {"scale": 1.0, 3: 1.5, 7: 4.0}


@pytest.fixture(scope="module")
def fits():
    x = np.random.default_rng(1).laplace(0.0, 1.0, 30).astype(np.float32)
    real = ppzoo.fit(scale_and_sources, {"x": x}, engine="nuts", seed=0, num_warmup=50, num_samples=50, num_chains=2)
    # Independent N(0, 1) draws in two chains of 1000 stand in for a sampler that mixes: split into four
    # halves of 500, r_hat - 1 ~ (F(3, 1996) - 1) / 1000, so r_hat > 1.01 needs F > 11 (p ~ 3e-7 per scalar).
    # Then chain 1 of three scalars is moved to another "mode", as two chains stuck apart would be.
    rng = np.random.default_rng(0)
    samples = {"scale": np.exp(0.1 * rng.normal(size=(2, 1000))), "z": rng.normal(size=(2, 1000, 30))}
    mixed = dataclasses.replace(real, samples={k: v.copy() for k, v in samples.items()})
    samples["scale"][1] *= np.exp(0.1 * SHIFTS["scale"])
    for i in (3, 7):
        samples["z"][1, :, i] += SHIFTS[i]
    stuck = dataclasses.replace(real, samples=samples)
    svi = ppzoo.fit(scale_and_sources, {"x": x}, engine="svi", seed=0, steps=200, num_draws=100)
    return {"real": real, "mixed": mixed, "stuck": stuck, "svi": svi}


def test_unconverged_fit_fails_naming_the_parameter(fits):
    check = convergence_check(fits["stuck"], "nuts")
    assert check.passed is False
    assert "max r_hat" in check.verdict and "at z[7]" in check.verdict, check.verdict
    assert "3 of 31 scalars above 1.01" in check.verdict, check.verdict
    assert convergence_check(fits["mixed"], "nuts").passed is True
    assert convergence_check(fits["svi"]).passed is None  # SVI draws are not Markov chains


def test_local_latents_are_summarised_with_counts(fits):
    table = convergence_table(fits["stuck"])
    assert list(table.index) == ["scale", "z"]  # z (30 values) is summarised, not listed scalar by scalar
    assert table.loc["z", "role"] == "per-datum latent" and table.loc["scale", "role"] == "global"
    assert table.loc["z", "scalars"] == 30
    assert table.loc["z", "r_hat > 1.01"] == 2 and table.loc["scale", "r_hat > 1.01"] == 1
    assert table.loc["z", "worst r_hat at"] == "z[7]"
    # Chains 4 sds apart: r_hat ~ sqrt(1 + 4^2 / 4) ~ 2.2 (between-chain variance of the split halves).
    assert 1.8 < table.loc["z", "max r_hat"] < 2.6
    # Independent draws have bulk and tail ESS near 2000, far above 400: only shifted scalars can be below it.
    assert table["ESS < 400"].sum() <= 3
    assert convergence_table(fits["mixed"])["r_hat > 1.01"].sum() == 0


def test_numbers_from_unconverged_fits_are_marked(fits):
    marked = mark_unconverged("NUTS abduction", fits["stuck"])
    assert re.fullmatch(r"NUTS abduction \(unconverged: r_hat \d\.\d\d\)", marked), marked
    assert unconverged_note(fits["stuck"], ["scale"]).startswith("unconverged: r_hat 1.")
    assert mark_unconverged("NUTS", fits["mixed"]) == "NUTS"
    assert mark_unconverged("SVI", fits["svi"]) == "SVI"  # not MCMC: nothing to mark


# ------------------------------------------------------------------------------------------ the strip


def _strip(page: str) -> list[dict[str, str]]:
    """The strip's rows in page order: group heading, badge, link target, name, engine."""
    strip = page[page.index("<section id='verdicts'"):page.index("</section>")]
    rows, group = [], None
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", strip):
        heading = re.search(r"<th colspan='4'>(.*?)</th>", row)
        if heading:
            group = heading.group(1)
            continue
        badge = re.search(r"class='badge \w+'>([^<]+)<", row)
        if badge is None:
            continue  # "none stated"
        link = re.search(r"<a href='#([^']+)'>([^<]+)</a>", row)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        rows.append({"group": group, "verdict": badge.group(1), "anchor": link.group(1) if link else "",
                     "name": link.group(2) if link else cells[1], "engine": cells[2]})
    return rows


def test_strip_lists_claims_then_checks_linked_to_sections(fits, tmp_path):
    evidence = Section("Recovery of the scale", text="<p>The scale against the truth.</p>")
    collapse = closed_loop_section([Check("posterior collapse (encoder)", None, "not applicable: no encoder.")],
                                   title="Posterior collapse")
    claims = [
        Claim("scale within 2 sd of the truth", True, "0.98 against 1.0 (sd 0.07)", section="Recovery of the scale"),
        Claim("sources recovered", False, "MCC 0.41 < 0.9", section="Engine: nuts"),
        Claim("faster than SVI", None, "not timed on this page"),
    ]
    out = ppzoo.report({"nuts": fits["stuck"]}, tmp_path / "r", claims=claims, sections=[evidence, collapse])
    page = (out / "index.html").read_text()
    # The strip is the first thing under the title.
    assert page.index("<section id='verdicts'") - page.index("</h1>") == len("</h1>")
    rows = _strip(page)
    assert [r["group"] for r in rows[:3]] == ["The study's claims"] * 3
    assert [r["name"] for r in rows[:3]] == [c.name for c in claims]
    assert [r["verdict"] for r in rows[:3]] == ["PASS", "FAIL", "n/a"]
    checks = rows[3:]
    assert {r["group"] for r in checks} == {"Closed-loop checks"}
    assert [r["name"] for r in checks] == ["prior predictive", "posterior predictive", "LOO", "LOO-PIT",
                                           "convergence", "posterior collapse"]
    assert [r["engine"] for r in checks] == ["nuts"] * 5 + ["encoder"]
    convergence = checks[4]
    assert convergence["verdict"] == "FAIL" and convergence["anchor"] == section_anchor("Engine: nuts")
    # Every link points at a section heading on the page; a claim without a section has none.
    ids = set(re.findall(r'<h2 id="([^"]+)"', page))
    assert all(r["anchor"] in ids for r in rows if r["anchor"])
    assert rows[0]["anchor"] == "sec-recovery-of-the-scale" and rows[2]["anchor"] == ""
    assert checks[-1]["anchor"] == "sec-posterior-collapse"
    # verdicts.csv holds the same rows, in the same order, with the full detail.
    csv = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    assert list(csv.columns) == ["kind", "name", "engine", "verdict", "detail"]
    assert list(csv["kind"]) == ["claim"] * 3 + ["check"] * 6
    assert list(csv["name"]) == [r["name"] for r in rows]
    assert list(csv["verdict"]) == [r["verdict"] for r in rows]
    assert list(csv["engine"]) == [r["engine"] for r in rows]
    assert "at z[7]" in csv.loc[csv["name"] == "convergence", "detail"].item()
    # The engine section shows the per-site table with the local latents summarised.
    assert "convergence of every sampled site" in page and "per-datum latent" in page


def test_claims_are_checked_before_writing(fits, tmp_path):
    with pytest.raises(ValueError, match="links to section 'Results', which is not on the page; use one of"):
        ppzoo.report(fits["mixed"], tmp_path / "a", claims=[Claim("x", True, "y", section="Results")])
    with pytest.raises(TypeError, match=r"`claims\[0\]` is a tuple, not a ppzoo.report.Claim"):
        ppzoo.report(fits["mixed"], tmp_path / "b", claims=[("x", True, "y")])
    with pytest.raises(TypeError, match="Claim.passed must be True, False or None"):
        Claim("x", "yes", "y")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert ppzoo.Claim is Claim


def test_section_anchors_are_stable_and_unique():
    assert section_anchor("Engine: iVAE (NUTS, exact)") == "sec-engine-ivae-nuts-exact"
    from ppzoo.report import _anchors

    assert _anchors([Section("A b"), Section("A b"), Section("c")]) == ["sec-a-b", "sec-a-b-2", "sec-c"]


# ------------------------------------------------------------------------------------ posterior collapse


def test_collapse_check_on_known_encoders():
    rng = np.random.default_rng(0)
    # Perfect: means spread like the prior, sds small. Useless: every datum gets the prior. Partial: one
    # dimension used, one switched off.
    used = posterior_collapse(rng.normal(size=(200, 2)), np.full((200, 2), 0.1), label="used")
    prior = posterior_collapse(np.zeros((200, 2)), np.ones((200, 2)), label="prior")
    partial = posterior_collapse(np.c_[rng.normal(size=200), np.zeros(200)], np.c_[np.full(200, 0.1), np.ones(200)])
    assert used.passed is True and "2 of 2 latent dimensions active" in used.verdict
    assert prior.passed is False and "collapsed: none of 2" in prior.verdict
    table = prior.tables[0][1]
    np.testing.assert_allclose(table["KL to prior (nats)"], 0.0, atol=1e-12)  # q = p exactly
    assert partial.passed is True and "inactive: z1" in partial.verdict
    # KL(N(+-1, 0.1^2) || N(0, 1)) = log(1 / 0.1) + (0.1^2 + 1) / 2 - 1 / 2 = log 10 + 0.005 (closed form).
    exact = posterior_collapse(np.array([[1.0], [-1.0]]), np.full((2, 1), 0.1))
    np.testing.assert_allclose(exact.tables[0][1]["KL to prior (nats)"], np.log(10) + 0.005)
    with pytest.raises(ValueError, match="`encoder_sd` must have the shape"):
        posterior_collapse(np.zeros((5, 2)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="positive and finite"):
        posterior_collapse(np.zeros((5, 2)), np.zeros((5, 2)))


@pytest.fixture(scope="module")
def digits():
    ds = ppzoo.data.load("digits", binarize=True, seed=0)
    return np.asarray(ds.data["x"][:200], dtype=np.float32)


def test_a_huge_beta_collapses_the_encoder_and_the_check_says_so(digits, tmp_path):
    # 200 binarised 8 x 8 digits, MLP VAEs with 4 latents, 500 full-batch Adam steps. With beta = 1000 the KL
    # term outweighs the reconstruction of 64 pixels (at most 64 log 2 = 44 nats per image) a thousandfold, so
    # the encoder returns the prior: activity (variance of the encoder mean over the images) far below the
    # 0.01 threshold. With beta = 1 (the plain VAE) the digits' variation needs at least one dimension, far above it.
    from ppzoo.models.vae import encode

    settings = dict(network="mlp", mlp_hidden=(64,), latent_dim=4, batch_size=None, init_seed=0)
    checks = {}
    for name, model in (("vae", ppzoo.models.get("vae", **settings)),
                        ("beta_vae", ppzoo.models.get("beta_vae", beta=1000.0, **settings))):
        fit = ppzoo.fit(model, {"x": digits}, engine="svi", seed=0, steps=500, learning_rate=1e-2, num_draws=5)
        checks[name] = posterior_collapse(*encode(fit.model, fit.params, digits), label=name)
    collapsed, plain = checks["beta_vae"], checks["vae"]
    activity = collapsed.tables[0][1]["activity Var_x(E_q[z|x])"]
    assert collapsed.passed is False and (activity < ACTIVE_VARIANCE / 10).all(), collapsed.verdict
    assert plain.passed is True and plain.tables[0][1]["activity Var_x(E_q[z|x])"].max() > 10 * ACTIVE_VARIANCE
    # On a page: the collapse FAIL is in the strip, linked to its section, and in verdicts.csv.
    from ppzoo.case_studies._vae_common import collapse_section

    section = collapse_section(checks, len(digits))
    out = ppzoo.report(fit, tmp_path / "r", sections=[section])
    rows = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    flagged = rows[rows["name"] == "posterior collapse"].set_index("engine")["verdict"]
    assert flagged.to_dict() == {"vae": "PASS", "beta_vae": "FAIL"}
    page = (out / "index.html").read_text()
    assert f"href='#{section_anchor(section.title)}'>posterior collapse</a>" in page
