"""Per-column standardisation with training statistics, and back to the data's units."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Standardiser"]


class Standardiser:
    """Data units <-> standardised units, with the mean and sd (``ddof=0``) of each column of the training data.

    Parameters
    ----------
    values : ArrayLike
        Training values ``(n, num_columns)``; the statistics are computed in their dtype.

    Raises
    ------
    ValueError
        If ``values`` is not 2-D with at least one row, or a column is constant (sd 0: nothing to divide by).

    Examples
    --------
    >>> scaler = Standardiser(np.array([[0.0, 10.0], [2.0, 30.0]]))
    >>> scaler.to_std(np.array([[2.0, 10.0]]))
    array([[ 1., -1.]])
    >>> scaler.value_to_units(1, 1.0)
    30.0
    """

    def __init__(self, values: ArrayLike) -> None:
        values = np.asarray(values)
        if values.ndim != 2 or len(values) == 0:
            raise ValueError(f"`values` must be 2-D (num_rows, num_columns) with at least one row; got shape {values.shape}.")
        self.mean, self.sd = values.mean(0), values.std(0)
        constant = np.flatnonzero(~(self.sd > 0))
        if constant.size:
            raise ValueError(
                f"Column(s) {constant.tolist()} of `values` are constant (sd 0) and cannot be standardised; "
                "drop them or pass data in which they vary."
            )

    def to_std(self, values: ArrayLike) -> np.ndarray:
        """Values in data units -> standardised units."""
        return (values - self.mean) / self.sd

    def to_units(self, standardised: ArrayLike) -> np.ndarray:
        """Standardised values -> data units."""
        return standardised * self.sd + self.mean

    def value_to_units(self, column: int, value: float) -> float:
        """One standardised value of ``column`` in its data units (e.g. a do() value for a simulator)."""
        return float(value * self.sd[column] + self.mean[column])
