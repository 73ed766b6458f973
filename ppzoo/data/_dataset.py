"""The one shape every ppzoo data set has."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Dataset"]


@dataclass(frozen=True)
class Dataset:
    """A data set with its known truth.

    Attributes
    ----------
    name : str
        Registry name of the data set.
    data : Mapping[str, Any]
        Keyword arguments for the model (observed arrays named after their sites, and any settings):
        ``ppzoo.fit(model, ds.data, ...)``.
    truth : Mapping[str, numpy.ndarray]
        True values keyed by the model's site names; empty for real data without ground truth.
    info : Mapping[str, Any]
        How the data were made (settings, seed, source), for reports.
    """

    name: str
    data: Mapping[str, Any]
    truth: Mapping[str, np.ndarray] = field(default_factory=dict)
    info: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        def shape(v):
            return tuple(np.shape(v)) if hasattr(v, "shape") else type(v).__name__

        data = ", ".join(f"{k}: {shape(v)}" for k, v in self.data.items())
        truth = ", ".join(f"{k}: {shape(v)}" for k, v in self.truth.items())
        return f"Dataset({self.name!r}, data={{{data}}}, truth={{{truth}}})"
