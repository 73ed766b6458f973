"""Validators shared by several zoo models' configs and data checks (private to :mod:`ppzoo.models`).

The general ones (:func:`ppzoo.models.check_positive_number`, ``check_positive_integer``,
``check_finite_number``) are public in the package; these are the ones only the zoo's own modules need:
the VAE family's regularisation weights and the ODE models' positive settings and concrete-data test.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import numpy as np

from ppzoo.models import check_positive_number

__all__ = ["check_non_negative", "check_positive", "is_concrete"]


def check_non_negative(owner: str, name: str, value: Any, *, strict: bool = False, hint: str = "") -> None:
    """Raise unless ``value`` is a finite real number >= 0 (> 0 with ``strict``), naming ``owner.name``.

    ``hint`` follows the message (what the value means, a typical one).

    Raises
    ------
    TypeError
        Not a finite real number (text, None, a bool, NaN, inf).
    ValueError
        Negative (or zero with ``strict``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"{owner}.{name} must be a finite number; got {value!r}.")
    if value < 0 or (strict and value == 0):
        bound = "positive" if strict else "non-negative (>= 0)"
        raise ValueError(f"{owner}.{name} must be {bound}; got {value!r}.{(' ' + hint) if hint else ''}")


def check_positive(owner: str, **values: Any) -> None:
    """:func:`ppzoo.models.check_positive_number` for each ``name=value``, in order."""
    for name, value in values.items():
        check_positive_number(owner, name, value)


def is_concrete(value: Any) -> bool:
    """Whether data can be checked now: given (not ``None``) and a value rather than a JAX tracer (the model
    is also run under ``jit``/``vmap``, where the data were checked before tracing)."""
    return value is not None and not isinstance(value, jax.core.Tracer)
