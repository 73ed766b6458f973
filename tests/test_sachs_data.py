"""Tests of the Sachs et al. (2005) loader and of the validation-folder lookup."""

import numpy as np
import pytest

import ppzoo.data
from ppzoo.data import _paths
from ppzoo.data.sachs import CONDITIONS, VARIABLES, load

# First cell of the cd3cd28 file, quoted in ppzoo/data/validation/sachs/README.md.
FIRST_ROW = [26.4, 13.2, 8.82, 18.3, 58.8, 6.61, 17, 414, 17, 44.9, 40]
BLOCK_SIZES = [853, 902, 911, 723, 810, 799, 848, 913, 707]


@pytest.fixture(scope="module")
def all_raw():
    return load(subset="all", log_transform=False)


def test_observational_subset():
    ds = ppzoo.data.load("sachs")
    x = ds.data["x"]
    assert set(ds.data) == {"x"} and x.shape == (853, 11)
    np.testing.assert_allclose(x[0], np.log(FIRST_ROW), rtol=1e-12)
    assert ds.info["variables"] == VARIABLES
    assert ds.info["columns"][5] == "p44/42"


def test_all_conditions(all_raw):
    x, u = all_raw.data["x"], all_raw.data["u"]
    assert x.shape == (7466, 11) and u.shape == (7466,)
    np.testing.assert_array_equal(x[0], FIRST_ROW)
    assert x.min() >= 1.0  # so log_transform is finite
    # Contiguous blocks in the README's order and sizes.
    np.testing.assert_array_equal(u, np.repeat(np.arange(9), BLOCK_SIZES))
    assert all_raw.info["conditions"] == CONDITIONS
    observational = load(subset="observational", log_transform=False).data["x"]
    np.testing.assert_array_equal(observational, x[:853])
    np.testing.assert_allclose(load(subset="all").data["x"], np.log(x), rtol=1e-12)


def test_interventions(all_raw):
    interventions = all_raw.info["interventions"]
    assert list(interventions) == list(CONDITIONS)
    assert interventions["cd3cd28"] == (None, None)
    assert interventions["cd3cd28+u0126"] == ("mek", "inhibitor")
    assert interventions["cd3cd28+ly"] == ("pip3", "inhibitor")
    assert interventions["b2camp"] == ("pka", "activator")
    for target, kind in interventions.values():
        assert (target is None and kind is None) or (target in VARIABLES and kind in ("inhibitor", "activator"))


def test_reference_graphs(all_raw):
    graphs = all_raw.info["graphs"]
    cdt, cmu = graphs["consensus_cdt"], graphs["cmu_phil"]
    assert cdt.shape == cmu.shape == (11, 11)
    assert cdt.sum() == 18 and cmu.sum() == 20
    assert np.trace(cdt) == 0 and np.trace(cmu) == 0
    index = {name: k for k, name in enumerate(VARIABLES)}

    def edges(adjacency):
        return {(VARIABLES[i], VARIABLES[j]) for i, j in zip(*np.nonzero(adjacency))}

    # README: 17 common edges; only in cdt PIP2 -> PIP3; only in CMU PIP3 -> PIP2, PKC -> PKA, Erk -> Akt.
    assert len(edges(cdt) & edges(cmu)) == 17
    assert edges(cdt) - edges(cmu) == {("pip2", "pip3")}
    assert edges(cmu) - edges(cdt) == {("pip3", "pip2"), ("pkc", "pka"), ("erk", "akt")}
    assert cdt[index["raf"], index["mek"]] == 1 and cdt[index["mek"], index["raf"]] == 0


@pytest.mark.parametrize(
    "settings, error, match",
    [
        (
            dict(subset="interventional"),
            ValueError,
            r"subset='interventional' is not a subset. Valid: 'observational', 'all'",
        ),
        (dict(log_transform="yes"), TypeError, r"log_transform must be True or False"),
        (dict(seed=1.5), TypeError, r"seed must be an integer"),
    ],
)
def test_invalid_settings(settings, error, match):
    with pytest.raises(error, match=match):
        load(**settings)


def test_validation_dir_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv(_paths.ENV_VAR, raising=False)
    default = _paths.validation_dir()
    assert (default / "sachs" / "README.md").is_file()
    # The override names the validation folder itself.
    monkeypatch.setenv(_paths.ENV_VAR, str(default))
    assert _paths.validation_dir() == default
    monkeypatch.setenv(_paths.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=r"PPZOO_VALIDATION_DIR is set to .*missing.* is not a folder"):
        _paths.validation_dir()
    with pytest.raises(FileNotFoundError, match="PPZOO_VALIDATION_DIR"):
        load()


def test_validation_dir_missing_default(monkeypatch, tmp_path):
    monkeypatch.delenv(_paths.ENV_VAR, raising=False)
    # Pretend ppzoo was installed without its package data.
    monkeypatch.setattr(_paths, "__file__", str(tmp_path / "site-packages" / "ppzoo" / "data" / "_paths.py"))
    match = (
        r"shipped validation data were not found at .*site-packages/ppzoo/data/validation.*Reinstall ppzoo.*"
        r"scripts/pack_validation.py.*set the environment variable PPZOO_VALIDATION_DIR"
    )
    with pytest.raises(FileNotFoundError, match=match):
        _paths.validation_dir()
