"""Shared fixtures. ppzoo is imported first so that XLA creates one CPU device per chain."""

from __future__ import annotations

import ppzoo  # noqa: F401  (must come before anything starts JAX)

from pathlib import Path

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

PRIOR_MEAN, PRIOR_SD, NOISE_SD = 0.0, 2.0, 1.0

#: Session fixtures that fit models (below). Under pytest-xdist's ``--dist loadfile`` (scripts/test.sh) the
#: files that use them are one unit of work, so each fit is made once per run, not once per worker.
SHARED_FITS = ("conjugate_fits", "ica_fits")


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, with the files that use a shared fit as one unit. (``--dist loadgroup`` would
    be the tool, but it silently stops grouping on pytest 9.2: pytest-dev/pytest-xdist#1386.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    shared = {path.name for path in Path(__file__).parent.glob("test_*.py")
              if any(name in path.read_text() for name in SHARED_FITS)}

    class SharedFitsScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "shared-fits" if Path(scope).name in shared else scope

    return SharedFitsScheduling(config, log)


@pytest.fixture(scope="session")
def _compilation_cache_folder(tmp_path_factory):
    """A persistent compilation cache for this test process (one per pytest-xdist worker: JAX writes cache
    files without a lock, so two processes must not share a folder). It starts empty: a program compiled once
    in the run is read back wherever the run builds the same program again (the same model in another test,
    another fit's new closure). A hit still counts in CompileTimer.count and in the trace counters."""
    return tmp_path_factory.getbasetemp() / "jax-cache"


@pytest.fixture(autouse=True)
def _compilation_cache(_compilation_cache_folder):
    # Per test, because a test may point the cache elsewhere (``ppzoo run --cache-dir``).
    ppzoo.enable_compilation_cache(_compilation_cache_folder)


def conjugate_model(y=None, *, num_data: int = 20):
    """y_i ~ Normal(mu, 1), mu ~ Normal(0, 2): the posterior of mu is Normal in closed form."""
    mu = numpyro.sample("mu", dist.Normal(PRIOR_MEAN, PRIOR_SD))
    with numpyro.plate("data", num_data if y is None else len(y)):
        numpyro.sample("y", dist.Normal(mu, NOISE_SD), obs=y)


def conjugate_posterior(y: np.ndarray) -> tuple[float, float]:
    precision = 1.0 / PRIOR_SD**2 + len(y) / NOISE_SD**2
    mean = (PRIOR_MEAN / PRIOR_SD**2 + y.sum() / NOISE_SD**2) / precision
    return float(mean), float(precision**-0.5)


@pytest.fixture(scope="session")
def conjugate_data() -> np.ndarray:
    return np.random.default_rng(1).normal(1.5, NOISE_SD, size=20).astype(np.float32)


@pytest.fixture(scope="session")
def conjugate_fits(conjugate_data):
    """The conjugate model fit once per engine for the whole session."""
    data = {"y": conjugate_data}
    return {
        "nuts": ppzoo.fit(conjugate_model, data, engine="nuts", seed=0, num_warmup=500, num_samples=1000),
        "blackjax": ppzoo.fit(conjugate_model, data, engine="blackjax", seed=0, num_warmup=500, num_samples=1000),
        "svi": ppzoo.fit(conjugate_model, data, engine="svi", seed=0, steps=2000, learning_rate=0.01, num_draws=4000),
    }


@pytest.fixture(scope="session")
def ica_data():
    """The ICA case study's default setting at half its size: 3 Laplace sources seen in 4 dimensions, 1000 points."""
    return ppzoo.data.load("linear_ica", num_data=1000, num_sources=3, num_observed=4, seed=0)


@pytest.fixture(scope="session")
def ica_fits(ica_data):
    """The case study's default model and engine settings (``ppzoo run ica``) on ``ica_data``, 4 chains x 500 + 500
    and 2000 SVI steps, fit once per engine for the session (reused by the report tests)."""
    import argparse

    from ppzoo.case_studies.ica import engine_settings

    model = ppzoo.models.get("ica", num_sources=3, noise="off_span")
    args = argparse.Namespace(setting="overdetermined", num_warmup=500, num_samples=500, num_chains=4, svi_steps=2000)
    settings = engine_settings(args, ica_data.data["x"], model)
    settings["svi"]["num_draws"] = 600
    return {engine: ppzoo.fit(model, ica_data.data, engine=engine, seed=0, **settings[engine]) for engine in settings}
