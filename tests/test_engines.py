"""Engines are records in one registry: fit, SBC and reports ask the record, SBC runs each engine's own core.

A tiny engine (likelihood-weighted prior draws: importance sampling with the prior as proposal) is defined and
registered here, the way a new engine module would be, and goes through ``ppzoo.fit``, ``ppzoo.sbc`` and
``ppzoo.report`` untouched.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pytest
from numpyro import handlers
from numpyro.infer import Predictive, init_to_uniform, init_to_value
from numpyro.infer.util import log_likelihood

import ppzoo
from ppzoo import inference
from ppzoo.fit import inspect_model
from tests.conftest import conjugate_model, conjugate_posterior

Y = np.zeros(20, np.float32)


# ----------------------------------------------------------------- a new engine: what its module would hold


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImportanceOptions(inference.Options):
    """Settings of the ``"importance"`` engine: prior draws proposed, draws resampled from them."""

    num_proposals: int = 4000
    num_draws: int = 500


def importance_core(model, options, sites):
    """Likelihood weighting: ``num_proposals`` prior draws, resampled in proportion to their likelihood."""
    names = list(sites.latent) + list(sites.deterministic)

    def one_run(key, data):
        draw_key, pick_key = jax.random.split(key)
        proposals = Predictive(model, num_samples=options.num_proposals, return_sites=names)(draw_key, **data)
        loglik = log_likelihood(model, {k: proposals[k] for k in sites.latent}, **data)
        log_weight = sum(v.reshape(options.num_proposals, -1).sum(-1) for v in loglik.values())
        pick = jax.random.categorical(pick_key, log_weight, shape=(options.num_draws,))
        return {k: v[pick] for k, v in proposals.items()}

    return one_run


def importance_run(model, data, key, options, sites):
    arrays, static = inference.split_data(data)
    core = importance_core(model, options, sites)
    draws = jax.jit(lambda key, arrays: core(key, {**arrays, **static}))(key, arrays)
    return inference.EngineResult({k: np.asarray(v)[None] for k, v in draws.items()}, {}, None, None, [])


IMPORTANCE = inference.Engine(
    name="importance", options=ImportanceOptions, run=importance_run, core=importance_core, is_mcmc=False,
    learns_params=False, library="numpyro", draws_per_run=lambda options: options.num_draws,
    batch_runs="vectorized", description="importance sampling from the prior",
)


@pytest.fixture
def importance():
    inference.register(IMPORTANCE)  # the one registry line
    yield IMPORTANCE
    del inference.ENGINES["importance"]


def test_a_new_engine_fits_calibrates_and_reports(importance, conjugate_data, tmp_path):
    fit = ppzoo.fit(conjugate_model, {"y": conjugate_data}, engine="importance", seed=0, num_proposals=20_000,
                    num_draws=1000)
    mean, sd = conjugate_posterior(conjugate_data)
    draws = fit.samples["mu"]
    assert draws.shape == (1, 1000) and fit.options == {"num_proposals": 20_000, "num_draws": 1000}
    # Monte Carlo error: 1000 resampled draws of 20,000 weighted prior draws (importance ESS ~3000 > 1000), so the
    # mean's standard error is below sd * sqrt(2 / 1000) = 0.045 sd and the sd's below ~0.05 sd; 5 of each.
    assert abs(draws.mean() - mean) < 5 * sd * np.sqrt(2 / 1000)
    assert abs(draws.std() / sd - 1) < 0.25

    result = ppzoo.sbc(conjugate_model, {"y": Y}, engine="importance", num_simulations=40, seed=1,
                       num_rank_draws=50, num_proposals=4000, num_draws=200)
    assert list(result.table.index) == ["mu"] and result.ranks["mu"].shape == (40,)
    assert result.passed, result.table  # calibrated up to the 1% level of the test
    assert result.to_arviz().attrs["inference_library"] == "numpyro"

    page = ppzoo.report(fit, tmp_path / "report")
    assert "importance" in (page / "index.html").read_text()

    with pytest.raises(TypeError, match=r"Unknown option\(s\) 'steps' for engine='importance'.*num_proposals"):
        ppzoo.fit(conjugate_model, {"y": Y}, engine="importance", steps=10)


def test_registry():
    assert inference.names() == ["svi", "nuts", "blackjax", "adversarial", "pathfinder"]
    assert [inference.get(n).is_mcmc for n in inference.names()] == [False, True, True, False, False]
    assert [inference.get(n).library for n in inference.names()] == ["numpyro", "numpyro", "blackjax", "numpyro+optax",
                                                                     "blackjax"]
    with pytest.raises(ValueError, match=r"Unknown engine 'hmc'. Valid engines: 'svi', 'nuts', 'blackjax'"):
        inference.get("hmc")
    with pytest.raises(ValueError, match=r"Unknown engine 'hmc'. Valid engines: 'svi', 'nuts', 'blackjax'"):
        ppzoo.sbc(conjugate_model, {"y": Y}, engine="hmc", num_simulations=5)
    with pytest.raises(ValueError, match=r"'nuts' is already registered; pass replace=True"):
        inference.register(inference.get("nuts"))
    with pytest.raises(TypeError, match=r"register\(\) takes a ppzoo.inference.Engine"):
        inference.register(("nuts", None))
    with pytest.raises(ValueError, match=r"`batch_runs` must be 'devices' or 'vectorized'; got 'threads'"):
        dataclasses.replace(IMPORTANCE, batch_runs="threads")
    with pytest.raises(TypeError, match=r"`options` must be a subclass of ppzoo.inference.Options"):
        dataclasses.replace(IMPORTANCE, options=dict)
    assert ppzoo.inference.SVIExtension is ppzoo.extensions.SVIExtension


# --------------------------------------------------------- SBC runs fit's own program with fit's options


CHEAP = {
    "nuts": dict(num_warmup=40, num_samples=30, init_strategy=init_to_value(values={"mu": 2.5})),
    "blackjax": dict(num_warmup=40, num_samples=30, init_strategy=init_to_value(values={"mu": 2.5})),
    "svi": dict(steps=100, chunk_size=50, num_draws=30, optimizer=optax.sgd(1e-3, momentum=0.5)),
}


@pytest.mark.parametrize("engine", ["nuts", "blackjax", "svi"])
def test_core_is_the_program_fit_runs(engine, conjugate_data):
    """Same key, same options (a non-default init_strategy / optimizer): the core SBC maps over simulations
    draws what the engine's run draws, to float32 rounding (the programs differ only in XLA's fusion)."""
    record = inference.get(engine)
    data = {"y": conjugate_data}
    sites = inspect_model(conjugate_model, data)
    key = jax.random.key(7)
    num_chains = {"nuts": 1, "blackjax": 2, "svi": None}[engine]
    options = record.options(**CHEAP[engine], **({"num_chains": num_chains} if num_chains else {}))
    run = record.run(conjugate_model, data, key, options, sites).samples["mu"]
    # BlackJAX's chain i runs the core with split(key, num_chains)[i]; NUTS's one chain and SVI use the key.
    core_key = jax.random.split(key, 2)[1] if engine == "blackjax" else key
    core = jax.jit(record.core(conjugate_model, options, sites))(core_key, {"y": jnp.asarray(conjugate_data)})
    assert core["mu"].shape == (30,)
    np.testing.assert_allclose(np.asarray(core["mu"]), run[1 if engine == "blackjax" else 0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("engine", ["nuts", "blackjax"])
def test_sbc_init_strategy_reaches_the_mcmc_core(engine):
    calls = []

    def record(site=None):
        if site is None:
            return spy
        calls.append(site["name"])
        return init_to_uniform(site)

    spy = functools.partial(record)  # NumPyro takes init strategies as partials

    ppzoo.sbc(conjugate_model, {"y": Y}, engine=engine, num_simulations=4, num_rank_draws=5, num_warmup=5,
              num_samples=10, init_strategy=spy)
    assert "mu" in calls


@pytest.mark.slow
def test_sbc_optimizer_reaches_svi():
    """An optimizer that never moves the guide leaves SBC's draws at the initial guide: calibration fails
    (p < 1e-6), where Adam's fit of the same guide passes. The old SBC ignored `optimizer`."""
    # From NumPyro's initial guide for a fixed number of steps (init="laplace" would start this conjugate
    # model at its exact posterior, which no optimizer needs to move).
    common = dict(engine="svi", num_simulations=50, seed=2, num_rank_draws=50, steps=300, num_draws=100,
                  learning_rate=0.05, init="prior", stop="max_steps")
    adam = ppzoo.sbc(conjugate_model, {"y": Y}, **common)
    frozen = ppzoo.sbc(conjugate_model, {"y": Y}, **common, optimizer=optax.set_to_zero())
    assert adam.passed, adam.table
    assert frozen.table.loc["mu", "p_value"] < 1e-6, frozen.table


@pytest.mark.parametrize(("engine", "sizes"), [("nuts", (4, 12)), ("svi", (10, 120))])
def test_sbc_compiles_once_across_simulations(engine, sizes):
    """More simulations, no more traces of the model: NUTS runs 1 vs 3 groups of 4 devices, SVI 1 vs 3 groups of
    vectorized runs (50, 50 and 20 padded to 50), each group through the same compiled program. (Counting the
    model's traces rather than XLA compiles: small eager operations compile once per process, so their count
    depends on what ran before.)"""
    traces = []

    def counted(y=None, *, num_data=20):
        traces.append(1)
        conjugate_model(y, num_data=num_data)

    options = {"nuts": dict(num_warmup=10, num_samples=10), "svi": dict(steps=20, num_draws=10)}[engine]
    counts = {}
    for n in sizes:
        traces.clear()
        ppzoo.sbc(counted, {"y": Y}, engine=engine, num_simulations=n, seed=3, num_rank_draws=5, **options)
        counts[n] = len(traces)
    assert counts[sizes[1]] == counts[sizes[0]], counts


# ----------------------------------------------------------------------------------- buffer donation


def test_mlp_initial_weights_survive_a_donating_update():
    """``ppzoo.nn.mlp`` hands NumPyro copies of its cached weights: a user's own donating update of the
    params deletes the copies, not the cache, so the next model run still starts from the same weights."""

    def model():
        numpyro.deterministic("out", ppzoo.nn.mlp("net", 2, (3,), seed=11)(jnp.ones((1, 2))))

    def initial_params():
        return handlers.trace(handlers.seed(model, 0)).get_trace()["net$params"]["value"]

    first = initial_params()
    expected = jax.tree.map(np.asarray, first)
    jax.jit(lambda params: jax.tree.map(lambda a: 2 * a, params), donate_argnums=0)(first)
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(first))  # donation did delete what it was given
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, initial_params()), expected)


def test_posterior_engines_leave_out_the_adversarial_engine():
    # `ppzoo check` runs posterior checks and SBC on every engine by default: only engines whose draws stand
    # for a posterior (the adversarial engine fits a generator).
    assert "adversarial" in inference.names() and "adversarial" not in inference.names(posterior=True)
    assert {"svi", "nuts", "blackjax", "pathfinder"} <= set(inference.names(posterior=True))
