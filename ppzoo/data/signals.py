"""Brakel & Bengio's synthetic source-separation task: six signals, mixed linearly, post-nonlinearly or by an MLP.

Six sources over 4000 samples at 10 kHz (Brakel & Bengio 2017, Sec. 5.1): a 155 Hz square wave, an 800 Hz
sine, a frequency-modulated sine :math:`\\sin(2\\pi 300 t + 6 \\cos(2\\pi 60 t))`, a 90 Hz sine, uniform noise
and Laplace noise, each standardised to mean 0 and sd 1. Mixing matrices have entries ``U(-0.5, 0.5)``:

* ``"linear"``: :math:`x = A s`;
* ``"pnl"`` (post-nonlinear): :math:`x = \\tanh(A s)`;
* ``"mlp"``: :math:`x = \\tanh(A_2 \\tanh(A s))`.

The first 500 samples are held out (the paper's test set): ``ds.data["x"]`` is the other 3500 rows,
``ds.truth["sources"]`` their sources, ``ds.truth["heldout_x"]`` and ``ds.truth["heldout_sources"]`` the
held-out rows.

References
----------
Brakel, P. & Bengio, Y. (2017). Learning independent features with adversarial nets for non-linear ICA.
arXiv:1710.05050. Sec. 5.1 (the synthetic signals).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from ppzoo.data._dataset import Dataset

__all__ = ["load", "sources", "MIXINGS", "NUM_SAMPLES", "NUM_HELDOUT", "RATE_HZ"]

MIXINGS = ("linear", "pnl", "mlp")
NUM_SAMPLES, NUM_HELDOUT, RATE_HZ = 4000, 500, 10_000


def sources(rng: np.random.Generator, num_samples: int = NUM_SAMPLES) -> np.ndarray:
    """The six standardised sources, ``(num_samples, 6)``; the two noise sources are drawn from ``rng``."""
    t = np.arange(num_samples) / RATE_HZ
    s = np.stack([
        np.sign(np.sin(2 * np.pi * 155 * t)),
        np.sin(2 * np.pi * 800 * t),
        np.sin(2 * np.pi * 300 * t + 6 * np.cos(2 * np.pi * 60 * t)),
        np.sin(2 * np.pi * 90 * t),
        rng.uniform(-1.0, 1.0, num_samples),
        rng.laplace(0.0, 1.0, num_samples),
    ], axis=1)
    return (s - s.mean(0)) / s.std(0)


def load(*, mixing: Literal["linear", "pnl", "mlp"] = "linear", seed: int = 0) -> Dataset:
    """The six signals mixed by ``mixing`` with matrices drawn from ``seed``; the first 500 samples held out.

    Parameters
    ----------
    mixing : {"linear", "pnl", "mlp"}
        ``A s``, ``tanh(A s)`` or ``tanh(A2 tanh(A s))``.
    seed : int
        Seed of the mixing matrices and the two noise sources.

    Returns
    -------
    Dataset
        ``data = {"x": (3500, 6)}``; ``truth = {"sources": (3500, 6), "z": same, "mixing": (6, 6),
        "heldout_x": (500, 6), "heldout_sources": (500, 6)}`` (and ``"mixing2"`` for ``"mlp"``).

    Raises
    ------
    ValueError
        An unknown ``mixing`` (the valid ones listed).
    """
    if mixing not in MIXINGS:
        raise ValueError(f"`mixing` must be one of {', '.join(map(repr, MIXINGS))}; got {mixing!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"`seed` must be an integer; got {seed!r}.")
    rng = np.random.default_rng(seed)
    s = sources(rng)
    a = rng.uniform(-0.5, 0.5, (6, 6))
    x = s @ a.T
    truth = {"mixing": a}
    if mixing in ("pnl", "mlp"):
        x = np.tanh(x)
    if mixing == "mlp":
        a2 = rng.uniform(-0.5, 0.5, (6, 6))
        x = np.tanh(x @ a2.T)
        truth["mixing2"] = a2
    x = x.astype(np.float32)
    held = slice(0, NUM_HELDOUT)
    train = slice(NUM_HELDOUT, None)
    truth.update({"sources": s[train], "z": s[train], "heldout_x": x[held], "heldout_sources": s[held]})
    return Dataset(
        name="signals",
        data={"x": x[train]},
        truth=truth,
        info={"mixing": mixing, "seed": seed, "num_samples": NUM_SAMPLES, "num_heldout": NUM_HELDOUT,
              "rate_hz": RATE_HZ, "source": "Brakel & Bengio (2017), Sec. 5.1"},
    )
