"""scikit-learn's bundled 8 x 8 handwritten digits (UCI optical recognition of handwritten digits).

A small real image data set that needs no download: 1797 grey-level images of the digits 0-9, 8 x 8 pixels
with 17 grey levels. It has no generative ground truth; the digit class is kept as a label for
downstream checks (for instance, how well a latent code predicts the class).

References
----------
Alpaydin, E. & Kaynak, C. (1998). Optical Recognition of Handwritten Digits. UCI Machine Learning
Repository. https://doi.org/10.24432/C50P49
"""

from __future__ import annotations

import numpy as np
import sklearn
from sklearn.datasets import load_digits

from ppzoo.data._dataset import Dataset

__all__ = ["load"]

_NUM_GREY_LEVELS = 16.0


def load(*, seed: int = 0, binarize: bool = False) -> Dataset:
    """Load the 1797 scikit-learn digits as images in [0, 1].

    Parameters
    ----------
    seed : int
        Unused: the data are fixed and kept in scikit-learn's order. Taken so that every loader accepts
        a seed; recorded in ``info``.
    binarize : bool
        If True, threshold the intensities at 0.5 so that the images are in {0, 1} (for Bernoulli
        likelihoods).

    Returns
    -------
    Dataset
        ``data = {"x": (1797, 8, 8) float32}`` with intensities ``pixel / 16`` in [0, 1];
        ``truth = {"label": (1797,) int64}``, the digit class 0-9. The label is an annotation, not a
        generative factor of the images: metrics that need true factors do not apply.

    Raises
    ------
    TypeError
        If ``binarize`` is not a bool.

    Examples
    --------
    >>> ds = load()
    >>> ds.data["x"].shape, ds.truth["label"][:5]
    ((1797, 8, 8), array([0, 1, 2, 3, 4]))
    """
    if not isinstance(binarize, bool | np.bool_):
        raise TypeError(f"`binarize` must be True or False; got {binarize!r}.")
    bunch = load_digits()
    images = (bunch.images / _NUM_GREY_LEVELS).astype(np.float32)
    if binarize:
        images = (images > 0.5).astype(np.float32)
    return Dataset(
        name="digits",
        data={"x": images},
        truth={"label": bunch.target.astype(np.int64)},
        info={
            "source": "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits, "
            "bundled with scikit-learn, no download)",
            "scikit_learn_version": sklearn.__version__,
            "num_data": int(images.shape[0]),
            "image_shape": tuple(images.shape[1:]),
            "scaling": "pixel / 16, in [0, 1]",
            "binarize": bool(binarize),
            "binarize_threshold": 0.5 if binarize else None,
            "label": "digit class 0-9; an annotation, not a generative factor",
            "seed": seed,
        },
    )
