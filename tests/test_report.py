"""ppzoo.report: the folder, its contents, atomic writing, and the page in a real browser."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import ppzoo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def ica_report(ica_fits, ica_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports") / "ica"
    return ppzoo.report(ica_fits, out, truth=ica_data.truth, data_info=ica_data.info)


def test_report_folder_contents(ica_report):
    files = {p.name for p in ica_report.iterdir()}
    assert {"index.html", "metrics.csv", "nuts.nc", "blackjax.nc", "svi.nc"} <= files
    tree = xr.open_datatree(ica_report / "nuts.nc", engine="h5netcdf")
    assert {"posterior", "sample_stats", "log_likelihood", "posterior_predictive", "prior"} <= set(tree.children)
    metrics = pd.read_csv(ica_report / "metrics.csv")
    assert list(metrics["fit"]) == ["nuts", "blackjax", "svi"]
    assert (metrics["mcc_pearson"] >= 0.95).all() and (metrics["amari_distance"] <= 0.1).all()
    page = (ica_report / "index.html").read_text()
    for text in ("ArviZ summary", "r_hat", "Divergent transitions", "rank plots", "posterior predictive check",
                 "Engines side by side", "symmetric modes", "Amari"):
        assert text in page, text
    assert page.count("data:image/png;base64,") >= 7
    assert "failed:" not in page  # no plot broke
    # Three engines: the closed loop opens with whether they agree. The default (off-span) ICA has no
    # per-datum latent, so PSIS-LOO applies (noisy ICA's n/a is tested in tests/test_verdicts.py).
    verdicts = page[page.index("<ul class='verdicts'>"):]
    assert verdicts.index("engines agree") < verdicts.index("prior predictive"), verdicts[:600]
    assert "each observation has its own latent" not in verdicts
    strip = pd.read_csv(ica_report / "verdicts.csv", keep_default_na=False)
    assert set(strip.loc[strip["name"] == "engines agree", "verdict"]) == {"PASS"}


def test_report_refuses_foreign_folder_and_replaces_its_own(ica_fits, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="exists and was not written by ppzoo"):
        ppzoo.report(ica_fits["svi"], foreign)
    assert (foreign / "thesis.tex").read_text() == "precious"
    out = ppzoo.report(ica_fits["svi"], tmp_path / "r")
    (out / "marker").write_text("old")
    out = ppzoo.report(ica_fits["svi"], tmp_path / "r")
    assert not (out / "marker").exists() and (out / "index.html").exists()


def test_failed_report_leaves_nothing(ica_fits, tmp_path, monkeypatch):
    import importlib

    report_module = importlib.import_module("ppzoo.report")  # the attribute ppzoo.report is the function

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_module, "html_page", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        ppzoo.report(ica_fits["svi"], tmp_path / "half")
    assert not (tmp_path / "half").exists()
    assert [p for p in tmp_path.iterdir()] == []


def test_report_errors(ica_fits, conjugate_fits, tmp_path):
    with pytest.raises(ValueError, match="`fits` is empty"):
        ppzoo.report([], tmp_path / "a")
    with pytest.raises(ValueError, match="must be fits of one model"):
        ppzoo.report([ica_fits["svi"], conjugate_fits["svi"]], tmp_path / "b")
    with pytest.raises(TypeError, match="not a ppzoo.Fit"):
        ppzoo.report({"x": 1}, tmp_path / "c")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.mark.browser
def test_page_loads_in_headless_chromium(ica_report, tmp_path):
    if _chromium() is None or shutil.which("chromedriver") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install chromium and chromium-driver (see .ci/run)")
        pytest.skip("headless Chromium not installed here (CI installs it)")
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = _chromium()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get((Path(ica_report) / "index.html").resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt]);"
        )
        assert len(images) >= 7
        broken = [alt for complete, width, alt in images if not complete or width == 0]
        assert broken == [], f"images that did not load: {broken}"
        tables = driver.execute_script("return document.querySelectorAll('table').length;")
        assert tables >= 5
        headings = driver.execute_script("return Array.from(document.querySelectorAll('h2')).map(h => h.textContent);")
        assert {"What was run", "Engine: nuts", "Engine: blackjax", "Engine: svi", "Engines side by side"} <= set(headings)
        driver.save_screenshot(str(tmp_path / "page.png"))
    finally:
        driver.quit()


def test_file_names_a_shell_can_use():
    from ppzoo.report import file_stem

    taken: set[str] = set()
    assert file_stem("iVAE (NUTS, exact)", taken) == "iVAE_NUTS_exact"
    assert file_stem("iVAE [NUTS; exact]", taken) == "iVAE_NUTS_exact_2"
    assert file_stem("nuts") == "nuts" and file_stem(" ,") == "fit"


def test_a_killed_writer_leaves_nothing_after_the_next_write(ica_fits, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r"
    ppzoo.report(ica_fits["svi"], out)
    before = (out / "index.html").read_bytes()
    # A writer in another process: it stages the folder, then is killed (SIGKILL: no clean-up code runs).
    script = (
        "import os, sys, time, tempfile\n"
        "from pathlib import Path\n"
        "import ppzoo.report\n"
        "module = sys.modules['ppzoo.report']\n"
        f"out = Path({str(out)!r})\n"
        "folder = module._staging_folder(out, 'new')\n"
        "(folder / 'big.bin').write_bytes(b'x' * 1_000_000)\n"
        "print(folder, flush=True)\n"
        "time.sleep(120)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    staged = Path(writer.stdout.readline().strip())
    assert staged.is_dir() and staged.parent == tmp_path
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    time.sleep(0.1)
    assert staged.is_dir()  # what a killed run leaves behind
    assert (out / "index.html").read_bytes() == before  # the previous report is intact
    live = tmp_path / ".r.new.live"  # a folder of a writer still running (this process) is kept
    live.mkdir()
    (live / ".ppzoo-staging").write_text(f"{os.getpid()}\n")
    ppzoo.report(ica_fits["svi"], out)
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == [".r.new.live", "r"], leftovers
    assert not (out / ".ppzoo-staging").exists()
