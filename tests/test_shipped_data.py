"""The validation data ship inside the package: found without any folder beside the repository, in the wheel,
reproducible from the raw material by ``scripts/pack_validation.py``, and readable in the raw layout too."""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import ppzoo
from ppzoo.data import _paths, sachs
from ppzoo.reference import load_reference, reference_names, stan_names

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "ppzoo" / "data" / "validation"
EIGHT = "eight_schools-eight_schools_noncentered"
MAX_WHEEL_BYTES = 10_000_000
# Paths that would send ppzoo (or its user) to a folder beside the repository, which a clone does not have.
_OUTSIDE_PATHS = [
    re.compile(r"\.\./shared"),
    re.compile(r"(?<![\w/.-])shared/"),  # a path that starts at shared/ ("methods/shared/x.py" is fine)
    re.compile(r"""["']shared["']"""),  # a path component, as in Path(...) / "shared"
]
_SCANNED = ["ppzoo", "models", "inference", "case_studies", "tests", "benchmarks", "scripts", "studies"]
_SCANNED_FILES = ["README.md", "pyproject.toml"]
_BINARY = {".npz", ".gz", ".png", ".jpg", ".nc", ".h5", ".pyc", ".so"}


def _pack_script():
    spec = importlib.util.spec_from_file_location("pack_validation", REPO / "scripts" / "pack_validation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shipped_files() -> list[str]:
    return sorted(str(p.relative_to(SHIPPED)) for p in SHIPPED.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------------------
# Found through the package
# --------------------------------------------------------------------------------------------------------


def test_default_folder_is_inside_the_package(monkeypatch):
    monkeypatch.delenv(_paths.ENV_VAR, raising=False)
    assert _paths.validation_dir() == _paths.shipped_validation_dir() == SHIPPED
    assert _paths.validation_dir().is_relative_to(Path(ppzoo.__file__).resolve().parent)


def test_every_reference_loads_with_the_summary_shapes(monkeypatch):
    monkeypatch.delenv(_paths.ENV_VAR, raising=False)
    names = reference_names()
    assert len(names) == 15
    for name in names:
        ref = load_reference(name)
        scalars = [n for site, values in ref.draws.items() for n in stan_names(site, values.shape[2:])]
        assert sorted(scalars) == sorted(ref.summary.index), name
        shape = (ref.meta["reference_draws"]["n_chains"], ref.meta["reference_draws"]["n_draws_per_chain"])
        assert shape == (10, 1000), name
        assert list(ref.draws) == list(ref.meta["dimensions"]), name
        for site, values in ref.draws.items():
            assert values.shape[:2] == shape and values.dtype == np.float64, (name, site)
            assert math.prod(values.shape[2:]) == ref.meta["dimensions"][site], (name, site)
            # The summary was computed from the float64 draws; the float32 copy moves a mean by < 1e-5 sd.
            flat = values.reshape(shape[0] * shape[1], -1)
            summary = ref.summary.loc[stan_names(site, values.shape[2:])]
            assert np.all(np.abs(flat.mean(0) - summary["mean"]) < 1e-5 * summary["sd"]), (name, site)
            np.testing.assert_allclose(flat.std(0, ddof=1), summary["sd"], rtol=1e-5)
    assert load_reference(EIGHT).draws["theta"].shape == (10, 1000, 8)
    assert load_reference("diamonds-diamonds").data["X"].shape == (5000, 25)  # N x K of data.json, intercept first


def test_sachs_loads_from_the_package(monkeypatch):
    monkeypatch.delenv(_paths.ENV_VAR, raising=False)
    observational = sachs.load()
    assert observational.data["x"].shape == (853, 11)
    assert Path(observational.info["path"]) == SHIPPED / "sachs"
    everything = sachs.load(subset="all")
    assert everything.data["x"].shape == (7466, 11) and everything.data["u"].shape == (7466,)
    graphs = everything.info["graphs"]
    assert (int(graphs["consensus_cdt"].sum()), int(graphs["cmu_phil"].sum())) == (18, 20)


def test_shipped_folder_has_the_readmes_and_licences():
    assert {"README.md", "posteriordb/README.md", "sachs/README.md", "pendulum/RECIPE.md"} <= set(_shipped_files())
    readme = (SHIPPED / "README.md").read_text(encoding="utf-8")
    for fact in ("BSD-3-Clause", "BSD 3-Clause License", "MIT License", "CC0", "Apache-2.0", "28f8d3d",
                 "scripts/pack_validation.py"):
        assert fact in readme, fact


def test_no_source_file_points_outside_the_repository():
    offenders = []
    paths = [p for folder in _SCANNED for p in (REPO / folder).rglob("*") if p.is_file()]
    paths += [REPO / name for name in _SCANNED_FILES]
    for path in paths:
        if path.suffix in _BINARY or "__pycache__" in path.parts or path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if any(pattern.search(line) for pattern in _OUTSIDE_PATHS):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "Paths outside the repository (ship the data in ppzoo/data/validation):\n" + "\n".join(
        offenders
    )


# --------------------------------------------------------------------------------------------------------
# Packing: reproducible, and the raw layout still readable through PPZOO_VALIDATION_DIR
# --------------------------------------------------------------------------------------------------------


@pytest.fixture
def raw_folder(tmp_path):
    """The raw layout of eight schools + Sachs + pendulum, rebuilt from the shipped (packed) files."""
    pack = _pack_script()
    raw = tmp_path / "raw"
    case = raw / "posteriordb" / EIGHT
    case.mkdir(parents=True)
    packed = SHIPPED / "posteriordb" / EIGHT
    (case / "data.json").write_bytes(gzip.decompress((packed / "data.json.gz").read_bytes()))
    with np.load(packed / "reference_draws.npz") as arrays:
        draws, names = arrays["draws"], [str(n) for n in arrays["parameter_names"]]
    chains = [{n: [float(v) for v in draws[c, :, i]] for i, n in enumerate(names)} for c in range(draws.shape[0])]
    (case / "reference_draws.json").write_text(json.dumps(chains))
    for name in pack.CASE_FILES:
        shutil.copyfile(packed / name, case / name)
    readme = (SHIPPED / "posteriordb" / "README.md").read_text(encoding="utf-8")
    assert readme.startswith(pack._POSTERIORDB_NOTE)
    (raw / "posteriordb" / "README.md").write_text(readme[len(pack._POSTERIORDB_NOTE) :], encoding="utf-8")
    shutil.copytree(SHIPPED / "sachs", raw / "sachs")
    shutil.copytree(SHIPPED / "pendulum", raw / "pendulum")
    return raw


def test_packing_is_reproducible(raw_folder, tmp_path):
    pack = _pack_script()
    out = tmp_path / "packed"
    written = pack.pack(raw_folder, out)
    assert written
    for path in written:
        relative = path.relative_to(out)
        assert path.read_bytes() == (SHIPPED / relative).read_bytes(), relative


def test_override_reads_the_raw_layout(raw_folder, monkeypatch):
    monkeypatch.delenv(_paths.ENV_VAR, raising=False)
    shipped = load_reference(EIGHT)
    monkeypatch.setenv(_paths.ENV_VAR, str(raw_folder))
    raw = load_reference(EIGHT)
    assert list(raw.draws) == list(shipped.draws)
    for site in shipped.draws:
        np.testing.assert_array_equal(raw.draws[site], shipped.draws[site])
    assert raw.data.keys() == shipped.data.keys() and raw.meta == shipped.meta
    assert sachs.load().data["x"].shape == (853, 11)


def test_missing_case_files_name_both_layouts(tmp_path, monkeypatch):
    case = tmp_path / "posteriordb" / EIGHT
    case.mkdir(parents=True)
    for name in ("data.json.gz", "meta.json"):
        shutil.copyfile(SHIPPED / "posteriordb" / EIGHT / name, case / name)
    monkeypatch.setenv(_paths.ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"has neither reference_draws.npz .* nor reference_draws.json"):
        load_reference(EIGHT)


def test_pack_errors(tmp_path):
    pack = _pack_script()
    with pytest.raises(FileNotFoundError, match=r"is not a raw validation folder: .*posteriordb/README.md"):
        pack.pack(tmp_path, tmp_path / "out")
    case = tmp_path / "case"
    case.mkdir()
    with pytest.raises(FileNotFoundError, match=r"lacks data.json, reference_draws.json"):
        pack.pack_case(case, tmp_path / "out")
    for name in ("data.json", "meta.json", "model.md", "reference_summary.csv"):
        (case / name).write_text("{}")
    for chains, match in [
        ({"mu": [0.0]}, "must hold a non-empty list of chains"),
        ([{"mu": [0.0]}, {"tau": [0.0]}], "every chain must list the same parameters"),
        ([{"mu": [0.0, 1.0]}, {"mu": [0.0]}], r"same number of draws; found lengths \[1, 2\]"),
        ([{"mu": [1e300]}], "overflows float32"),
    ]:
        (case / "reference_draws.json").write_text(json.dumps(chains))
        with pytest.raises(ValueError, match=match):
            pack.pack_case(case, tmp_path / "out")


# --------------------------------------------------------------------------------------------------------
# The wheel
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build ppzoo's wheel from a copy of the sources (so the checkout gets no build/ folder)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for folder in ("ppzoo", "models", "inference", "case_studies"):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(root / "dist")]
    if importlib.util.find_spec("setuptools") is not None:
        command.append("--no-build-isolation")
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 and "No matching distribution found for setuptools" in done.stdout + done.stderr:
        pytest.skip("cannot build the wheel: setuptools is not installed and pip could not fetch it "
                    "(offline?); pip install setuptools to run this test")
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = (root / "dist").glob("ppzoo-*.whl")
    return built


@pytest.mark.slow
def test_wheel_holds_the_data_and_stays_small(wheel):
    size = wheel.stat().st_size
    assert size < MAX_WHEEL_BYTES, f"the wheel is {size / 1e6:.2f} MB; keep it under {MAX_WHEEL_BYTES / 1e6:.0f} MB"
    with zipfile.ZipFile(wheel) as archive:
        members = set(archive.namelist())
    expected = {f"ppzoo/data/validation/{name}" for name in _shipped_files()}
    assert len(expected) >= 15 * 5 + 6 + 1, sorted(expected)[:5]
    assert not expected - members, sorted(expected - members)
    assert f"ppzoo/data/validation/posteriordb/{EIGHT}/reference_draws.npz" in members


@pytest.mark.slow
def test_installed_wheel_finds_its_data(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    script = (
        "import sys, pathlib, ppzoo\n"
        "from ppzoo.reference import load_reference\n"
        "from ppzoo.data import sachs\n"
        "here = pathlib.Path(ppzoo.__file__).resolve()\n"
        "assert here.is_relative_to(pathlib.Path(sys.argv[1]).resolve()), here\n"
        "assert load_reference('eight_schools-eight_schools_noncentered').draws['theta'].shape == (10, 1000, 8)\n"
        "assert sachs.load().data['x'].shape == (853, 11)\n"
        "print('found')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (_paths.ENV_VAR, "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    done = subprocess.run(
        [sys.executable, "-c", script, str(site)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "found" in done.stdout, done.stdout + done.stderr
