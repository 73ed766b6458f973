"""Reading known factors off observations: a learned probe that scores generated images.

A model's interventions and counterfactuals are images; to score them against the simulator's factors,
the factors must be read back off the images. :class:`FactorReader` is that instrument: a ridge
regression (scikit-learn's ``Ridge``) from pixels to factors, trained on the simulator's own images, so
its error on true images is the floor every score reaches.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["FactorReader"]


class FactorReader:
    """Ridge regression from pixels to (standardised) factors, trained on simulator images.

    Parameters
    ----------
    images : ArrayLike
        Training images ``(n, ...)``, flattened per image.
    factors : ArrayLike
        Their factors ``(n, num_factors)`` in the units the reader should return (e.g. standardised with
        :class:`ppzoo.data.scaling.Standardiser`).
    alpha : float
        Ridge penalty, > 0.

    Raises
    ------
    ValueError
        If ``images`` and ``factors`` differ in length, ``factors`` is not 2-D, or ``alpha`` is not positive.

    Examples
    --------
    >>> reader = FactorReader(train_images, scaler.to_std(train_factors))   # doctest: +SKIP
    >>> read = reader(generated_images)  # (n, num_factors)                  # doctest: +SKIP
    """

    def __init__(self, images: ArrayLike, factors: ArrayLike, *, alpha: float = 1.0) -> None:
        from sklearn.linear_model import Ridge

        images, factors = np.asarray(images), np.asarray(factors)
        if factors.ndim != 2:
            raise ValueError(f"`factors` must be 2-D (num_images, num_factors); got shape {factors.shape}.")
        if images.ndim < 2 or len(images) != len(factors):
            raise ValueError(
                f"`images` must hold one image per row of `factors` ({len(factors)}); got shape {images.shape}."
            )
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not alpha > 0:
            raise ValueError(f"`alpha` (the ridge penalty) must be a positive number; got {alpha!r}. The default is 1.0.")
        self.model = Ridge(alpha=alpha).fit(images.reshape(len(images), -1), factors)

    def __call__(self, images: ArrayLike) -> np.ndarray:
        """The factors read off ``images`` ``(n, ...)``: ``(n, num_factors)``."""
        return self.model.predict(np.asarray(images).reshape(len(images), -1))
