"""What a report page and its files show: dimension names, compressed DataTrees, settings, one prior figure."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import arviz_base
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
import xarray as xr
from conftest import conjugate_model
from numpyro.infer import autoguide

import ppzoo
from ppzoo.arviz import MAX_STORED_VALUES, STORED_STATS, write_datatree
from ppzoo.checks import zero_based
from ppzoo.fit import inspect_model

report_module = importlib.import_module("ppzoo.report")  # the attribute ppzoo.report is the function


def _plate_model(x=None):
    mu = numpyro.sample("mu", dist.Normal())
    with numpyro.plate("data", 5):
        z = numpyro.sample("z", dist.Normal(jnp.zeros(3)).to_event(1))
        numpyro.deterministic("a", mu * jnp.ones(5))  # (N,) in the plate
        numpyro.deterministic("z2", 2 * z)  # (N, K): the plate is the first axis, K an event axis
        numpyro.deterministic("zt", z.T)  # (K, N): the plate really is the last axis
        numpyro.sample("x", dist.Normal(mu + z.sum(-1), 1.0), obs=x)
    with numpyro.plate("rows", 4, dim=-2):
        numpyro.deterministic("w", jnp.zeros((4, 1)))


def test_dims_of_deterministic_sites_in_a_plate():
    dims = inspect_model(_plate_model, {"x": np.ones(5)}).dims
    assert dims["a"] == ["data"]
    assert dims["z"] == ["data", "z_dim_1"]
    assert dims["z2"] == ["data", "z2_dim_1"]  # was (z2_dim_0, data): transposed against the values
    assert dims["zt"] == ["zt_dim_0", "data"]
    assert dims["w"] == ["rows", "w_dim_1"]


def _tree(num_data: int = 600, chains: int = 2, draws: int = 100):
    rng = np.random.default_rng(0)
    return arviz_base.from_dict(
        {
            "posterior": {"mu": rng.normal(size=(chains, draws)).astype(np.float32),
                          "z": rng.normal(size=(chains, draws, num_data, 2)).astype(np.float32)},
            "observed_data": {"x": rng.integers(0, 2, size=(num_data, 3)).astype(np.int32)},
            "posterior_predictive": {"x": rng.integers(0, 2, size=(chains, 10, num_data, 3)).astype(np.int32)},
        },
        dims={"z": ["data", "z_dim_1"], "x": ["data", "x_dim_1"]},
    )


def test_write_datatree_compresses_keeps_types_and_round_trips(tmp_path):
    tree = _tree()
    tree.to_netcdf(tmp_path / "plain.nc", engine="h5netcdf")
    assert write_datatree(tree, tmp_path / "all.nc", store_draws="all") == {}
    # Random float draws hardly compress; the int32 0/1 draws shrink 4x as uint8 and compress well.
    assert (tmp_path / "all.nc").stat().st_size < 0.9 * (tmp_path / "plain.nc").stat().st_size
    back = xr.open_datatree(tmp_path / "all.nc", engine="h5netcdf")
    for group in tree.children:
        for name in tree[group].data_vars:
            np.testing.assert_array_equal(back[group][name].values, tree[group][name].values)
    assert back["posterior"]["z"].dtype == np.float32  # float32 stays float32
    assert back["posterior_predictive"]["x"].dtype == np.uint8  # 0/1 pixel draws in one byte
    assert back["posterior"]["z"].dims == ("chain", "draw", "data", "z_dim_1")


def test_large_local_variables_are_stored_as_summaries_unless_asked(tmp_path):
    tree = _tree()
    assert tree["posterior"]["z"].size > MAX_STORED_VALUES > tree["posterior_predictive"]["x"].size
    summarised = write_datatree(tree, tmp_path / "summary.nc")
    assert summarised == {"posterior": ["z"]}
    back = xr.open_datatree(tmp_path / "summary.nc", engine="h5netcdf")
    assert "z" not in back["posterior"] and "mu" in back["posterior"]  # global draws kept
    summary = back["posterior_summary"]["z"]
    assert list(summary["stat"].values) == list(STORED_STATS)
    assert summary.dims == ("stat", "data", "z_dim_1")
    np.testing.assert_allclose(summary.sel(stat="mean").values, tree["posterior"]["z"].mean(("chain", "draw")).values,
                               atol=1e-5)
    assert (tmp_path / "summary.nc").stat().st_size < 0.2 * tree["posterior"]["z"].nbytes
    with pytest.raises(ValueError, match="`store_draws` must be 'summary'"):
        write_datatree(tree, tmp_path / "bad.nc", store_draws="some")


def test_settings_show_what_ran():
    own = SimpleNamespace(engine="svi", model=ppzoo.models.get("ica"), model_name="ica",
                          options={"steps": 10, "learning_rate": 0.01, "guide": None, "optimizer": None})
    text = report_module._settings_text(own)
    assert "guide=the model's own guide (ica)" in text and "optimizer=adam(0.01)" in text
    guide = autoguide.AutoMultivariateNormal(conjugate_model)
    plain = SimpleNamespace(engine="svi", model=conjugate_model, model_name="conjugate_model",
                            options={"guide": repr(guide), "learning_rate": 0.01, "optimizer": None})
    text = report_module._settings_text(plain)
    assert "guide=AutoMultivariateNormal" in text and "object at 0x" not in text
    default = SimpleNamespace(engine="svi", model=conjugate_model, model_name="m", options={"guide": None})
    assert report_module._settings_text(default) == "guide=auto_normal (default)"
    import optax

    chained = SimpleNamespace(engine="svi", model=conjugate_model, model_name="m",
                              options={"guide": None, "optimizer": optax.chain(optax.clip(1.0), optax.adam(1e-3))})
    text = report_module._settings_text(chained)
    assert "optimizer=optax GradientTransformation" in text and " at 0x" not in text, text


def test_config_left_to_the_data_is_shown_with_the_shapes_that_ran():
    model = ppzoo.models.get("ica")
    data = ppzoo.data.load("linear_ica", num_data=50, num_sources=3, seed=0).data
    fit = SimpleNamespace(model=model, sites=inspect_model(model, data))
    text = report_module._config_text(fit)
    assert "num_sources=None" in text and "take their value from the data" in text
    assert "z (50, 3) (latent; dims data, z_dim_1)" in text


def test_data_info_numbers_are_rounded():
    text = report_module._intro(SimpleNamespace(model=conjugate_model, model_name="m"),
                                {"condition_number": 2.7182818284590451})
    assert "condition_number=2.718" in text and "2.71828" not in text


def test_stan_names_are_shown_zero_based():
    assert zero_based("theta[1]") == "theta[0]"
    assert zero_based("L[2,3]") == "L[1, 2]"
    assert zero_based("tau") == "tau"


@pytest.mark.slow
def test_one_prior_predictive_figure_per_page_and_tables_named_by_fit(conjugate_fits, tmp_path):
    fits = {"nuts": conjugate_fits["nuts"], "svi": conjugate_fits["svi"]}
    out = ppzoo.report(fits, tmp_path / "r", truth={"mu": 1.5})
    page = (out / "index.html").read_text()
    assert page.count("<figcaption>nuts: prior predictive check") == 1
    assert "svi: prior predictive check" not in page.split("<figcaption>", 1)[1]
    assert "the same for svi: the prior does not depend on the engine" in page
    assert "nuts: Posterior predictive test statistics" in page and "svi: Posterior predictive test statistics" in page
    assert "true values: black diamonds (mu)" in page
    assert "Files</b>" in page and "every draw of every variable" in page
