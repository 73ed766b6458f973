"""A bounded cache of compiled programs keyed by what shapes them, shared across fits.

A program built from a fit's closures compiles afresh for every fit; keyed instead by what decides its
code (the model, static data, site names, shapes), the engines of a comparison or the seeds of a study
reuse one compile. Used by :mod:`ppzoo.arviz` (the DataTree's programs) and :mod:`ppzoo.causal`
(interventions, counterfactuals, guide abduction). Imports nothing of ppzoo.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["ProgramCache"]

T = TypeVar("T")


class ProgramCache(Generic[T]):
    """``get(spec, build)``: ``build()`` once per hashable ``spec``, the oldest dropped beyond ``maxsize``.

    An unhashable ``spec`` (a model or static data that cannot be hashed) gets a fresh ``build()`` each time.
    """

    def __init__(self, maxsize: int = 64):
        self.maxsize = maxsize
        self._programs: dict[Any, T] = {}

    def get(self, spec: Any, build: Callable[[], T]) -> T:
        try:
            hash(spec)
        except TypeError:
            return build()
        if spec not in self._programs:
            if len(self._programs) >= self.maxsize:
                self._programs.pop(next(iter(self._programs)))
            self._programs[spec] = build()
        return self._programs[spec]

    def __len__(self) -> int:
        return len(self._programs)
