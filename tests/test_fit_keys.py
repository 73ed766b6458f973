"""A fit's random keys by name, its frozen record and its DataTree built once (programs compiled once per fit)."""

from __future__ import annotations

import contextlib
import dataclasses

import jax
import numpy as np
import pytest

import ppzoo
from ppzoo.arviz import fit_to_datatree
from ppzoo.fit import FitKeys
from tests.conftest import conjugate_model


def _key_bits(key: jax.Array) -> tuple[int, ...]:
    return tuple(int(v) for v in np.ravel(jax.random.key_data(key)))


def _resplits(key: jax.Array, width: int = 64, depth2: int = 16) -> set[tuple[int, ...]]:
    """Every key an engine can make from ``key`` by splitting it once or twice (threefry split is fold-like:
    ``split(k, n)[i] == split(k, m)[i]``, so the first ``width`` indices cover every ``split(k, n)`` with
    ``n <= width``)."""
    first = jax.random.split(key, width)
    out = {_key_bits(key)} | {_key_bits(k) for k in first}
    for k in first[:depth2]:
        out |= {_key_bits(kk) for kk in jax.random.split(k, depth2)}
    return out


def test_resplits_catch_the_old_posterior_predictive_key():
    # The detector used below can fail: the key ppzoo used before the streams were named, split(engine, 2)[0],
    # is chain 0's key of a 4-chain run (split(engine, 4)[0]) and is found among the engine's re-splits.
    engine = jax.random.split(jax.random.key(0))[1]
    old_predictive, _ = jax.random.split(engine)
    assert _key_bits(old_predictive) == _key_bits(jax.random.split(engine, 4)[0])
    assert _key_bits(old_predictive) in _resplits(engine)


@pytest.mark.parametrize("engine", ["nuts", "blackjax", "svi"])
def test_predictive_and_prior_keys_are_not_engine_streams(conjugate_fits, engine):
    fit = conjugate_fits[engine]
    keys = fit.keys
    assert isinstance(keys, FitKeys)
    # One split of the seed's key by name; the engine's key is the one ppzoo.fit used before the names, so a
    # seed gives the same draws as before.
    seed_key = jax.random.key(fit.seed)
    assert [_key_bits(k) for k in keys] == [_key_bits(k) for k in jax.random.split(seed_key, 4)]
    assert _key_bits(keys.engine) == _key_bits(jax.random.split(seed_key)[1])
    # No stream the engine draws from (its chains, its init, its guide draws: re-splits of its key) is the
    # posterior-predictive or the prior key, and those two differ.
    engine_streams = _resplits(keys.engine)
    assert _key_bits(keys.predictive) not in engine_streams
    assert _key_bits(keys.prior) not in engine_streams
    assert _key_bits(keys.predictive) != _key_bits(keys.prior)


def test_posterior_predictive_noise_is_independent_of_the_draws(conjugate_fits):
    # y_rep - mu is the predictive's own noise: N(0, 1) per element, independent of the chain's draw of mu when
    # the streams are separate. Its per-draw mean over the 20 data points, correlated with chain 0's mu draws:
    # with n kept draws of chain 0, r has sd 1/sqrt(n); |r| < 4/sqrt(n) fails by chance with probability 6e-5.
    tree = conjugate_fits["nuts"].to_arviz()
    rep = tree["posterior_predictive"]["y"].isel(chain=0)
    mu = tree["posterior"]["mu"].isel(chain=0).sel(draw=rep["draw"])
    noise = (rep - mu).mean("data").values
    n = noise.size
    r = np.corrcoef(noise, mu.values)[0, 1]
    assert abs(r) < 4 / np.sqrt(n), (r, n)
    # ... and the noise is the likelihood's: mean 0 and sd 1/sqrt(20) per draw, within 4 standard errors.
    assert abs(noise.mean()) < 4 * (1 / np.sqrt(20)) / np.sqrt(n)
    assert abs(noise.std() * np.sqrt(20) - 1) < 4 / np.sqrt(2 * n)


def test_fit_is_frozen(conjugate_fits):
    fit = conjugate_fits["nuts"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.samples = {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.keys = None
    # dataclasses.replace makes a new fit with its own (empty) tree cache and the same keys.
    other = dataclasses.replace(fit, notes=["copy"])
    assert other.keys is fit.keys and other.notes == ["copy"] and fit.notes == []
    assert fit == fit and other != fit  # identity: draws are arrays, not compared


@contextlib.contextmanager
def _traces():
    """Counts JAX traces (``jaxpr_trace_duration`` events): each new or retraced program is one, whether or not
    a persistent compilation cache then spares its compile."""
    counted = {"traces": 0}

    def listener(event: str, duration: float, **_: object) -> None:
        counted["traces"] += event == "/jax/core/compile/jaxpr_trace_duration"

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counted
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_datatree_built_once_and_programs_compiled_once(conjugate_data, tmp_path):
    # A fit of its own (data length 17: no program shared with another test's fit).
    fit = ppzoo.fit(conjugate_model, {"y": conjugate_data[:17]}, engine="nuts", seed=3, num_warmup=100,
                    num_samples=100, num_chains=2)
    with _traces() as first:
        tree = fit.to_arviz()
    # The first tree traces the log-likelihood, the posterior predictive and the prior program: the counter
    # sees them (so the zero below is not a counter that never counts).
    assert first["traces"] >= 3, first
    with _traces() as later:
        again = fit.to_arviz()
        assert again is tree and fit.datatree is tree
        rebuilt = fit_to_datatree(fit)  # a new tree from the same fit: the programs are reused, not retraced
        ppzoo.report(fit, tmp_path / "report")
    assert later["traces"] == 0, later
    assert rebuilt is not tree
    np.testing.assert_array_equal(rebuilt["posterior_predictive"]["y"], tree["posterior_predictive"]["y"])
    # Another prior size has another shape: only the prior program compiles again.
    with _traces() as other:
        small = fit.to_arviz(prior_draws=50)
    assert other["traces"] == 1 and small["prior"].sizes["draw"] == 50
