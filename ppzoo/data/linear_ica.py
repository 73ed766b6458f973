"""Linear ICA data: independent non-Gaussian sources, a well-conditioned random mixing, Gaussian noise."""

from __future__ import annotations

from typing import Literal

import numpy as np

from ppzoo.data._dataset import Dataset

__all__ = ["load"]


def load(
    *,
    num_data: int = 2000,
    num_sources: int = 3,
    num_observed: int | None = None,
    source: Literal["laplace", "uniform", "student_t"] = "laplace",
    noise_scale: float = 0.1,
    max_condition_number: float = 3.0,
    seed: int = 0,
) -> Dataset:
    """Simulate linear ICA data ``x = z A^T + noise``.

    Parameters
    ----------
    num_data : int
        Number of observations N.
    num_sources : int
        K independent sources (Laplace(0, 1) by default).
    num_observed : int or None
        D >= K observed dimensions (default K).
    source : {"laplace", "uniform", "student_t"}
        Source distribution (all non-Gaussian).
    noise_scale : float
        Sd of the Gaussian observation noise.
    max_condition_number : float
        Mixing matrices are redrawn until their condition number is at most this.
    seed : int
        Seed of the simulation.

    Returns
    -------
    Dataset
        ``data = {"x": (N, D)}``, ``truth = {"z": (N, K), "mixing": (D, K), "noise_scale": ()}``.
    """
    for name, value in (("num_data", num_data), ("num_sources", num_sources)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    num_observed = num_sources if num_observed is None else num_observed
    if num_observed < num_sources:
        raise ValueError(
            f"`num_observed` ({num_observed}) must be at least `num_sources` ({num_sources}) for the mixing "
            "to be invertible."
        )
    if source not in ("laplace", "uniform", "student_t"):
        raise ValueError(f"`source` must be 'laplace', 'uniform' or 'student_t'; got {source!r}.")
    if not noise_scale >= 0:
        raise ValueError(f"`noise_scale` must be non-negative; got {noise_scale!r}.")
    if not max_condition_number > 1:
        raise ValueError(f"`max_condition_number` must exceed 1; got {max_condition_number!r}.")
    rng = np.random.default_rng(seed)
    if source == "laplace":
        z = rng.laplace(0.0, 1.0, size=(num_data, num_sources))
    elif source == "uniform":
        z = rng.uniform(-np.sqrt(3), np.sqrt(3), size=(num_data, num_sources))
    else:
        z = rng.standard_t(5.0, size=(num_data, num_sources))
    for _ in range(10_000):
        mixing = rng.normal(size=(num_observed, num_sources))
        if np.linalg.cond(mixing) <= max_condition_number:
            break
    else:  # pragma: no cover - practically unreachable for sensible bounds
        raise RuntimeError("No mixing matrix met max_condition_number; raise it.")
    x = z @ mixing.T + noise_scale * rng.normal(size=(num_data, num_observed))
    return Dataset(
        name="linear_ica",
        data={"x": x.astype(np.float32)},
        truth={"z": z, "mixing": mixing, "noise_scale": np.asarray(noise_scale)},
        info={
            "num_data": num_data,
            "num_sources": num_sources,
            "num_observed": num_observed,
            "source": source,
            "noise_scale": noise_scale,
            "condition_number": float(np.linalg.cond(mixing)),
            "seed": seed,
        },
    )
