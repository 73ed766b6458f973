"""Checks of the data against the model that :func:`ppzoo.fit` runs eagerly, before anything compiles.

Three kinds of bad data otherwise go silently wrong or end deep inside JAX:

* **Non-numeric values** (a list of strings read from a CSV file, an object array with ``None`` for
  missing values): :func:`as_numeric` names the data key, its type and the conversion to make.
* **Shapes** that NumPyro would broadcast into a different model (``y`` of shape ``(150, 1)`` at a site of
  shape ``(150,)`` scores every ``y`` against every mean) or that do not fit at all (one element short):
  :func:`check_observed` compares each observed value with its site's distribution in the model's trace.
* **Values outside the support** of the observed site's distribution (negative counts for a Poisson),
  which otherwise end in NumPyro's "Cannot find valid initial parameters".

The shape rule (:func:`check_observed`). Let ``D = fn.batch_shape + fn.event_shape`` be the shape of the
observed site's distribution as traced (plates have already expanded its batch shape) and ``O`` the shape
of the observed value. The value is accepted when

1. ``O == D``; or
2. it is one value (``size 1``) with no more axes than ``D``: a constant pseudo-observation that NumPyro
   repeats across the site (``obs=0.0`` for a soft constraint); or
3. the site is in no plate and ``broadcast(O, D) == O``: the distribution is repeated across the data
   (``Normal(mu, sigma)`` with scalar parameters observing a vector, as in models written without
   plates), unless ``O`` and a non-scalar ``D`` differ only by axes of length 1 (``(1, 8)`` vs ``(8,)``).

Everything else is refused, with a message for the case at hand: a wrong length along an axis (named after
its plate), extra axes of length 1 (``(150, 1)`` vs ``(150,)``; the fix is ``y.ravel()``, or a plate /
``.to_event()`` in the model when the axis is meant), extra axes no plate or event dimension declares, or a
value NumPyro would repeat to fill the site. Inside a plate the rule is exact equality (1 and 2 only),
because there the plate already says what shape the data have.

The support rule: every observed value must satisfy ``fn.support``, except where the site is masked
(``handlers.mask``, ``obs_mask``, ``.mask()``). A Bernoulli site accepts values in [0, 1] (grey values give
the binary cross-entropy, the convention of the zoo's VAEs). Sites whose support depends on the value
(``constraints.dependent``) and factor sites (``numpyro.factor``, ``dist.Unit``) are not checked.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Collection, Mapping
from typing import Any

import jax
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions import constraints

__all__ = ["as_numeric", "check_observed", "explain_trace_failure"]

_STRING_KINDS = ("U", "S")


# ---------------------------------------------------------------- non-numeric data


def _leaves(value: Any, depth: int = 0) -> list[Any]:
    if isinstance(value, (list, tuple)) and depth < 32:
        return [leaf for item in value for leaf in _leaves(item, depth + 1)]
    return [value]


def _is_number(value: Any) -> bool:
    return isinstance(value, (numbers.Number, np.bool_)) and not isinstance(value, complex)


def _string_error(key: str, what: str, example: Any) -> TypeError:
    return TypeError(
        f"data[{key!r}] is {what} (e.g. {example!r}); ppzoo fits numbers only. Convert it first: "
        f"np.asarray(data[{key!r}], dtype=float) for numbers stored as text, or "
        f"np.unique(data[{key!r}], return_inverse=True)[1] to code category labels as 0, 1, 2, ..."
    )


def as_numeric(key: str, value: Any) -> Any:
    """``value`` as ppzoo passes it to the model: lists of numbers become arrays; text and objects are refused.

    Parameters
    ----------
    key : str
        The data key, for the message.
    value : any
        One value of ``data``.

    Returns
    -------
    any
        A NumPy array for a (nested) list or tuple of numbers, or an array-like object such as a pandas
        Series; every other value unchanged (settings such as ``num_data``, configs, lists of functions).

    Raises
    ------
    TypeError
        Text (a list, tuple or array of ``str``/``bytes``) or a NumPy array of dtype ``object``.
    ValueError
        A list of numbers with ``None`` among them (missing values), or rows of different lengths.
    """
    if isinstance(value, (list, tuple)):
        leaves = _leaves(value)
        if not leaves:
            return value
        text = next((leaf for leaf in leaves if isinstance(leaf, (str, bytes))), None)
        if text is not None:
            raise _string_error(key, f"a {type(value).__name__} of {type(text).__name__}", text)
        numeric = [_is_number(leaf) for leaf in leaves]
        if all(numeric):
            try:
                return np.asarray(value)
            except ValueError:
                raise ValueError(
                    f"data[{key!r}] is a ragged nested {type(value).__name__} (rows of different lengths), "
                    "which is not an array. Pad the rows to one length and mask the padding "
                    "(numpyro.handlers.mask or obs_mask=), or pass the rows as separate data."
                ) from None
        if all(n or leaf is None for n, leaf in zip(numeric, leaves)):
            missing = sum(leaf is None for leaf in leaves)
            raise ValueError(
                f"data[{key!r}] holds {missing} None value(s) among its numbers: missing data? ppzoo does not "
                "drop data silently: remove or impute them, or mark them with obs_mask= in the model."
            )
        return value  # a list of other objects (functions, arrays of different shapes): a setting
    if isinstance(value, jax.Array):
        return value  # JAX holds no text or objects
    if isinstance(value, np.ndarray):
        array = value
    elif hasattr(value, "__array__") and (hasattr(value, "dtype") or hasattr(value, "dtypes")):
        array = np.asarray(value)  # pandas Series / DataFrame, xarray DataArray
    else:
        return value
    kind = np.dtype(array.dtype).kind
    if kind in _STRING_KINDS:
        example = array.flat[0] if array.size else ""
        raise _string_error(key, f"an array of text (dtype {array.dtype})", example)
    if kind == "O":
        example = next((v for v in np.asarray(array).flat if not _is_number(v)), None)
        raise TypeError(
            f"data[{key!r}] is an array of dtype object (e.g. holding {example!r}); ppzoo fits numbers only. "
            f"Convert it with np.asarray(data[{key!r}], dtype=float) (this fails on the non-numbers, which "
            "then need recoding, imputing or obs_mask=)."
        )
    return array


# ---------------------------------------------------------------- observed sites against their distributions


def _is_data_site(site: Mapping[str, Any]) -> bool:
    if site["type"] != "sample" or not site.get("is_observed"):
        return False
    if site.get("infer", {}).get("is_auxiliary"):
        return False
    fn = site["fn"]
    while fn is not None:
        if isinstance(fn, dist.Unit):
            return False  # numpyro.factor: a term of the log density, not data
        fn = getattr(fn, "base_dist", None)
    return True


def _label(name: str, site: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """How the message names the observed value: by its data key when one can be found."""
    if name in data:
        return f"data[{name!r}]"
    for key, value in data.items():
        if value is site["value"]:
            return f"data[{key!r}]"
    return f"the value observed at site {name!r}"


def _axis_names(site: Mapping[str, Any], shape: tuple[int, ...], batch_ndim: int) -> list[str]:
    names = ["" for _ in shape]
    for frame in site.get("cond_indep_stack", ()):
        position = batch_ndim + frame.dim
        if 0 <= position < len(names):
            names[position] = f"plate {frame.name!r}"
    for i in range(batch_ndim, len(shape)):
        names[i] = "event axis"
    return names


def _plates(site: Mapping[str, Any]) -> str:
    frames = sorted(site.get("cond_indep_stack", ()), key=lambda f: f.dim)
    if not frames:
        return "in no plate"
    return "in " + ", ".join(f"plate {f.name!r} (size {f.size}, dim {f.dim})" for f in frames)


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return None


def _without_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def _shape_error(name: str, label: str, site: Mapping[str, Any], data: Mapping[str, Any]) -> str | None:
    """The message for an observed value whose shape the shape rule (module docstring) refuses, else None."""
    fn = site["fn"]
    try:
        batch, event = tuple(fn.batch_shape), tuple(fn.event_shape)
    except (AttributeError, NotImplementedError):
        return None  # a distribution-like object without shapes: nothing to compare
    expected, given = batch + event, tuple(np.shape(site["value"]))
    in_plate = bool(site.get("cond_indep_stack"))
    broadcast = _broadcast(given, expected)
    only_ones = _without_ones(given) == _without_ones(expected)
    if given == expected:
        return None
    if int(np.prod(given)) == 1 and len(given) <= len(expected):
        return None
    if not in_plate and broadcast == given and not (only_ones and expected):
        return None
    var = label[6:-2] if label.startswith("data[") else name  # how the fix names the array
    where = f"site {name!r} has shape {expected} (batch {batch}, event {event}; {_plates(site)})"
    others = [f"{k} {np.shape(v)}" for k, v in data.items()
              if k != var and isinstance(v, (np.ndarray, jax.Array)) and np.ndim(v)]
    context = f" Other data arrays: {', '.join(others)}." if others else ""
    if broadcast is None and len(given) == len(expected):
        axes = _axis_names(site, expected, len(batch))
        wrong = [f"{given[i]} along axis {i} where {axes[i] or f'axis {i}'} has size {expected[i]}"
                 for i, (g, e) in enumerate(zip(given, expected)) if g != e]
        return (
            f"{label} has the wrong length: {'; '.join(wrong)}. Expected shape {expected}, got {given}; {where}."
            f"{context} Every per-datum array must cover the same data points: pass the full data, or size the "
            f"plate from the data (numpyro.plate('data', len({var})))."
        )
    if only_ones:
        repeated = (f" NumPyro would broadcast them to {broadcast} and score every value against every location, "
                    "which fits without an error and gives a wrong posterior." if broadcast != given else "")
        return (
            f"{label} has shape {given} but {where}: they differ by axes of length 1.{repeated} Pass an array of "
            f"shape {expected} ({var}.ravel(), np.squeeze({var}) or {var}.reshape({expected})); if the extra axis is "
            "meant, declare it in the model: a numpyro.plate over it, or .to_event(1) on the distribution."
        )
    if broadcast is None:
        return (
            f"{label} has shape {given}, which does not fit: {where}.{context} Pass an array of shape {expected}, "
            "or change the model so that the site's plates and event shape describe the data."
        )
    if len(given) > len(expected) or broadcast == given:
        extra = f" NumPyro would broadcast them to {broadcast}." if broadcast != given else ""
        return (
            f"{label} has shape {given} but {where}: the data have axes that no plate or event dimension of the "
            f"site declares.{extra} Declare them in the model (a numpyro.plate over each, or .to_event()), or "
            f"pass an array of shape {expected}."
        )
    return (
        f"{label} has shape {given} but {where}: NumPyro would repeat the data to fill shape {broadcast}, "
        f"counting each value several times. Pass an array of shape {expected}, or drop the plate or batch "
        "dimension that the data do not have."
    )


def _base(fn: Any) -> Any:
    while isinstance(fn, (dist.ExpandedDistribution, dist.Independent, dist.MaskedDistribution)):
        fn = fn.base_dist
    return fn


def _mask(site: Mapping[str, Any]) -> Any:
    """The site's mask (True = scored) from ``handlers.mask`` and ``.mask()``, or None when unmasked."""
    masks = [] if site.get("mask") is None else [site["mask"]]
    fn = site["fn"]
    while isinstance(fn, (dist.ExpandedDistribution, dist.MaskedDistribution)):
        if isinstance(fn, dist.MaskedDistribution):
            masks.append(fn._mask)  # MaskedDistribution has no public accessor for its mask
        fn = fn.base_dist
    if not masks:
        return None
    mask = np.asarray(masks[0], bool)
    for other in masks[1:]:
        mask = mask & np.asarray(other, bool)
    return mask


def _describe(support: Any) -> str:
    while isinstance(support, constraints.independent):
        support = support.base_constraint  # described element by element
    low, high = getattr(support, "lower_bound", None), getattr(support, "upper_bound", None)
    scalar = lambda b: b is not None and np.ndim(b) == 0  # noqa: E731
    if isinstance(support, type(constraints.nonnegative_integer)):
        return "non-negative integers {0, 1, 2, ...}"
    if isinstance(support, type(constraints.boolean)):
        return "[0, 1] (0/1 outcomes; grey values in between give the binary cross-entropy)"
    if isinstance(support, type(constraints.positive_integer)):
        return "positive integers {1, 2, ...}"
    if isinstance(support, constraints.integer_interval):
        return f"integers {{{low}, ..., {high}}}" if scalar(low) and scalar(high) else "integers within per-datum bounds"
    if isinstance(support, type(constraints.positive)) and scalar(low) and float(low) == 0:
        return "positive reals (> 0)"
    if isinstance(support, constraints.greater_than):
        return f"reals > {low}" if scalar(low) else "reals above per-datum bounds"
    if isinstance(support, constraints.interval):
        return f"[{low}, {high}]" if scalar(low) and scalar(high) else "per-datum intervals"
    if isinstance(support, type(constraints.simplex)):
        return "the simplex (non-negative, summing to 1 along the last axis)"
    return repr(support)


def _support_error(name: str, label: str, site: Mapping[str, Any]) -> str | None:
    """The message for observed values outside the site's support, else None."""
    fn = site["fn"]
    try:
        support = fn.support
    except (AttributeError, NotImplementedError):
        return None
    if constraints.is_dependent(support):
        return None
    value = np.asarray(site["value"])
    base, event_ndim = support, 0
    while isinstance(base, constraints.independent):
        base, event_ndim = base.base_constraint, event_ndim + base.reinterpreted_batch_ndims
    if isinstance(base, type(constraints.boolean)):
        inside = (value >= 0) & (value <= 1)  # grey values are accepted (see the module docstring)
    elif getattr(base, "event_dim", 0) == 0:
        try:
            inside = np.asarray(base(value))  # element by element, so the message can point at one value
        except NotImplementedError:
            return None
    else:
        try:
            inside = np.asarray(support(value))  # a simplex, a correlation matrix: one verdict per vector
        except NotImplementedError:
            return None
        event_ndim = 0
    mask = _mask(site)
    if mask is not None:
        mask = np.reshape(mask, np.shape(mask) + (1,) * event_ndim)
        try:
            inside = inside | ~np.broadcast_to(mask, inside.shape)
        except ValueError:
            return None  # a mask we cannot place on the values: do not guess which ones count
    outside = ~inside
    count = int(outside.sum())
    if not count:
        return None
    index = tuple(int(i) for i in np.argwhere(outside)[0]) if outside.ndim else ()
    shown = value[index] if value.ndim == outside.ndim else None
    shown_text = f": {shown.item()!r}" if shown is not None and np.size(shown) == 1 else ""
    distribution = type(_base(fn)).__name__.removesuffix("Probs").removesuffix("Logits")
    return (
        f"{label}: {count} of {inside.size} value(s) lie outside the support of site {name!r} "
        f"({distribution}: {_describe(support)}); the first at index {index}{shown_text}. "
        "Fix or recode the data (e.g. labels {1, 2} -> {0, 1}), mask the values that are not data "
        "(obs_mask=), or choose a distribution whose support contains them."
    )


def check_observed(trace: Mapping[str, Mapping[str, Any]], data: Mapping[str, Any]) -> None:
    """Check every observed site of a model's ``trace`` against its distribution (shape, then support).

    The rules are in this module's docstring. ``trace`` is the eager trace of ``model(**data)`` (as from
    ``numpyro.handlers.trace``); nothing is compiled.

    Raises
    ------
    ValueError
        The first observed value whose shape the rule refuses, or that has values outside its support.
    """
    for name, site in trace.items():
        if not _is_data_site(site):
            continue
        label = _label(name, site, data)
        message = _shape_error(name, label, site, data) or _support_error(name, label, site)
        if message:
            raise ValueError(message)


# ---------------------------------------------------------------- a model that fails on the data


def explain_trace_failure(
    model: Callable[..., Any],
    data: Mapping[str, Any],
    error: Exception,
    key: jax.Array,
    generated: Collection[str],
) -> Exception:
    """An error that says which data arrays do not fit, for a model that failed when run once on ``data``.

    First the model is run without the data arguments in ``generated`` (those whose default is None, so the
    model simulates them): a simulated site whose shape differs from the given array is named with both
    shapes. Failing that, data arrays whose leading lengths disagree are listed. Failing that, the model's
    own error is returned with the shapes of all data arrays.
    """
    arrays = {k: tuple(np.shape(v)) for k, v in data.items() if isinstance(v, (np.ndarray, jax.Array))}
    shapes = ", ".join(f"{k} {s}" for k, s in arrays.items())
    dropped = [k for k in arrays if k in generated]
    if dropped:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                kept = {k: v for k, v in data.items() if k not in dropped}
                trace = handlers.trace(handlers.seed(model, key)).get_trace(**kept)
        except (ValueError, TypeError, IndexError, KeyError, AttributeError):
            trace = None  # the model cannot run without them either: fall back to comparing lengths
        if trace is not None:
            wrong = []
            for k in dropped:
                site = trace.get(k)
                if site is not None and site["type"] == "sample" and tuple(np.shape(site["value"])) != arrays[k]:
                    wrong.append(
                        f"data[{k!r}] has shape {arrays[k]} but the model, run without it, simulates site {k!r} "
                        f"with shape {tuple(np.shape(site['value']))} ({_plates(site)})"
                    )
            if wrong:
                return ValueError(
                    f"{'; '.join(wrong)}. Running the model on the data failed with: {error}. Data shapes: {shapes}. "
                    "Pass arrays of the shapes the model simulates (the other arrays set them), or size its plates "
                    "from the data."
                )
    lengths = {k: s[0] for k, s in arrays.items() if s}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        return ValueError(
            f"Running the model once on the data failed ({error}), and the data arrays differ in leading length "
            f"(number of data points): {listed}. If they describe the same data points, give them the same "
            f"length. Data shapes: {shapes}."
        )
    return type(error)(
        f"Running the model once on the given data failed: {error}"
        + (f" (data shapes: {shapes})" if shapes else "")
    )
