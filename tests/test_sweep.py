"""``ppzoo sweep``: study files and grids, bad input, the local and Ray backends, resume and faults.

Most tests use a pure-NumPy task (written into the test's folder) so that a run costs a process start,
not a compile; one test fits the real ``ica`` model end to end.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ppzoo.sweep import (
    RUN_COLUMNS,
    StudyError,
    check_ray_address,
    execute_run,
    expand,
    gather,
    load_study,
    parse_study,
    run_study,
)

FAKE_TASK = '''
import os
import signal
import time
from pathlib import Path

import numpy as np


def task(settings, *, seed):
    """A pure-NumPy stand-in for a fit: deterministic in (settings, seed); can die or fail on request."""
    model = settings["model"]
    if model.get("log"):
        with open(model["log"], "a") as handle:
            handle.write(f"{seed} {model.get('scale')} {os.getpid()}\\n")
    if model.get("sleep"):
        time.sleep(model["sleep"])
    if model.get("kill_marker") and seed == model.get("kill_seed"):
        marker = Path(model["kill_marker"])
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-run
    if model.get("fail_seed") == seed and not Path(model.get("fixed", "")).is_file():
        raise RuntimeError(f"seed {seed} always fails")
    rng = np.random.default_rng(seed)
    draws = model.get("scale", 1.0) * rng.normal(size=settings["data"].get("num_data", 10))
    return {"mean": float(draws.mean()), "sd": float(draws.std())}
'''


def fake_study(folder: Path, *, model: str = "", grid: str = 'seed = [0, 1, 2]\n"model.scale" = [1.0, 2.0]',
               study: str = "max_retries = 0") -> Path:
    (folder / "fake_task.py").write_text(FAKE_TASK)
    path = folder / "fake.toml"
    path.write_text(
        f'[study]\nname = "fake"\ntask = "fake_task.py:task"\n{study}\n\n[data]\nnum_data = 20\n\n'
        f"[model]\n{model}\n\n[grid]\n{grid}\n"
    )
    return path


def results(table: pd.DataFrame) -> pd.DataFrame:
    """The part of a study's table that must not depend on the backend (no timings, pids, hosts)."""
    return table.drop(columns=[c for c in RUN_COLUMNS if c in table.columns]).reset_index(drop=True)


ICA = """
[study]
model = "ica"
engine = "svi"
[data]
name = "linear_ica"
num_data = 200
num_sources = 2
[engine]
steps = 200
learning_rate = 0.02
num_draws = 50
[grid]
seed = [0, 1]
[output]
predictive_draws = 10
prior_draws = 10
"""


# ----------------------------------------------------------------------------------------- grids


def test_grid_is_the_product_crossed_with_each_zip_group():
    text = ICA.replace("steps = 200\nlearning_rate = 0.02\n", "")
    study = parse_study(text.replace("seed = [0, 1]", textwrap.dedent("""\
        seed = [0, 1, 2]
        "data.noise_scale" = [0.1, 0.2]
        [[grid.zip]]
        "engine.steps" = [100, 200]
        "engine.learning_rate" = [0.02, 0.01]
        """)))
    runs = expand(study)
    assert len(runs) == 3 * 2 * 2
    pairs = {(r.engine_options["steps"], r.engine_options["learning_rate"]) for r in runs}
    assert pairs == {(100, 0.02), (200, 0.01)}  # zipped, not crossed
    assert {r.seed for r in runs} == {0, 1, 2}
    assert all(r.data["name"] == "linear_ica" and r.data["num_data"] == 200 for r in runs)
    assert len({r.key for r in runs}) == len(runs)
    assert [r.index for r in runs] == list(range(len(runs)))
    assert runs[0].setting == "data.noise_scale=0.1, engine.steps=100, engine.learning_rate=0.02"


def test_run_keys_are_stable_and_follow_the_settings():
    first = expand(parse_study(ICA))
    again = expand(parse_study(ICA.replace("[study]", "[study]\nname = 'renamed'")))
    assert [r.key for r in first] == [r.key for r in again]  # the study's name is not a setting
    changed = expand(parse_study(ICA.replace("steps = 200", "steps = 300")))
    assert not {r.key for r in first} & {r.key for r in changed}


def test_the_example_studies_parse():
    root = Path(__file__).resolve().parents[1] / "studies"
    assert len(expand(load_study(root / "ica_small.toml"))) == 24
    runs = expand(load_study(root / "beta_vae_small.toml"))
    assert len(runs) == 24
    # the networks' init_seed is zipped with the seed: replicates of one setting, not settings of their own
    assert sorted({r.setting for r in runs}) == [f"model.beta={b}" for b in (1, 2, 4, 8)]


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (("[output]", "[outputs]"), r"Unknown key\(s\) 'outputs' in the study file .*Valid keys: study, data"),
        (("[study]", "[study]\nretries = 2"), r"Unknown key\(s\) 'retries' in \[study\]\. Valid keys: name, model"),
        (("[study]", "[args]\nnum_data = 3\n[study]"), r"\[args\] holds a case study's command-line options"),
        (('model = "ica"', 'model = "icaa"'), r"Unknown model 'icaa' in \[study\]\. The zoo has: .*ica"),
        (("seed = [0, 1]", '"optim.lr" = [0.1]'), r"Unknown grid key 'optim.lr'.*Valid keys: seed, data"),
        (("seed = [0, 1]", '"engine.step" = [100]'), r"Unknown key\(s\) 'step' in the options of engine 'svi'.*steps"),
        (("seed = [0, 1]", '"model.num_source" = [2]'), r"Unknown key\(s\) 'num_source' in the config of model 'ica'.*num_sources"),
        (("num_sources = 2", "sources = 2"), r"Unknown key\(s\) 'sources' in the settings of data set 'linear_ica'.*num_sources"),
        (("seed = [0, 1]", "seed = []"), r"Grid key 'seed' in \[grid\] is an empty list"),
        (("seed = [0, 1]", ""), r"The grid is empty"),
        (("seed = [0, 1]", '[[grid.zip]]\nseed = [0, 1]\n"data.noise_scale" = [0.1]'), r"equal lengths.*seed: 2, data.noise_scale: 1"),
        (("seed = [0, 1]", '"engine.steps" = [100, 200]'), r"'steps' is set both in \[engine\] and in the grid"),
        (("seed = [0, 1]", "seed = [0, 0]"), r"identical settings"),
        (('engine = "svi"', 'engine = "hmc"'), r"Unknown engine 'hmc'.*svi, nuts, blackjax"),
        (('engine = "svi"', 'engine = "svi"\nmetrics = ["mccc"]'), r"Unknown metric 'mccc'. Built in: recovery"),
        (('name = "linear_ica"', 'name = "linear"'), r"Unknown data set 'linear' in \[data\]. Valid names: .*linear_ica"),
        (("seed = [0, 1]", '"engine.chunk_size" = [0]'), r"Engine 'svi' rejects its options \(grid point .*chunk_size.*must be positive"),
        (("steps = 200", "steps = 200\n[grid.extra]"), r"Grid key 'extra' in \[grid\] must be a list|Unknown grid key 'extra'"),
    ],
)
def test_bad_study_files_name_the_problem(change, match):
    with pytest.raises(StudyError, match=match):
        expand(parse_study(ICA.replace(*change)))


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(StudyError, match="not valid TOML"):
        parse_study("[study\nmodel = 'ica'")
    with pytest.raises(StudyError, match="does not exist"):
        load_study(tmp_path / "nope.toml")
    with pytest.raises(StudyError, match="exactly one of `model`.*got none"):
        parse_study("[study]\n[grid]\nseed = [0]")
    with pytest.raises(StudyError, match="exactly one of `model`.*got model, task"):
        parse_study("[study]\nmodel = 'ica'\ntask = 'x.py:f'\n[grid]\nseed = [0]")


def test_a_case_study_is_swept_over_its_command_line_options():
    text = '[study]\ncase_study = "ica"\n[args]\nnum_data = 200\nengines = "svi"\n[grid]\nseed = [0, 1]\n'
    runs = expand(parse_study(text + '"args.svi_steps" = [100, 200]\n'))
    assert [(r.seed, r.args["svi_steps"]) for r in runs] == [(0, 100), (0, 200), (1, 100), (1, 200)]
    assert runs[0].args == {"num_data": 200, "engines": "svi", "svi_steps": 100}
    with pytest.raises(StudyError, match=r"Unknown key\(s\) 'num_dat' in the options of case study 'ica'.*num_data"):
        expand(parse_study(text.replace("num_data", "num_dat")))  # argparse would take the abbreviation
    with pytest.raises(StudyError, match=r"Case study 'ica' rejects its options \(grid point .*invalid int value: 'many'"):
        expand(parse_study(text + '"args.num_sources" = ["many"]\n'))
    with pytest.raises(StudyError, match=r"Unknown case study 'icx' in \[study\]. Valid: ica"):
        parse_study(text.replace('"ica"', '"icx"'))
    with pytest.raises(StudyError, match=r"under \[args\].*remove \[engine\]"):
        parse_study(text + "[engine]\nsteps = 3\n")
    with pytest.raises(StudyError, match=r"Unknown grid key 'model.beta'.*Valid keys: seed, args.<option>"):
        parse_study(text + '"model.beta" = [1.0]\n')


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_backend_settings_fail_before_anything_is_written(tmp_path, monkeypatch):
    study = fake_study(tmp_path)
    out = tmp_path / "out"
    port = _closed_port()
    start = time.monotonic()
    with pytest.raises(StudyError, match=rf"Ray address '127.0.0.1:{port}' does not answer"):
        run_study(study, out=out, backend="ray", address=f"127.0.0.1:{port}", progress=None)
    assert time.monotonic() - start < 10
    with pytest.raises(StudyError, match="is not host:port"):
        check_ray_address("nonsense")
    with pytest.raises(StudyError, match="Unknown backend 'dask'. Valid backends: local, ray"):
        run_study(study, out=out, backend="dask", progress=None)
    with pytest.raises(StudyError, match="`workers` must be a positive integer"):
        run_study(study, out=out, workers=0, progress=None)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(StudyError, match=r'pip install "ppzoo\[ray\]"'):
        run_study(study, out=out, backend="ray", progress=None)
    assert not out.exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(StudyError, match="was not written by ppzoo sweep"):
        run_study(study, out=foreign, progress=None)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_cli_reports_a_bad_study(tmp_path, capsys):
    from ppzoo.cli import main

    path = tmp_path / "bad.toml"
    path.write_text(ICA.replace('model = "ica"', 'model = "nope"'))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "ppzoo sweep: Unknown model 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ local backend


def test_a_zoo_model_run_fits_scores_and_writes_its_datatree(tmp_path):
    # In this process (a worker does exactly this); the worker pool itself is tested on the fake task.
    study = parse_study(ICA.replace("seed = [0, 1]", "seed = [3]"))
    (spec,) = expand(study)
    record = execute_run(spec, tmp_path / "runs")
    assert record["status"] == "ok" and record["seed"] == 3 and record["attempts"] == 1
    assert {"mcc_pearson", "amari_distance", "final_loss", "compile_s", "metrics_s"} <= set(record)
    assert 0.5 < record["mcc_pearson"] <= 1.0
    folder = tmp_path / "runs" / spec.key
    assert sorted(p.name for p in folder.iterdir()) == ["fit.nc", "record.json", "settings.json"]  # no temporaries
    import xarray as xr

    tree = xr.open_datatree(folder / "fit.nc", engine="h5netcdf")
    assert {"posterior", "sample_stats", "observed_data", "posterior_predictive"} <= set(tree.children)
    assert tree["posterior_predictive"].sizes["draw"] == 10  # [output] predictive_draws
    assert execute_run(spec, tmp_path / "runs") == record  # a finished run is not redone
    table = gather([spec], tmp_path)
    assert table.loc[0, "mcc_pearson"] == record["mcc_pearson"]
    assert pd.read_csv(tmp_path / "results.csv")["run"].tolist() == [spec.key]


@pytest.fixture(scope="module")
def fake_local(tmp_path_factory):
    """The fake study (3 seeds x 2 settings) run once by the local backend with two workers."""
    folder = tmp_path_factory.mktemp("fake")
    study = fake_study(folder, model=f'log = "{folder / "log.txt"}"')
    return study, run_study(study, out=folder / "out", workers=2, progress=None)


def test_local_backend_runs_every_point_once(fake_local):
    study, result = fake_local
    table = result.table
    assert result.executed == 6 and result.skipped == 0 and (table["status"] == "ok").all()
    assert list(zip(table["seed"], table["model.scale"])) == [(s, c) for s in (0, 1, 2) for c in (1.0, 2.0)]
    assert len(set(table["pid"])) <= 2  # two worker processes did all six runs
    expected = [np.random.default_rng(s).normal(size=20).mean() * c for s, c in zip(table["seed"], table["model.scale"])]
    np.testing.assert_allclose(table["mean"], expected)
    assert len((study.parent / "log.txt").read_text().splitlines()) == 6
    page = result.report.read_text()
    assert "Metrics per setting" in page and "Best and worst runs by mean" in page and "No failed runs" in page
    assert page.count("<img") == 2  # one box/strip plot per metric (mean, sd)


def test_rerunning_a_finished_study_runs_nothing(fake_local):
    study, first = fake_local
    again = run_study(study, out=first.out, progress=None)
    assert again.skipped == 6 and again.executed == 0 and again.backend == "local"
    assert len((study.parent / "log.txt").read_text().splitlines()) == 6  # nothing ran again
    pd.testing.assert_frame_equal(again.table, first.table)


def test_killed_and_failing_runs_are_recorded_retried_and_resumed(tmp_path, capsys):
    log, marker, fixed = tmp_path / "log.txt", tmp_path / "killed", tmp_path / "fixed"
    study = fake_study(
        tmp_path, study="max_retries = 1",
        model=f'log = "{log}"\nkill_marker = "{marker}"\nkill_seed = 1\nfail_seed = 2\nfixed = "{fixed}"\nsleep = 0.1',
    )
    out = tmp_path / "out"
    first = run_study(study, out=out, workers=2)
    table = first.table.set_index(["seed", "model.scale"])
    assert marker.exists()  # one seed-1 run killed its worker process mid-run ...
    assert (table.loc[1, "status"] == "ok").all() and sorted(table.loc[1, "attempts"]) in ([1, 2], [2, 2])
    failures = {k: json.loads((out / "failures" / f"{k}.json").read_text()) for k in table.loc[1, "run"]
                if (out / "failures" / f"{k}.json").exists()}
    assert any(re.search(r"worker process \d+ died \(signal 9\)", f["attempts"][0]["error"]) for f in failures.values())
    assert (table.loc[0, "status"] == "ok").all()  # ... and nothing else was lost
    assert (table.loc[2, "status"] == "failed").all() and (table.loc[2, "attempts"] == 2).all()  # 1 + max_retries
    assert table.loc[2, "error"].str.contains("RuntimeError: seed 2 always fails").all()
    saved = json.loads((out / "failures" / f"{table.loc[(2, 1.0), 'run']}.json").read_text())
    assert "Traceback" in saved["attempts"][-1]["traceback"] and saved["final"]
    printed = capsys.readouterr().out
    assert "[sweep fake] 6 runs, 0 already finished" in printed and "4/6 done, 0 running, 2 failed" in printed
    assert "failed (attempt 1)" in printed and "retrying" in printed
    assert "Failures" in first.report.read_text()
    finished = {k: (out / "runs" / k / "record.json").stat().st_mtime_ns for k in first.table.query("status == 'ok'")["run"]}
    ran = len(log.read_text().splitlines())

    fixed.touch()  # the failing runs now succeed: the rerun resumes and completes
    resumed = run_study(study, out=out, workers=1, progress=None)
    assert resumed.skipped == 4 and resumed.executed == 2 and resumed.failed == 0
    assert (resumed.table["status"] == "ok").all()
    assert len(log.read_text().splitlines()) == ran + 2  # only the two failed runs ran again
    assert finished == {k: (out / "runs" / k / "record.json").stat().st_mtime_ns for k in finished}
    assert "No failed runs" in resumed.report.read_text()


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited


def test_killing_the_sweep_itself_keeps_finished_runs(tmp_path):
    study = fake_study(tmp_path, model="sleep = 0.5", grid="seed = [0, 1, 2, 3, 4, 5, 6, 7]")
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "ppzoo.cli", "sweep", str(study), "--out", str(out),
                                "--workers", "1", "--no-cache"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("runs/*/record.json"))) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    worker = json.loads(next(out.glob("runs/*/record.json")).read_text())["pid"]
    while time.monotonic() < deadline and _alive(worker):  # the orphaned worker finishes its run, then exits
        time.sleep(0.05)
    table = gather(expand(load_study(study)), out)
    finished = table[table["status"] == "ok"]
    assert 2 <= len(finished) < 8 and set(table["status"]) == {"ok", "pending"}
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]  # none half-written
    assert finished["mean"].notna().all()


# -------------------------------------------------------------------------------------------- Ray


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # Ray's fork + exec of its own processes
def test_ray_backend_gives_the_same_table_as_local(fake_local, tmp_path):
    ray = pytest.importorskip("ray")
    study, local = fake_local
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        remote = run_study(study, out=tmp_path / "ray", backend="ray", progress=None)
    finally:
        ray.shutdown()
    assert remote.backend.startswith("ray") and (remote.table["status"] == "ok").all()
    assert set(remote.table["pid"]).isdisjoint(set(local.table["pid"]))
    pd.testing.assert_frame_equal(results(remote.table), results(local.table))
