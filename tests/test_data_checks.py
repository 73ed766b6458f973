"""Bad data is refused before anything compiles, naming the key, the site, what was expected and the fix.

The cases come from a new user's report (issue 14): ``y`` of shape ``(150, 1)`` for a site of shape
``(150,)`` fit silently to a wrong posterior; a ``y`` one element short, a list of strings and negative
Poisson counts ended in tracebacks that named no site. Well-formed models (with and without plates,
``.to_event``, vector observations, masks, factors) must still pass: those tests call
:func:`ppzoo.fit.validate_data` directly, so nothing is fit.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.distributions import constraints

import ppzoo
from ppzoo._runtime import CompileTimer
from ppzoo.fit import check_data, validate_data
from ppzoo.inference import ENGINES

ENGINE_NAMES = ["nuts", "blackjax", "svi"]
CHEAP = {"nuts": dict(num_warmup=5, num_samples=5, num_chains=1),
         "blackjax": dict(num_warmup=5, num_samples=5, num_chains=1),
         "svi": dict(steps=5, num_draws=5)}
N = 150


def regression(x, y=None):
    """The user's model: a straight line with its datum plate of fixed size."""
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 1.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("data", N):
        numpyro.sample("y", dist.Normal(alpha + beta * x, sigma), obs=y)


def regression_sized_by_y(x, y=None):
    """The plate takes its size from y when given (as tests/conftest.py's model does)."""
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 1.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", len(x) if y is None else len(y)):
        numpyro.sample("y", dist.Normal(alpha + beta * x, 1.0), obs=y)


def regression_without_plate(x, y=None):
    alpha = numpyro.sample("alpha", dist.Normal(0.0, 1.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(alpha + beta * x, 1.0), obs=y)


def counts(y=None):
    rate = numpyro.sample("rate", dist.LogNormal(0.0, 1.0))
    with numpyro.plate("data", len(y)):
        numpyro.sample("y", dist.Poisson(rate), obs=y)


def labels(y=None):
    p = numpyro.sample("p", dist.Beta(1.0, 1.0))
    with numpyro.plate("data", len(y)):
        numpyro.sample("y", dist.Bernoulli(probs=p), obs=y)


@pytest.fixture(scope="module")
def xy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=N).astype(np.float32)
    return x, (0.7 * x + 0.1 * rng.normal(size=N)).astype(np.float32)


@pytest.fixture
def no_engine(monkeypatch):
    """Replace every engine's runner by one that fails the test: the error must come before any engine runs."""

    def never(*args, **kwargs):
        raise AssertionError("an engine ran: the data check came too late")

    for name, engine in list(ENGINES.items()):
        monkeypatch.setitem(ENGINES, name, dataclasses.replace(engine, run=never, core=never))


def _fit(model, data, engine):
    return ppzoo.fit(model, data, engine=engine, **CHEAP[engine])


# ---------------------------------------------------------------- shapes


COLUMN = r"data\['y'\] has shape \(150, 1\) but site 'y' has shape \(150,\).*plate 'data'.*broadcast them to \(150, 150\)"


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_column_vector_is_refused_before_compiling(xy, no_engine, engine):
    # `no_engine` proves that no engine runs. The one eager run of the model compiles JAX's single-operation
    # kernels (cached after the first call), never the model's program: a second call compiles nothing.
    x, y = xy
    data = {"x": x, "y": y[:, None]}
    with pytest.raises(ValueError, match=COLUMN + r".*y\.ravel\(\).*\.to_event\(1\)"):
        _fit(regression, data, engine)
    timer = CompileTimer()
    with timer.measure(), pytest.raises(ValueError, match=COLUMN):
        _fit(regression, data, engine)
    assert timer.count == 0


def test_column_vector_without_plate_is_refused(xy):
    # No plate, but the location is a vector: (150, 1) against (150,) would still broadcast to (150, 150).
    x, y = xy
    with pytest.raises(ValueError, match=r"shape \(150, 1\) but site 'y' has shape \(150,\).*in no plate.*\(150, 150\)"):
        validate_data(regression_without_plate, {"x": x, "y": y[:, None]})


def test_leading_singleton_axis_is_refused(xy):
    x, y = xy
    with pytest.raises(ValueError, match=r"shape \(1, 150\).*differ by axes of length 1.*y\.reshape\(\(150,\)\)"):
        validate_data(regression, {"x": x, "y": y[None, :]})
    with pytest.raises(ValueError, match=r"shape \(1, 150\).*differ by axes of length 1"):
        validate_data(regression_without_plate, {"x": x, "y": y[None, :]})


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_one_element_short_names_site_and_lengths(xy, no_engine, engine):
    x, y = xy
    with pytest.raises(ValueError, match=r"data\['y'\] has the wrong length: 149 along axis 0 where plate 'data' "
                                         r"has size 150.*Other data arrays: x \(150,\)"):
        _fit(regression, {"x": x, "y": y[:-1]}, engine)


def test_one_element_short_when_the_plate_is_sized_by_y(xy, no_engine):
    # Here the run with the data itself fails inside NumPyro (plate 149 against a location of 150); the
    # model run without y simulates y with 150 values, which names the culprit.
    x, y = xy
    with pytest.raises(ValueError, match=r"data\['y'\] has shape \(149,\) but the model, run without it, simulates "
                                         r"site 'y' with shape \(150,\).*plate 'data'"):
        ppzoo.fit(regression_sized_by_y, {"x": x, "y": y[:-1]}, engine="nuts")


def test_covariate_short_lists_leading_lengths(xy, no_engine):
    # x is short: the model fails with or without y, so the message lists the leading lengths.
    x, y = xy
    with pytest.raises(ValueError, match=r"differ in leading length \(number of data points\): x: 149, y: 150"):
        ppzoo.fit(regression, {"x": x[:-1], "y": y}, engine="svi")


def test_other_model_failures_keep_their_message_and_show_shapes(xy):
    def broken(x, y=None):
        numpyro.sample("a", dist.Normal(0.0, 1.0))
        raise ValueError("boom")

    x, y = xy
    with pytest.raises(ValueError, match=r"Running the model once on the given data failed: boom \(data shapes: x \(150,\), y \(150,\)\)"):
        validate_data(broken, {"x": x, "y": y})


def test_extra_axes_inside_a_plate_are_refused(xy):
    x, y = xy
    with pytest.raises(ValueError, match=r"shape \(3, 150\).*axes that no plate or event dimension.*numpyro\.plate"):
        validate_data(regression, {"x": x, "y": np.stack([y, y, y])})


def test_data_repeated_to_fill_the_site_is_refused(xy):
    def grouped(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        with numpyro.plate("group", 2, dim=-2), numpyro.plate("data", N):
            numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(ValueError, match=r"shape \(150,\) but site 'y' has shape \(2, 150\).*repeat the data"):
        validate_data(grouped, {"y": xy[1]})


def test_shapes_that_cannot_broadcast_are_refused(xy):
    x, y = xy
    with pytest.raises(ValueError, match=r"data\['y'\] has shape \(149, 2\), which does not fit: site 'y' has shape \(150,\)"):
        validate_data(regression, {"x": x, "y": np.zeros((149, 2), np.float32)})


# ---------------------------------------------------------------- non-numeric data


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_list_of_strings_is_refused(xy, no_engine, engine):
    x, y = xy
    with pytest.raises(TypeError, match=r"data\['y'\] is a list of str \(e\.g\. '0\.\d+'\).*np\.asarray\(data\['y'\], dtype=float\)"):
        _fit(regression, {"x": x, "y": [str(v) for v in y]}, engine)


def test_string_and_object_arrays_are_refused(xy):
    x, y = xy
    with pytest.raises(TypeError, match=r"data\['y'\] is an array of text \(dtype <U\d+\).*np\.unique"):
        validate_data(regression, {"x": x, "y": y.astype(str)})
    with pytest.raises(TypeError, match=r"data\['x'\] is an array of dtype object \(e\.g\. holding None\)"):
        validate_data(regression, {"x": np.array([1.0, None] * 75, dtype=object), "y": y})
    with pytest.raises(TypeError, match=r"data\['y'\] is a tuple of str"):
        validate_data(regression, {"x": x, "y": ("a", "b")})


def test_missing_values_and_ragged_lists_are_refused(xy):
    x, _ = xy
    with pytest.raises(ValueError, match=r"data\['y'\] holds 1 None value\(s\).*obs_mask="):
        validate_data(regression, {"x": x, "y": [0.5] * 149 + [None]})
    with pytest.raises(ValueError, match=r"data\['y'\] is a ragged nested list"):
        validate_data(regression, {"x": x, "y": [[1.0, 2.0], [3.0]]})


def test_lists_of_numbers_are_still_accepted(xy):
    x, y = xy
    sites = validate_data(regression, {"x": x.tolist(), "y": y.tolist()})
    assert sites.observed == ["y"] and sites.values["y"].shape == (N,)
    nested = validate_data(regression_without_plate, {"x": 1.0, "y": [[0.1, 0.2], [0.3, 0.4]]})
    assert nested.values["y"].shape == (2, 2)


# ---------------------------------------------------------------- support


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_negative_counts_are_refused(no_engine, engine):
    with pytest.raises(ValueError, match=r"data\['y'\]: 1 of 3 value\(s\) lie outside the support of site 'y' "
                                         r"\(Poisson: non-negative integers \{0, 1, 2, \.\.\.\}\); the first at index \(1,\): -2"):
        _fit(counts, {"y": np.array([1, -2, 3])}, engine)


def test_non_integer_counts_are_refused():
    with pytest.raises(ValueError, match=r"2 of 4 value\(s\).*Poisson.*index \(0,\): 0\.5"):
        validate_data(counts, {"y": np.array([0.5, 1.0, 2.5, 3.0])})


def test_bernoulli_outside_zero_one_is_refused_grey_values_pass():
    with pytest.raises(ValueError, match=r"2 of 4 value\(s\).*Bernoulli: \[0, 1\].*index \(1,\): 2.*\{1, 2\} -> \{0, 1\}"):
        validate_data(labels, {"y": np.array([1, 2, 2, 1])})
    validate_data(labels, {"y": np.array([0.0, 0.25, 1.0])})  # grey values: the binary cross-entropy


def images(x=None):
    """Pixels as one event per image (as the zoo's VAEs write it)."""
    p = numpyro.sample("p", dist.Beta(1.0, 1.0))
    with numpyro.plate("data", 4):
        numpyro.sample("x", dist.Bernoulli(probs=p).expand([4, 2, 3]).to_event(2), obs=x)


def test_event_dimensions_are_checked_element_by_element():
    validate_data(images, {"x": np.full((4, 2, 3), 0.5)})  # grey images pass
    x = np.zeros((4, 2, 3))
    x[2, 1, 0] = 3.0
    with pytest.raises(ValueError, match=r"1 of 24 value\(s\).*site 'x' \(Bernoulli: \[0, 1\].*index \(2, 1, 0\): 3\.0"):
        validate_data(images, {"x": x})


def test_masked_placeholders_are_not_checked():
    y = np.array([1.0, -1.0, 3.0])  # -1 marks a missing count
    observed = y >= 0

    def with_obs_mask(y=None):
        rate = numpyro.sample("rate", dist.LogNormal(0.0, 1.0))
        with numpyro.plate("data", 3):
            numpyro.sample("y", dist.Poisson(rate), obs=y, obs_mask=observed)

    def with_handler(y=None):
        rate = numpyro.sample("rate", dist.LogNormal(0.0, 1.0))
        with numpyro.plate("data", 3), handlers.mask(mask=observed):
            numpyro.sample("y", dist.Poisson(rate), obs=y)

    validate_data(with_obs_mask, {"y": y})
    validate_data(with_handler, {"y": y})
    with pytest.raises(ValueError, match="outside the support"):
        validate_data(counts, {"y": y})


class _AnyValue(dist.Distribution):
    """A distribution whose support depends on its value: not checked."""

    support = constraints.dependent

    def log_prob(self, value):
        return jnp.zeros(jnp.shape(value))


def test_dependent_support_and_factors_are_skipped():
    def model(y=None):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
        numpyro.sample("y", _AnyValue(), obs=y)
        numpyro.factor("penalty", -mu**2)

    sites = validate_data(model, {"y": np.array(-3.0)})
    assert sites.observed == ["y"]


# ---------------------------------------------------------------- well-formed models pass


def eight_schools(y=None, sigma=None):
    """Vector observation without a plate: the location is a vector of 8."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    theta = numpyro.sample("theta", dist.Normal(mu, tau).expand([8]).to_event(1))
    numpyro.sample("y", dist.Normal(theta, sigma), obs=y)


def iid_without_plate(y=None):
    """Scalar parameters observing a vector outside any plate: legal NumPyro broadcasting."""
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def vector_event(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    with numpyro.plate("data", 10):
        numpyro.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)


def multivariate(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    with numpyro.plate("data", 10):
        numpyro.sample("y", dist.MultivariateNormal(mu, jnp.eye(2)), obs=y)


def pseudo_observation(y=None):
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([4]).to_event(1))
    with numpyro.plate("data", 4):
        numpyro.sample("y", dist.Normal(z, 1.0), obs=y)
    numpyro.sample("sum_to_zero", dist.Normal(z.sum(), 0.01), obs=0.0)
    with numpyro.plate("soft", 4):
        numpyro.sample("soft_zero", dist.Normal(z, 10.0), obs=0.0)


def subsampled(y=None):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", len(y), subsample_size=5):
        batch = numpyro.subsample(y, event_dim=0)
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=batch)


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (regression, {"x": np.zeros(N, np.float32), "y": np.zeros(N, np.float32)}),
        (regression_without_plate, {"x": np.zeros(N, np.float32), "y": np.zeros(N, np.float32)}),
        (eight_schools, {"y": np.array([28.0, 8, -3, 7, -1, 1, 18, 12]),
                         "sigma": np.array([15.0, 10, 16, 11, 9, 11, 10, 18])}),
        (iid_without_plate, {"y": np.zeros(N)}),
        (iid_without_plate, {"y": np.zeros((N, 1))}),
        (iid_without_plate, {"y": np.array([0.3])}),
        (vector_event, {"y": np.zeros((10, 3))}),
        (multivariate, {"y": np.zeros((10, 2))}),
        (pseudo_observation, {"y": np.zeros(4)}),
        (subsampled, {"y": np.zeros(20)}),
        (counts, {"y": np.array([0, 1, 5])}),
        (counts, {"y": np.array([0.0, 1.0, 5.0])}),
        (labels, {"y": np.array([True, False])}),
    ],
    ids=["plate", "no-plate", "eight-schools", "iid-no-plate", "column-no-plate-scalar", "one-value",
         "to-event", "mvn", "pseudo-obs", "subsample", "counts", "float-counts", "bool-labels"],
)
def test_well_formed_models_pass(model, data):
    sites = validate_data(model, data)
    assert sites.observed and sites.latent


def test_zoo_model_by_name_passes():
    ds = ppzoo.data.load("linear_ica", num_data=50, num_sources=2, seed=0)
    sites = validate_data("ica", ds.data)
    assert sites.observed == ["x"]


def test_validate_data_names_bad_keys():
    with pytest.raises(TypeError, match=r"data key\(s\) 'x' are not arguments of the model.*The model takes: y"):
        validate_data(counts, {"x": np.zeros(3)})
    with pytest.raises(TypeError, match=r"`data` must be a mapping"):
        validate_data(counts, np.zeros(3))


def test_one_data_check_for_every_entry_point():
    """fit, validate_data, SBC and check_data itself refuse the same bad data with the same message, before
    compiling anything (ppzoo.counterfactual's use is in tests/test_causal.py, which needs a fit)."""
    y = np.array([1.0, 0.0, np.nan, 3.0])
    nan = r"data\['y'\] contains 1 NaN or inf value\(s\) \(first at index \(2,\)\)"
    calls = {
        "fit": lambda: ppzoo.fit(counts, {"y": y}, num_warmup=5, num_samples=5, num_chains=1),
        "validate_data": lambda: validate_data(counts, {"y": y}),
        "sbc": lambda: ppzoo.sbc(counts, {"y": y}, num_simulations=5),
        "check_data": lambda: check_data(counts, {"y": y}),
    }
    timer = CompileTimer()
    for name, call in calls.items():
        with timer.measure(), pytest.raises(ValueError, match=nan):
            call()
    assert timer.count == 0


def test_check_data_converts_and_names_the_caller():
    checked = check_data(counts, {"y": [1, 2, 3]})
    assert isinstance(checked["y"], np.ndarray) and checked["y"].tolist() == [1, 2, 3]
    with pytest.raises(TypeError, match=r"^ppzoo.counterfactual: data key\(s\) 'x' are not arguments"):
        check_data(counts, {"x": np.zeros(3)}, caller="ppzoo.counterfactual")
    with pytest.raises(TypeError, match=r"^ppzoo.counterfactual: `data` must be a mapping"):
        check_data(counts, [1.0], caller="ppzoo.counterfactual")
    # Partial data pass unless the caller requires every argument without a default (ppzoo.fit does).
    assert set(check_data(regression, {"y": np.zeros(N)})) == {"y"}
    with pytest.raises(TypeError, match=r"The model requires argument\(s\) 'x'; add them to `data`"):
        check_data(regression, {"y": np.zeros(N)}, require=True)
    # A zoo model's own check runs on the converted data (a list of rows becomes a 2-D array).
    assert check_data("ica", {"x": [[0.1, 0.2], [0.3, 0.4]]})["x"].shape == (2, 2)
    with pytest.raises(ValueError, match=r"ICA data `x` must be 2-D"):
        check_data("ica", {"x": [0.1, 0.2, 0.3]})
