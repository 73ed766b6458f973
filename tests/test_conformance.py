"""Conformance of every zoo model: each name in ``ppzoo.models.names()`` at its smallest documented instance.

Driven by the registry alone: a model added to ``REGISTRY`` with its site table (``SITES``) and smallest
instance (``SMALLEST``, an :class:`ppzoo.models.Example`) is checked here without a line of this file changing.

(a) The prior predictive (NumPyro's ``Predictive``, no data) runs and its draws have the documented shapes.
(b) The documented site table matches a trace of the model on the example's data: every site of the trace is
    in the table with its kind and shape, every unconditional row is in the trace, the documented sites of the
    model's own guide are in the guide's trace, and the module docstring shows the table as rendered.
(c) One SVI step through ``ppzoo.fit`` gives a finite loss and finite draws.
(d) A model without learnable parameters gets a short NUTS run through ``ppzoo.fit`` with finite draws.
(e) Bad config fields (unknown, wrong type, non-positive size) are refused by name before anything compiles.

Cost: (b) and (e) compile nothing (the traces run under ``jax.eval_shape``); (a) compiles the forward program
once, (c) the SVI step and the guide's draws, (d) one NUTS chain; no model is compiled twice for one check.
Measured on 2 cores (2026-12-07, shared with other jobs): ~155 s of CPU in all, of which the SVI steps ~81 s
(3-11 s a model, most of it compiling the step and the guide's draws), the six NUTS runs ~37 s, the prior
predictives ~33 s and everything else ~3 s.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import typing

import jax
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import Predictive

import ppzoo
from ppzoo.models import Site, expand_sites, site_shape, site_table

NAMES = ppzoo.models.names()


def smallest(name: str):
    """The zoo model ``name`` at its documented smallest config, and that :class:`~ppzoo.models.Example`."""
    example = ppzoo.models.get(name).example
    assert example is not None, f"zoo model {name!r} documents no smallest instance (ZooModel.example)"
    return ppzoo.models.get(name, **example.config), example


def kind_of(site: dict) -> str:
    """A trace entry's kind in the site table's words."""
    if site["type"] == "sample":
        if not site["is_observed"]:
            return "latent"
        return "factor" if isinstance(site["fn"], dist.Unit) else "observed"
    return site["type"]  # "deterministic" or "param"


def traced_sites(program, arguments) -> dict[str, tuple[str, tuple[int, ...] | None]]:
    """``name -> (kind, shape)`` of every site of one run of ``program(**arguments)``, without compiling it.

    The run is traced by ``jax.eval_shape``, which only follows shapes. A factor's shape is that of its log
    density term; network weights (a pytree) have shape ``None``.
    """
    found: dict[str, tuple[str, tuple[int, ...] | None]] = {}

    def run(key):
        trace = handlers.trace(handlers.seed(program, key)).get_trace(**arguments)
        for name, site in trace.items():
            if site["type"] not in ("sample", "deterministic", "param"):
                continue
            kind = kind_of(site)
            if kind == "factor":
                shape = tuple(site["fn"].batch_shape)
            elif isinstance(site["value"], dict):
                shape = None
            else:
                shape = tuple(np.shape(site["value"]))
            found[name] = (kind, shape)
        return 0

    jax.eval_shape(run, jax.random.key(0))
    return found


def rows_for(model, programs: tuple[str, ...]) -> list[Site]:
    return [site for site in expand_sites(model.sites, model.config) if site.program in programs]


# ------------------------------------------------------------------------------------------------ (a)


@pytest.mark.parametrize("name", NAMES)
def test_prior_predictive_runs_with_documented_shapes(name):
    model, example = smallest(name)
    draws = jax.jit(lambda key: Predictive(model, num_samples=2)(key, **example.generate))(jax.random.key(0))
    documented = {}
    for site in rows_for(model, ("model", "both")):
        documented.setdefault(site.name, []).append(site)
    assert draws, f"{name}: the prior predictive returned no draws"
    for site_name, value in draws.items():
        assert site_name in documented, f"{name}: prior predictive site {site_name!r} is not in the site table"
        rows = [row for row in documented[site_name] if row.kind != "factor"]
        if not rows:
            continue  # a factor's "draw" is an empty placeholder, not a value
        expected = {(2, *site_shape(row, example.sizes)) for row in rows}
        assert value.shape in expected, f"{name}: {site_name!r} drawn with shape {value.shape}; documented {expected}"
        assert np.all(np.isfinite(value)), f"{name}: prior predictive draws of {site_name!r} are not finite"


# ------------------------------------------------------------------------------------------------ (b)


@pytest.mark.parametrize("name", NAMES)
def test_site_table_matches_the_trace(name):
    model, example = smallest(name)
    rows = rows_for(model, ("model", "both"))
    trace = traced_sites(model, example.data)
    for site_name, (kind, shape) in trace.items():
        candidates = [row for row in rows if row.name == site_name]
        assert candidates, f"{name}: site {site_name!r} ({kind}) is missing from the site table"
        documented = {(row.kind, site_shape(row, example.sizes)) for row in candidates}
        assert (kind, shape) in documented, f"{name}: site {site_name!r} is ({kind}, {shape}); the table says {documented}"
    required = {row.name for row in rows if not row.when}
    assert required <= set(trace), f"{name}: documented sites not in the trace: {sorted(required - set(trace))}"


@pytest.mark.parametrize("name", NAMES)
def test_guide_sites_are_as_documented(name):
    model, example = smallest(name)
    rows = rows_for(model, ("guide", "both"))
    guide = model.make_guide()
    if guide is None:
        assert not rows, f"{name}: the table documents guide sites but the model has no guide of its own"
        return
    trace = traced_sites(guide, example.data)
    for row in rows:
        if row.name in trace:
            assert trace[row.name] == (row.kind, site_shape(row, example.sizes)), f"{name}: guide site {row.name!r}"
        else:
            assert row.when, f"{name}: documented guide site {row.name!r} is not in the guide's trace"


@pytest.mark.parametrize("name", NAMES)
def test_docstring_shows_the_site_table(name):
    model, _ = smallest(name)
    assert model.sites, f"{name}: no site table (ZooModel.sites)"
    docstring = sys.modules[model.model.__module__].__doc__
    assert site_table(model.sites) in docstring, (
        f"{name}: the docstring of {model.model.__module__} does not show site_table(SITES); re-render it"
    )


def test_site_table_renders_and_resolves_shapes():
    # The helpers the checks above rely on, on a hand-made table.
    sites = (Site("w", ("D", "K"), "latent"), Site("<node>", ("N",), "observed", each="nodes"),
             Site("z", ("N", "d*k"), "deterministic"), Site("x", ("N", "*image"), "observed"), Site("net", None, "param"))
    config = type("Config", (), {"nodes": ("a", "b")})()
    assert [s.name for s in expand_sites(sites, config)] == ["w", "a", "b", "z", "x", "net"]
    sizes = {"N": 4, "D": 3, "K": 2, "d": 2, "k": 3, "image": (5, 6)}
    assert [site_shape(s, sizes) for s in sites] == [(3, 2), (4,), (4, 6), (4, 5, 6), None]
    lines = site_table(sites).splitlines()
    assert lines[0] == lines[2] == lines[-1] and set(lines[0]) == {"=", " "}
    assert lines[1].split() == ["name", "shape", "support", "role"] and "``(N, d*k)``" in lines[5]


# ------------------------------------------------------------------------------------------------ (c), (d)


def has_learnable_params(model) -> bool:
    return any(row.kind == "param" for row in rows_for(model, ("model", "both")))


@pytest.mark.parametrize("name", NAMES)
def test_one_svi_step(name):
    model, example = smallest(name)
    # The program under one SVI step, nothing else: no Laplace start and no PSIS diagnostic, which compile
    # the model's density again (on the ODE models ~17 s of the ~30 s); both are tested on their own
    # (test_svi_convergence, test_psis) and on an ODE model by test_ode's default SVI fit.
    fit = ppzoo.fit(model, dict(example.data), engine="svi", seed=0, steps=1, num_draws=1, init="prior",
                    psis_draws=0)
    assert fit.losses.shape == (1,) and np.isfinite(fit.losses).all(), f"{name}: SVI loss {fit.losses}"
    for site_name, draws in fit.samples.items():
        assert np.all(np.isfinite(draws)), f"{name}: SVI draws of {site_name!r} are not finite"


# 20 warmup steps do not tune a step size: divergences are expected in this smoke run and are not its subject.
@pytest.mark.filterwarnings(r"ignore:ppzoo\.fit\('nuts'\). \d+ divergent transitions:UserWarning")
@pytest.mark.parametrize("name", [n for n in NAMES if not has_learnable_params(smallest(n)[0])])
def test_short_nuts_run(name):
    model, example = smallest(name)
    fit = ppzoo.fit(model, dict(example.data), engine="nuts", seed=0, num_warmup=20, num_samples=20, num_chains=1)
    assert fit.samples, f"{name}: NUTS returned no draws"
    for site_name, draws in fit.samples.items():
        assert draws.shape[:2] == (1, 20), f"{name}: {site_name!r} has shape {draws.shape}"
        assert np.all(np.isfinite(draws)), f"{name}: NUTS draws of {site_name!r} are not finite"


# ------------------------------------------------------------------------------------------------ (e)


@pytest.fixture
def no_compiles(caplog):
    """Fails the test if JAX compiles anything inside it (``jax.log_compiles`` logs each compile)."""
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        yield
    compiled = [r.getMessage() for r in caplog.get_records("call") if "Compiling" in r.getMessage()]
    assert not compiled, f"compiled while checking a config: {compiled[:3]}"


def config_fields(name: str) -> list[tuple[str, typing.Any]]:
    config_class = ppzoo.models.get(name).config_class
    hints = typing.get_type_hints(config_class)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(config_class)]


@pytest.mark.parametrize("name", NAMES)
def test_unknown_config_field_is_named(name, no_compiles):
    with pytest.raises(TypeError, match=r"'not_a_field'.*Valid fields"):
        ppzoo.models.get(name, not_a_field=1)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_type_is_refused_by_name(name, no_compiles):
    # Text where no field takes free text, and None where the annotation does not allow it.
    for field, hint in config_fields(name):
        bad_values = ["not-a-value"] + ([] if type(None) in typing.get_args(hint) else [None])
        for bad in bad_values:
            with pytest.raises((TypeError, ValueError), match=field):
                ppzoo.models.get(name, **{field: bad})


@pytest.mark.parametrize("name", NAMES)
def test_non_positive_size_is_refused_by_name(name, no_compiles):
    _, example = smallest(name)
    fields = dict(config_fields(name))
    for field in example.size_fields:
        assert field in fields and "int" in str(fields[field]), f"{name}: {field!r} is not an integer config field"
        for bad in (0, -1):
            with pytest.raises(ValueError, match=field):
                ppzoo.models.get(name, **{**example.config, field: bad})
        with pytest.raises((TypeError, ValueError), match=field):
            ppzoo.models.get(name, **{**example.config, field: 1.5})
