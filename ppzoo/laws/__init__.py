"""Law discovery: sparse Bayesian identification of governing equations from trajectories.

Build a library of candidate terms, hand it a noisy trajectory, get a posterior over sparse equations:

>>> ds = ppzoo.laws.lorenz(noise=0.01)
>>> law = ppzoo.laws.discover(**ds.data, library=ppzoo.laws.polynomial(degree=2))
>>> law.equations()[0]  # doctest: +SKIP
'dx0/dt = -10.011 x0 + 10.008 x1'

- :mod:`ppzoo.laws.library`: :func:`polynomial`, :func:`trig`, ``+`` and ``*`` of libraries.
- :mod:`ppzoo.laws.derivatives`: smoothing spline (default), Savitzky-Golay, finite differences.
- :mod:`ppzoo.laws.discover`: :func:`discover` (regularized horseshoe, model
  :func:`ppzoo.models.sparse_law.sparse_law`), the :class:`Law` result, the PySINDy STLSQ baseline
  :func:`stlsq_baseline` and :func:`support_metrics`.
- :mod:`ppzoo.laws.systems`: damped pendulum, Lotka-Volterra and Lorenz with known equations.
"""

from ppzoo.laws.derivatives import Smoothed, smooth_derivatives
from ppzoo.laws.discover import (
    Law,
    SupportMetrics,
    design,
    discover,
    effective_sample_fraction,
    stlsq_baseline,
    support_metrics,
)
from ppzoo.laws.library import Library, Term, polynomial, product, trig
from ppzoo.laws.systems import damped_pendulum, equation_names, lorenz, lotka_volterra

__all__ = [
    "Library",
    "Term",
    "polynomial",
    "trig",
    "product",
    "Smoothed",
    "smooth_derivatives",
    "Law",
    "discover",
    "design",
    "effective_sample_fraction",
    "stlsq_baseline",
    "support_metrics",
    "SupportMetrics",
    "damped_pendulum",
    "lotka_volterra",
    "lorenz",
    "equation_names",
]
