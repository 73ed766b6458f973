"""What every engine shares: option validation and the result type."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

__all__ = ["EngineResult", "Options", "validate_positive", "split_data"]


class EngineResult(NamedTuple):
    """What an engine hands back to :func:`ppzoo.fit`.

    Attributes
    ----------
    samples : dict of numpy.ndarray
        Latent and deterministic sites, each ``(chain, draw, *site_shape)``, constrained space.
    sample_stats : dict of numpy.ndarray
        Per-draw statistics under ArviZ's names, each ``(chain, draw)``.
    params : dict or None
        Learned non-random parameters (SVI: guide parameters and network weights).
    losses : numpy.ndarray or None
        SVI loss (negative ELBO) per step.
    warnings : list of str
        Problems a user must see: divergences, NaN losses, chains that ran one after another.
    """

    samples: dict[str, np.ndarray]
    sample_stats: dict[str, np.ndarray]
    params: dict[str, Any] | None
    losses: np.ndarray | None
    warnings: list[str]


def validate_positive(owner: str, **values: float) -> None:
    """Raise a ValueError naming the first option that is not a positive number."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{owner} option `{name}` must be a number; got {value!r}.")
        if not value > 0:
            raise ValueError(f"{owner} option `{name}` must be positive; got {value!r}. Example: {name}=1000.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """Base of the engines' frozen, keyword-only option dataclasses."""

    @classmethod
    def engine_name(cls) -> str:
        return cls.__name__.removesuffix("Options").lower()

    @classmethod
    def valid_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_kwargs(cls, engine: str, options: dict[str, Any]) -> "Options":
        """Build the options, naming any unknown option and listing the valid ones."""
        unknown = sorted(set(options) - set(cls.valid_names()))
        if unknown:
            raise TypeError(
                f"Unknown option(s) {', '.join(map(repr, unknown))} for engine={engine!r}. "
                f"Valid options: {', '.join(cls.valid_names())}."
            )
        return cls(**options)

    def as_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float, str, bool, type(None))):
                out[f.name] = value
            elif callable(value) and hasattr(value, "__name__"):
                out[f.name] = value.__name__
            elif isinstance(value, functools.partial):
                out[f.name] = f"{getattr(value.func, '__name__', value.func)}({', '.join(f'{k}=...' for k in value.keywords)})"
            else:
                out[f.name] = repr(value)
        return out


def split_data(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split model arguments into arrays and the rest.

    Arrays travel as arguments of compiled functions (not baked into the program as constants, which
    slows compiling and duplicates memory); everything else (configs, sizes) is static.
    """
    arrays, static = {}, {}
    for k, v in data.items():
        (arrays if isinstance(v, (np.ndarray, jax.Array)) else static)[k] = v
    return arrays, static
