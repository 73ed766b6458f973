"""Results files and the README paragraphs rendered from them: every number the README quotes for a case
study is the number its default run wrote."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from ppzoo.results import read_results, render_readme, render_template, write_results

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "scripts" / "readme_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_quotes_exactly_the_committed_results():
    readme, templates, results = _script().load(ROOT)
    assert render_readme(readme, templates, results) == readme, (
        "README.md's results blocks differ from results/*.json: run `python scripts/readme_results.py write`"
    )


#: Benchmarks whose tables the README quotes: results name -> the script that writes the file (--results DIR).
BENCHMARK_RESULTS = {"reference_posteriors": "benchmarks/reference_posteriors.py", "nuts_speed": "benchmarks/nuts_speed.py"}


def test_every_results_file_has_its_readme_block_and_template():
    from ppzoo.cli import CASE_STUDIES

    readme, templates, results = _script().load(ROOT)
    assert set(results) == set(CASE_STUDIES) | set(BENCHMARK_RESULTS), (
        "every case study's default run and every benchmark in BENCHMARK_RESULTS has a committed results file")
    for case, payload in results.items():
        assert payload["case"] == case
        assert f"<!-- results:{case} -->" in readme and f"<!-- /results:{case} -->" in readme, case
        assert case in templates, case


def test_write_and_read_round_trip(tmp_path):
    path = write_results(tmp_path, "demo", {"mcc": np.float32(0.5), "passed": True, "n": np.int64(3),
                                            "bad": float("nan"), "name": "iVAE"}, settings={"seeds": 3})
    payload = read_results(tmp_path)
    assert path == tmp_path / "results.json" and payload["case"] == "demo"
    assert payload["values"] == {"mcc": 0.5, "passed": True, "n": 3, "bad": None, "name": "iVAE"}
    assert payload["settings"] == {"seeds": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temporary left behind


def test_write_results_errors(tmp_path):
    with pytest.raises(ValueError, match="must be snake_case"):
        write_results(tmp_path, "demo", {"MCC iVAE": 0.5})
    with pytest.raises(TypeError, match="numbers, booleans and strings only"):
        write_results(tmp_path, "demo", {"mcc": np.ones(3)})
    with pytest.raises(ValueError, match="existing report folder"):
        write_results(tmp_path / "missing", "demo", {"mcc": 0.5})
    (tmp_path / "other.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a ppzoo results file"):
        read_results(tmp_path / "other.json")


def test_templates_cannot_quote_their_own_numbers():
    results = {"case": "demo", "values": {"mcc": 0.947}, "settings": {"seeds": 3}}
    assert render_template("MCC {mcc:.3f} over {seeds} seeds", results) == "MCC 0.947 over 3 seeds"
    with pytest.raises(ValueError, match=r"quotes number\(s\) \['0.95\)'\]"):
        render_template("MCC {mcc:.3f} (was 0.95)", results)
    with pytest.raises(KeyError, match="names 'mig'"):
        render_template("MIG {mig}", results)


def test_a_stale_readme_number_is_caught():
    readme = "intro\n<!-- results:demo -->\nMCC 0.900\n<!-- /results:demo -->\nend\n"
    results = {"demo": {"case": "demo", "values": {"mcc": 0.947}, "settings": {}}}
    rendered = render_readme(readme, {"demo": "MCC {mcc:.3f}\n"}, results)
    assert rendered == "intro\n<!-- results:demo -->\nMCC 0.947\n<!-- /results:demo -->\nend\n" != readme
    with pytest.raises(KeyError, match="needs results/templates/demo.md"):
        render_readme(readme, {}, results)
