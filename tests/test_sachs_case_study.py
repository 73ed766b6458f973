"""The Sachs case study: a smoke run with tiny settings, its scores, and the cyclic reference graph."""

from __future__ import annotations

import re

import pytest

import ppzoo
from ppzoo.case_studies import sachs


def test_consensus_graph_cycle_is_named_and_broken():
    info = ppzoo.data.load("sachs").info
    edges, note = sachs._graph("consensus_cdt", info)
    assert "cycle" in note and "pip2 -> pip3" in note
    assert ("pip2", "pip3") not in edges and len(edges) == int(info["graphs"]["consensus_cdt"].sum()) - 1
    ppzoo.causal.topological_order(info["variables"], edges)  # now a DAG
    with pytest.raises(ValueError, match="cycle"):
        ppzoo.models.get("linear_scm", nodes=info["variables"],
                         edges=ppzoo.causal.edges_from_adjacency(info["graphs"]["consensus_cdt"], info["variables"]))


def test_smoke_run_writes_report_with_scores(tmp_path):
    out = sachs.main([
        "--out", str(tmp_path / "sachs"), "--graphs", "cmu_phil", "--engines", "svi", "--svi-steps", "200",
        "--predictive-draws", "5", "--score-cells", "150",
    ])
    page = (out / "index.html").read_text()
    assert "Held-out interventional conditions" in page
    assert "do(mek = -2)" in page and "do(pka = +2)" in page
    assert "energy baseline" in page and "cmu_phil: posterior of the edge weights" in page
    assert "predicts worse than the baseline" in page
    # The study's claim, one per fit, leads the strip: judged from this run's counts (more than half needed).
    import pandas as pd

    verdicts = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    claims = verdicts[verdicts["kind"] == "claim"]
    assert verdicts["kind"].iloc[0] == "claim" and len(claims) == 1
    name = claims["name"].item()
    match = re.fullmatch(r"do\(\) beats the no-intervention baseline on most targeted conditions "
                         r"\(svi_cmu_phil: (\d) of 7\)", name)
    assert match, name
    assert claims["verdict"].item() == ("PASS" if int(match.group(1)) > 3.5 else "FAIL")


def test_claims_say_fail_when_do_wins_on_a_minority():
    import pandas as pd

    summary = pd.DataFrame({"conditions": [7, 7], "do_beats_baseline": [2, 4], "mean_energy_do": [3.84, 3.5],
                            "mean_energy_baseline": [3.66, 3.6]}, index=["nuts_cmu_phil", "svi_cmu_phil"])
    claims = sachs.study_claims(summary)
    assert [c.passed for c in claims] == [False, True]
    assert claims[0].name.endswith("(nuts_cmu_phil: 2 of 7)") and "3.840 under do() against 3.660" in claims[0].detail
