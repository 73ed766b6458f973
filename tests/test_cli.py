"""The ppzoo command: models listing, a tiny case-study run, ``ppzoo check``, errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from ppzoo import checks
from ppzoo.checks import predictive_checks
from ppzoo.cli import main


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "ica" in out and "Bayesian linear ICA" in out


def test_unknown_case_study(capsys):
    assert main(["run", "nope"]) == 2
    assert "unknown case study 'nope'. Valid: ica" in capsys.readouterr().err


@pytest.mark.slow
def test_run_ica_tiny(tmp_path, capsys):
    out = tmp_path / "report"
    # Every engine's report is covered by test_report.py; here the command's path end to end, on SVI alone.
    main(["run", "ica", "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--num-data", "200",
          "--engines", "svi", "--svi-steps", "200"])
    printed = capsys.readouterr().out
    assert printed.strip().splitlines()[-1] == f"Report: {(out / 'index.html').resolve()}"
    assert {"svi"} == set(pd.read_csv(out / "metrics.csv")["fit"])
    assert any((tmp_path / "cache").iterdir())  # the persistent compilation cache was written


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "ppzoo.cli", "run", "ica", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--full" in result.stdout


def test_run_help_lists_every_case_study(capsys):
    from ppzoo.cli import CASE_STUDIES

    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for name in CASE_STUDIES:
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert len(line.split(None, 1)[1]) > 10, line  # a one-line description, not just the name
    assert main(["run"]) == 2  # no case study: the same list, on stderr, and a usage error
    assert "case studies:" in capsys.readouterr().err


def test_case_study_help_prints_only_its_options():
    result = subprocess.run([sys.executable, "-m", "ppzoo.cli", "run", "ica", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: ppzoo run ica"), result.stdout[:200]
    assert "cache" not in result.stdout.splitlines()[0] and result.stderr == ""


@pytest.mark.parametrize("argv", [["check", "eight_schools-eight_schools_noncentered", "--num-simulations", "0"],
                                  ["run", "sachs"]])
def test_missing_data_is_one_line_and_a_nonzero_exit(argv, tmp_path, monkeypatch):
    # A broken data location (here the override pointing nowhere) must not end in a traceback.
    env = dict(os.environ, PPZOO_VALIDATION_DIR=str(tmp_path / "nowhere"))
    result = subprocess.run([sys.executable, "-m", "ppzoo.cli", *argv, "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "PPZOO_VALIDATION_DIR" in errors[0] and "nowhere" in errors[0], errors
    assert not (tmp_path / "out").exists()


def test_check_command_errors():
    with pytest.raises(SystemExit, match="no check setup for 'nope'.*ica"):
        main(["check", "nope", "--num-simulations", "0"])
    with pytest.raises(SystemExit):
        main(["check", "ica", "--engines", "hmc"])


def test_check_command_on_a_reference_posterior(tmp_path, capsys, monkeypatch):
    calls = []

    def counted(fit, *args, **kwargs):
        calls.append(fit.engine)
        return predictive_checks(fit, *args, **kwargs)

    monkeypatch.setattr(checks, "predictive_checks", counted)
    out = tmp_path / "check"
    main(["check", "eight_schools-eight_schools_noncentered", "--engines", "nuts", "--num-simulations", "20",
          "--num-warmup", "300", "--num-samples", "300", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "reference posterior (nuts)" in printed and "SBC (nuts)" in printed
    assert (out / "index.html").exists() and (out / "checks.csv").exists()
    assert "Closed loop:" in (out / "index.html").read_text()
    # The predictive checks run once per fit (the report's), and checks.csv lists each check once, as the page does.
    assert calls == ["nuts"]
    table = pd.read_csv(out / "checks.csv", keep_default_na=False)
    assert table["check"].is_unique and "LOO (nuts)" in set(table["check"])
    strip = pd.read_csv(out / "verdicts.csv", keep_default_na=False)
    assert len(table) == int((strip["kind"] == "check").sum())
    assert printed.count("LOO (nuts):") == 1


def test_check_options_come_from_each_engines_options_class(monkeypatch):
    """ppzoo check sets up every engine from one mapping of settings: each engine takes the fields its options
    class has, so an engine registered later is set up without the check naming it."""
    import dataclasses

    from ppzoo import inference
    from ppzoo.cli import CHECK_SETUPS, engine_options

    settings = {"num_warmup": 300, "num_samples": 200, "target_accept_prob": 0.9, "steps": 1500, "guide": "auto_mvn"}
    assert engine_options("nuts", settings) == {"num_warmup": 300, "num_samples": 200, "target_accept_prob": 0.9}
    assert engine_options("blackjax", settings) == engine_options("nuts", settings)
    assert engine_options("svi", settings) == {"steps": 1500, "guide": "auto_mvn"}
    assert CHECK_SETUPS["ica"].options_for("svi") == {"steps": 1500, "learning_rate": 2e-2}

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class DrawOptions(inference.Options):
        num_samples: int = 100

    draws = dataclasses.replace(inference.get("nuts"), name="draws_only", options=DrawOptions)
    monkeypatch.setitem(inference.ENGINES, draws.name, draws)
    assert engine_options("draws_only", settings) == {"num_samples": 200}
    with pytest.raises(ValueError, match=r"'num_warmpu' are options of no engine. Engine options: .*num_warmup"):
        engine_options("nuts", {"num_warmpu": 300})
    with pytest.raises(ValueError, match="Unknown engine 'hmc'"):
        engine_options("hmc", settings)
