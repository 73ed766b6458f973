"""The ppzoo command: models listing, a tiny case-study run, errors."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

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
