"""Disentanglement metrics with disentanglement_lib's definitions and standard settings.

Two kinds of metric are here:

* **Metrics on arrays** take ``codes`` of shape ``(num_data, num_codes)`` (for instance posterior means of
  ``z``) and the true ``factors`` of shape ``(num_data, num_factors)`` of the same data points: :func:`mig`,
  :func:`dci`, :func:`sap`, :func:`modularity_explicitness`, and the unsupervised
  :func:`gaussian_total_correlation` (codes only). disentanglement_lib draws 10,000 training points (and
  5,000 test points where a predictor is evaluated) from the data set; pass as many rows for the same
  setting. The metrics that train a predictor split the rows at random into train and test parts
  (``train_fraction`` = 2/3 gives disentanglement_lib's 10,000 / 5,000 from 15,000 rows).
* **Oracle metrics** draw fresh images with chosen factors from a ground-truth data set (such as
  :class:`ppzoo.data.shapes.ShapesDataset`) and encode them: :func:`beta_vae_score` and
  :func:`factor_vae_score`. ``encode`` maps images ``(n, H, W)`` to codes ``(n, num_codes)``. The oracle
  needs ``factor_sizes``, ``sample_factors(generator, n)`` (integer grid indices ``(n, num_factors)``) and
  ``observations_from_factors(indices)``.

Factors are treated as discrete: each distinct value of a column is a class (integer grid indices and grid
values both work). A continuous factor (almost every value distinct) is an error unless ``factor_bins``
asks to discretise it with the same histogram discretiser as the codes. Mutual information is in nats,
from :func:`sklearn.metrics.mutual_info_score`; codes are discretised into ``num_bins`` = 20 equal-width
bins, as disentanglement_lib's ``histogram_discretizer``.

The results depend on scikit-learn's predictors; :data:`METRICS_SKLEARN_VERSION` and
:func:`metric_versions` record the versions for reports.

References
----------
Locatello, F. et al. (2019). Challenging common assumptions in the unsupervised learning of disentangled
representations. ICML. (disentanglement_lib, https://github.com/google-research/disentanglement_lib)
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import scipy
import sklearn
from numpy.typing import ArrayLike
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import mutual_info_score, roc_auc_score
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from ppzoo.data.shapes import as_generator

__all__ = [
    "mig",
    "dci",
    "sap",
    "modularity_explicitness",
    "gaussian_total_correlation",
    "beta_vae_score",
    "factor_vae_score",
    "discretize",
    "metric_versions",
    "METRICS_SKLEARN_VERSION",
]

#: Version of scikit-learn whose estimators compute DCI, SAP, explicitness and the beta-VAE score.
METRICS_SKLEARN_VERSION: str = sklearn.__version__


def metric_versions() -> dict[str, str]:
    """Versions of the libraries the metrics' values depend on, for reports.

    Returns
    -------
    dict
        ``{"scikit-learn": ..., "numpy": ..., "scipy": ...}``.
    """
    return {"scikit-learn": sklearn.__version__, "numpy": np.__version__, "scipy": scipy.__version__}


# --------------------------------------------------------------------------------------------------------
# Input checks and discretisation
# --------------------------------------------------------------------------------------------------------


def _as_2d(name: str, value: ArrayLike, *, min_columns: int = 1) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D array of shape (num_data, dim); got shape {array.shape}. Reshape it, "
            "e.g. `z.reshape(-1, dim)`, or pass a posterior mean over draws."
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"`{name}` must be numeric; got dtype {array.dtype}.")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` contains NaN or inf; pass finite values.")
    if array.shape[0] < 2:
        raise ValueError(f"`{name}` needs at least 2 rows (data points); got {array.shape[0]}.")
    if array.shape[1] < min_columns:
        raise ValueError(
            f"`{name}` needs at least {min_columns} columns for this metric; got {array.shape[1]}."
        )
    return array


def _check_pair(codes: ArrayLike, factors: ArrayLike, *, min_codes: int, min_factors: int):
    c = _as_2d("codes", codes, min_columns=min_codes)
    f = _as_2d("factors", factors, min_columns=min_factors)
    if c.shape[0] != f.shape[0]:
        raise ValueError(
            f"`codes` has {c.shape[0]} rows but `factors` has {f.shape[0]}; both must be "
            "(num_data, dim) over the same data points."
        )
    return c, f


def _check_int(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}; got {value!r}.")
    return int(value)


def discretize(values: ArrayLike, num_bins: int = 20) -> np.ndarray:
    """Discretise each column into ``num_bins`` equal-width bins over its range.

    disentanglement_lib's ``histogram_discretizer``: the bin edges are those of ``numpy.histogram`` with
    ``num_bins`` bins, and a value gets the index of the last left edge at or below it (1 to
    ``num_bins``).

    Parameters
    ----------
    values : ArrayLike
        Shape ``(num_data, dim)``.
    num_bins : int
        Number of bins per column.

    Returns
    -------
    numpy.ndarray
        Integer bin indices of the same shape.

    Raises
    ------
    ValueError
        If ``values`` is not 2-D and finite, or ``num_bins`` is not a positive int.
    """
    array = _as_2d("values", values)
    num_bins = _check_int("num_bins", num_bins, 1)
    out = np.empty(array.shape, dtype=np.int64)
    for j in range(array.shape[1]):
        edges = np.histogram(array[:, j], num_bins)[1][:-1]
        out[:, j] = np.digitize(array[:, j], edges)
    return out


def _factor_labels(factors: np.ndarray, factor_bins: int | None) -> np.ndarray:
    """Class labels 0..C-1 of each factor column; histogram-discretised first if ``factor_bins`` is set."""
    if factor_bins is not None:
        factors = discretize(factors, _check_int("factor_bins", factor_bins, 2)).astype(np.float64)
    labels = np.empty(factors.shape, dtype=np.int64)
    num = factors.shape[0]
    for j in range(factors.shape[1]):
        values, labels[:, j] = np.unique(factors[:, j], return_inverse=True)
        if values.size < 2:
            raise ValueError(
                f"`factors` column {j} is constant; a factor that does not vary carries no information "
                "to recover. Drop that column."
            )
        if factor_bins is None and values.size > max(100, num // 2):
            raise ValueError(
                f"`factors` column {j} has {values.size} distinct values in {num} rows, so it looks "
                "continuous; these metrics treat factors as discrete classes. Pass factor_bins=20 to "
                "discretise it, or pass the factors' integer grid indices."
            )
    return labels


def _split(num: int, train_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not (isinstance(train_fraction, numbers.Real) and 0.0 < train_fraction < 1.0):
        raise ValueError(f"`train_fraction` must be in (0, 1), e.g. 2/3; got {train_fraction!r}.")
    num_train = int(np.ceil(num * train_fraction))
    if num_train >= num:
        raise ValueError(
            f"`train_fraction`={train_fraction} leaves no test rows out of {num}; pass more rows or a "
            "smaller fraction."
        )
    order = np.random.default_rng(_check_int("seed", seed, 0)).permutation(num)
    return order[:num_train], order[num_train:]


def _mutual_info(codes_discrete: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Matrix ``[num_codes, num_factors]`` of discrete mutual informations in nats."""
    out = np.empty((codes_discrete.shape[1], labels.shape[1]))
    for i in range(codes_discrete.shape[1]):
        for j in range(labels.shape[1]):
            out[i, j] = mutual_info_score(labels[:, j], codes_discrete[:, i])
    return out


def _entropy(labels: np.ndarray) -> np.ndarray:
    return np.array([mutual_info_score(labels[:, j], labels[:, j]) for j in range(labels.shape[1])])


# --------------------------------------------------------------------------------------------------------
# Metrics on arrays
# --------------------------------------------------------------------------------------------------------


def mig(codes: ArrayLike, factors: ArrayLike, *, num_bins: int = 20, factor_bins: int | None = None) -> float:
    """Mutual information gap (Chen et al. 2018), disentanglement_lib's ``discrete_mig``.

    For each factor :math:`v_k`, the gap between the largest and the second largest mutual information
    :math:`I(z_j; v_k)` over the discretised codes, divided by the factor's entropy :math:`H(v_k)`, averaged
    over the factors:

    .. math:: \\mathrm{MIG} = \\frac{1}{K} \\sum_k \\frac{I(z_{j^{(k)}}; v_k) - \\max_{j \\ne j^{(k)}}
              I(z_j; v_k)}{H(v_k)}, \\qquad j^{(k)} = \\arg\\max_j I(z_j; v_k).

    Parameters
    ----------
    codes : ArrayLike
        Shape ``(num_data, num_codes)``, ``num_codes >= 2``.
    factors : ArrayLike
        Shape ``(num_data, num_factors)``: integer grid indices or discrete factor values.
    num_bins : int
        Equal-width bins per code (disentanglement_lib: 20).
    factor_bins : int, optional
        Discretise the factors into this many bins first (for continuous factors).

    Returns
    -------
    float
        In [0, 1] up to estimation error; 1 when each factor is captured by one code alone.
        disentanglement_lib uses 10,000 points.

    Raises
    ------
    ValueError
        If an input is not 2-D or not finite, the row counts differ, there are fewer than 2 codes, or a
        factor is constant or looks continuous without ``factor_bins``.

    References
    ----------
    Chen, R. T. Q., Li, X., Grosse, R. & Duvenaud, D. (2018). Isolating sources of disentanglement in
    variational autoencoders. NeurIPS, Sec. 4.1.
    """
    c, f = _check_pair(codes, factors, min_codes=2, min_factors=1)
    labels = _factor_labels(f, factor_bins)
    mi = _mutual_info(discretize(c, num_bins), labels)
    top_two = np.sort(mi, axis=0)[::-1][:2]
    return float(np.mean((top_two[0] - top_two[1]) / _entropy(labels)))


def _normalised_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    # scipy.stats.entropy(p + 1e-11, base=n) along `axis`, as disentanglement_lib.
    p = p + 1e-11
    p = p / p.sum(axis=axis, keepdims=True)
    return -(p * np.log(p)).sum(axis=axis) / np.log(p.shape[axis])


def _dci_disentanglement(importance: np.ndarray) -> float:
    per_code = 1.0 - _normalised_entropy(importance, axis=1)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    return float(np.sum(per_code * weights.sum(1) / weights.sum()))


def _dci_completeness(importance: np.ndarray) -> float:
    per_factor = 1.0 - _normalised_entropy(importance, axis=0)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    return float(np.sum(per_factor * weights.sum(0) / weights.sum()))


def _split_gain_importance(model: HistGradientBoostingClassifier, num_features: int) -> np.ndarray:
    # Total split gain per feature over all trees, normalised to sum 1: the boosting analogue of
    # GradientBoostingClassifier.feature_importances_ (total impurity decrease). scikit-learn keeps the
    # trees in the private `_predictors`; fail loudly if a future version moves them.
    try:
        trees = [tree for stage in model._predictors for tree in stage]
        gains = np.zeros(num_features)
        for tree in trees:
            nodes = tree.nodes[~tree.nodes["is_leaf"].astype(bool)]
            np.add.at(gains, nodes["feature_idx"], nodes["gain"])
    except (AttributeError, KeyError, ValueError) as error:  # pragma: no cover - depends on sklearn
        raise RuntimeError(
            f"scikit-learn {sklearn.__version__} no longer exposes the fitted trees of "
            "HistGradientBoostingClassifier as before; use dci(..., predictor='gbt')."
        ) from error
    total = gains.sum()
    return gains / total if total > 0 else gains


def _share_among_duplicates(importance: np.ndarray, codes: np.ndarray) -> np.ndarray:
    # Identical code columns are indistinguishable to a tree: the histogram trees always split on the first
    # of them, while GradientBoostingClassifier visits features in random order and so spreads the
    # importance over the copies. Sharing it equally reproduces the latter on average and does not depend on
    # the column order.
    _, group = np.unique(codes, axis=1, return_inverse=True)
    group = np.ravel(group)
    shared = importance.copy()
    for g in np.unique(group):
        members = group == g
        shared[members] = importance[members].mean(axis=0)
    return shared


def dci(
    codes: ArrayLike,
    factors: ArrayLike,
    *,
    predictor: Literal["hist_gbt", "gbt"] = "hist_gbt",
    train_fraction: float = 2.0 / 3.0,
    factor_bins: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Disentanglement, completeness and informativeness (Eastwood & Williams 2018), disentanglement_lib's
    gradient-boosted-tree version.

    One boosted-tree classifier per factor predicts the factor from all codes; the feature importances
    form the matrix :math:`R_{jk}` (code :math:`j`, factor :math:`k`, each column summing to 1). With
    :math:`H_K` the entropy in base :math:`K` (number of factors) and :math:`H_J` in base :math:`J`
    (number of codes),

    .. math:: D = \\sum_j \\rho_j (1 - H_K(R_{j\\cdot})), \\quad \\rho_j = \\frac{\\sum_k R_{jk}}{\\sum_{jk}
              R_{jk}}; \\qquad C = \\sum_k \\tilde\\rho_k (1 - H_J(R_{\\cdot k})),

    and informativeness is the mean test accuracy of the classifiers.

    Parameters
    ----------
    codes, factors : ArrayLike
        Shapes ``(num_data, num_codes)`` and ``(num_data, num_factors)``, both at least 2 columns.
    predictor : {"hist_gbt", "gbt"}
        ``"gbt"``: :class:`sklearn.ensemble.GradientBoostingClassifier` with its defaults (100 stages of
        depth-3 trees), exactly as disentanglement_lib; importances are its ``feature_importances_``. It
        grows one tree per class and stage and is slow (minutes for 10,000 points and dSprites' 40- and
        32-class factors). ``"hist_gbt"`` (default): :class:`~sklearn.ensemble.HistGradientBoostingClassifier`
        with the same schedule (100 stages, depth 3, learning rate 0.1, no early stopping), about 20
        times faster at 10,000 points; importance = total split gain per code (the loss reduction its
        splits bring, the analogue of ``feature_importances_``), normalised per factor, and shared
        equally among identical code columns, over which ``"gbt"`` spreads it at random. On the test
        representations the two agree within 0.05 on all three scores.
    train_fraction : float
        Fraction of the rows (drawn at random) to train on; the rest measure informativeness. 2/3 gives
        disentanglement_lib's 10,000 train and 5,000 test points from 15,000 rows.
    factor_bins : int, optional
        Discretise continuous factors into this many bins first.
    seed : int
        Seed of the train/test split and of the classifiers.

    Returns
    -------
    dict
        ``disentanglement`` and ``completeness`` in [0, 1], ``informativeness`` (mean test accuracy) and
        ``informativeness_train`` (mean training accuracy).

    Raises
    ------
    ValueError
        If an input is invalid (see :func:`mig`), ``predictor`` is unknown, or ``train_fraction`` is not
        in (0, 1).

    References
    ----------
    Eastwood, C. & Williams, C. K. I. (2018). A framework for the quantitative evaluation of disentangled
    representations. ICLR, Sec. 2.
    """
    if predictor not in ("hist_gbt", "gbt"):
        raise ValueError(f"`predictor` must be 'hist_gbt' or 'gbt'; got {predictor!r}.")
    c, f = _check_pair(codes, factors, min_codes=2, min_factors=2)
    labels = _factor_labels(f, factor_bins)
    train, test = _split(c.shape[0], train_fraction, seed)
    importance = np.zeros((c.shape[1], labels.shape[1]))
    train_accuracy, test_accuracy = [], []
    # One thread: OpenMP spin-waiting on a shared 2-core machine made the histogram trees 10-20x slower.
    with threadpool_limits(limits=1, user_api="openmp"):
        for k in range(labels.shape[1]):
            if predictor == "gbt":
                model = GradientBoostingClassifier(random_state=seed).fit(c[train], labels[train, k])
                importance[:, k] = np.abs(model.feature_importances_)
            else:
                model = HistGradientBoostingClassifier(
                    learning_rate=0.1, max_iter=100, max_depth=3, early_stopping=False, random_state=seed
                ).fit(c[train], labels[train, k])
                importance[:, k] = _split_gain_importance(model, c.shape[1])
            train_accuracy.append(np.mean(model.predict(c[train]) == labels[train, k]))
            test_accuracy.append(np.mean(model.predict(c[test]) == labels[test, k]))
    if predictor == "hist_gbt":
        importance = _share_among_duplicates(importance, c[train])
    return {
        "disentanglement": _dci_disentanglement(importance),
        "completeness": _dci_completeness(importance),
        "informativeness": float(np.mean(test_accuracy)),
        "informativeness_train": float(np.mean(train_accuracy)),
    }


def sap(
    codes: ArrayLike,
    factors: ArrayLike,
    *,
    continuous_factors: bool = False,
    train_fraction: float = 2.0 / 3.0,
    factor_bins: int | None = None,
    seed: int = 0,
) -> float:
    """Separated attribute predictability (Kumar et al. 2018), disentanglement_lib's ``SAP_score``.

    A score matrix :math:`S_{jk}` says how well code :math:`j` alone predicts factor :math:`k`; SAP is the
    mean over factors of the gap between the two largest scores in a column. For discrete factors
    (disentanglement_lib's setting) :math:`S_{jk}` is the test accuracy of a linear SVM
    (``LinearSVC(C=0.01, class_weight="balanced")``) on the single code; for continuous factors it is the
    squared correlation, on all rows.

    Parameters
    ----------
    codes, factors : ArrayLike
        Shapes ``(num_data, num_codes)`` with ``num_codes >= 2`` and ``(num_data, num_factors)``.
    continuous_factors : bool
        Score with squared correlations instead of classifiers (disentanglement_lib: False).
    train_fraction : float
        Fraction of the rows to train the classifiers on (discrete factors); 2/3 gives
        disentanglement_lib's 10,000 / 5,000.
    factor_bins : int, optional
        Discretise continuous factors into classes first (discrete scoring only).
    seed : int
        Seed of the split and the classifiers.

    Returns
    -------
    float
        In [0, 1]. A single linear boundary on one code cannot separate many classes, so even a perfect
        code scores well below 1 on factors with many values; compare representations, not against 1.

    Raises
    ------
    ValueError
        If an input is invalid (see :func:`mig`) or ``train_fraction`` is not in (0, 1).

    References
    ----------
    Kumar, A., Sattigeri, P. & Balakrishnan, A. (2018). Variational inference of disentangled latent
    concepts from unlabeled observations. ICLR, Sec. 3.
    """
    c, f = _check_pair(codes, factors, min_codes=2, min_factors=1)
    score = np.zeros((c.shape[1], f.shape[1]))
    if continuous_factors:
        for j in range(c.shape[1]):
            for k in range(f.shape[1]):
                cov = np.cov(c[:, j], f[:, k], ddof=1)
                if cov[0, 0] > 1e-12 and cov[1, 1] > 0:
                    score[j, k] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
    else:
        labels = _factor_labels(f, factor_bins)
        train, test = _split(c.shape[0], train_fraction, seed)
        for j in range(c.shape[1]):
            for k in range(labels.shape[1]):
                classifier = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
                classifier.fit(c[train, j : j + 1], labels[train, k])
                score[j, k] = np.mean(classifier.predict(c[test, j : j + 1]) == labels[test, k])
    top_two = np.sort(score, axis=0)[::-1][:2]
    return float(np.mean(top_two[0] - top_two[1]))


def _roc_auc(classes: np.ndarray, probabilities: np.ndarray, labels: np.ndarray) -> float:
    # Macro one-vs-rest ROC-AUC over the classes that occur and do not fill the whole set (where ROC-AUC
    # is defined); disentanglement_lib's MultiLabelBinarizer version is the same when every class occurs.
    scores = []
    for column, label in enumerate(classes):
        positive = labels == label
        if 0 < positive.sum() < positive.size:
            scores.append(roc_auc_score(positive, probabilities[:, column]))
    return float(np.mean(scores)) if scores else float("nan")


def _modularity(mutual_info: np.ndarray) -> float:
    """Modularity of a ``[num_codes, num_factors]`` mutual-information matrix."""
    squared = mutual_info**2
    peak = squared.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_code = 1.0 - (squared.sum(axis=1) - peak) / (peak * (squared.shape[1] - 1.0))
    per_code[peak == 0.0] = 0.0
    return float(np.mean(per_code))


def modularity_explicitness(
    codes: ArrayLike,
    factors: ArrayLike,
    *,
    num_bins: int = 20,
    train_fraction: float = 2.0 / 3.0,
    factor_bins: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Modularity and explicitness (Ridgeway & Mozer 2018), as in disentanglement_lib.

    Modularity: with :math:`m_{jk}` the mutual information of discretised code :math:`j` and factor
    :math:`k` and :math:`\\theta_j = \\max_k m_{jk}`,

    .. math:: \\mathrm{modularity} = \\frac{1}{J} \\sum_j \\Big(1 - \\frac{\\sum_{k \\ne k^*_j} m_{jk}^2}
              {\\theta_j^2 (K - 1)}\\Big),

    with a code carrying no information scoring 0. Explicitness: the mean over factors of the one-vs-rest
    ROC-AUC of a logistic regression from all standardised codes to the factor, on held-out rows.

    Parameters
    ----------
    codes, factors : ArrayLike
        Shapes ``(num_data, num_codes)`` and ``(num_data, num_factors)`` with ``num_factors >= 2``.
    num_bins : int
        Equal-width bins per code for the mutual information (disentanglement_lib: 20).
    train_fraction : float
        Fraction of the rows to fit the logistic regressions on; the MI uses the same rows, as
        disentanglement_lib (2/3 gives its 10,000 / 5,000).
    factor_bins : int, optional
        Discretise continuous factors into this many bins first.
    seed : int
        Seed of the split and the classifiers.

    Returns
    -------
    dict
        ``modularity`` in [0, 1]; ``explicitness`` (test ROC-AUC, 0.5 is chance) and
        ``explicitness_train``.

    Raises
    ------
    ValueError
        If an input is invalid (see :func:`mig`) or ``train_fraction`` is not in (0, 1).

    References
    ----------
    Ridgeway, K. & Mozer, M. C. (2018). Learning deep disentangled embeddings with the F-statistic loss.
    NeurIPS, Sec. 3.
    """
    c, f = _check_pair(codes, factors, min_codes=1, min_factors=2)
    labels = _factor_labels(f, factor_bins)
    train, test = _split(c.shape[0], train_fraction, seed)

    modularity = _modularity(_mutual_info(discretize(c[train], num_bins), labels[train]))
    mean, std = c[train].mean(0), c[train].std(0)
    std[std == 0.0] = 1.0  # a constant code stays constant (zero) instead of NaN
    train_codes, test_codes = (c[train] - mean) / std, (c[test] - mean) / std
    explicit_train, explicit_test = [], []
    for k in range(labels.shape[1]):
        if np.unique(labels[train, k]).size < 2:
            raise ValueError(
                f"factor column {k} takes one value in the training rows; pass more rows or a larger "
                "`train_fraction`."
            )
        # max_iter: sklearn's default of 100 L-BFGS iterations stops short on some codes (ConvergenceWarning);
        # the metric is defined at the fitted optimum.
        model = LogisticRegression(max_iter=1000, random_state=seed).fit(train_codes, labels[train, k])
        explicit_train.append(_roc_auc(model.classes_, model.predict_proba(train_codes), labels[train, k]))
        explicit_test.append(_roc_auc(model.classes_, model.predict_proba(test_codes), labels[test, k]))
    return {
        "modularity": modularity,
        "explicitness": float(np.nanmean(explicit_test)),
        "explicitness_train": float(np.nanmean(explicit_train)),
    }


def gaussian_total_correlation(codes: ArrayLike) -> float:
    """Total correlation of a Gaussian with the codes' covariance (disentanglement_lib's unsupervised score).

    The KL divergence from the Gaussian with covariance :math:`\\Sigma` to the product of its marginals,

    .. math:: \\mathrm{TC} = \\tfrac12 \\Big(\\sum_j \\log \\Sigma_{jj} - \\log\\det\\Sigma\\Big)
              = -\\tfrac12 \\log\\det \\mathrm{Corr},

    computed from the correlation matrix. Needs no factors.

    Parameters
    ----------
    codes : ArrayLike
        Shape ``(num_data, num_codes)``.

    Returns
    -------
    float
        In nats, >= 0; 0 for uncorrelated codes. Constant codes are independent of the others and are
        dropped. ``inf`` if the remaining codes are linearly dependent (an eigenvalue of the correlation
        matrix below ``1e-12``, e.g. a code copied into two dimensions).

    Raises
    ------
    ValueError
        If ``codes`` is not 2-D, not finite, or has fewer than 2 rows.
    """
    c = _as_2d("codes", codes)
    c = c[:, c.std(0) > 0.0]
    if c.shape[1] < 2:
        return 0.0
    correlation = np.corrcoef(c, rowvar=False)
    eigenvalues = np.linalg.eigvalsh(correlation)
    if eigenvalues.min() < 1e-12:
        return float("inf")
    return float(max(-0.5 * np.sum(np.log(eigenvalues)), 0.0))


# --------------------------------------------------------------------------------------------------------
# Oracle metrics
# --------------------------------------------------------------------------------------------------------


def _check_oracle(ds: Any) -> tuple[int, ...]:
    missing = [
        name
        for name in ("factor_sizes", "sample_factors", "observations_from_factors")
        if not hasattr(ds, name)
    ]
    if missing:
        raise TypeError(
            f"`ds` must be a ground-truth oracle with factor_sizes, sample_factors and "
            f"observations_from_factors; {type(ds).__name__} lacks {', '.join(missing)}. Use e.g. "
            "ppzoo.data.load('shapes', ...)."
        )
    sizes = tuple(int(s) for s in ds.factor_sizes)
    if len(sizes) < 2:
        raise ValueError(f"`ds` must have at least 2 factors; got factor_sizes={sizes}.")
    return sizes


def _encoder(encode: Callable, ds: Any, encode_batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    if not callable(encode):
        raise TypeError(
            f"`encode` must be a function from images (n, H, W) to codes (n, dim); got {encode!r}."
        )

    def codes_of(factor_indices: np.ndarray) -> np.ndarray:
        blocks = []
        for start in range(0, factor_indices.shape[0], encode_batch_size):
            observations = ds.observations_from_factors(factor_indices[start : start + encode_batch_size])
            block = np.asarray(encode(observations))
            if block.ndim != 2 or block.shape[0] != observations.shape[0]:
                raise ValueError(
                    f"`encode` must map {observations.shape[0]} images to codes of shape "
                    f"({observations.shape[0]}, dim); got shape {block.shape}."
                )
            if not np.all(np.isfinite(block)):
                raise ValueError("`encode` returned NaN or inf codes.")
            blocks.append(block.astype(np.float64))
        return np.concatenate(blocks)

    return codes_of


def _sample_grid(ds: Any, rng: np.random.Generator, num_points: int, batch_size: int, num_factors: int):
    draws = np.array(ds.sample_factors(rng, num_points * batch_size), dtype=np.int64)
    if draws.shape != (num_points * batch_size, num_factors):
        raise ValueError(
            f"`ds.sample_factors(rng, n)` must return integer indices of shape (n, {num_factors}); got "
            f"shape {draws.shape}."
        )
    return draws.reshape(num_points, batch_size, num_factors)


def _fixed_factor_batches(
    ds: Any, rng: np.random.Generator, sizes: tuple[int, ...], num_points: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each point, a factor index and a batch of factor draws sharing that factor's value."""
    chosen = rng.integers(0, len(sizes), num_points)
    factors = _sample_grid(ds, rng, num_points, batch_size, len(sizes))
    rows = np.arange(num_points)
    factors[rows, :, chosen] = factors[rows, :1, chosen]
    return chosen, factors


def beta_vae_score(
    encode: Callable[[np.ndarray], ArrayLike],
    ds: Any,
    key,
    *,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    encode_batch_size: int = 4096,
) -> dict[str, float]:
    """The beta-VAE disentanglement score (Higgins et al. 2017), disentanglement_lib's sklearn version.

    Each point: choose a factor :math:`k` uniformly, draw ``batch_size`` pairs of factor vectors that
    share factor :math:`k` and nothing else by design, encode both images of every pair, and form the
    feature :math:`\\frac1B \\sum_b |z_b^{(1)} - z_b^{(2)}|`. A logistic regression predicts :math:`k`
    from the feature; the score is its accuracy on ``num_eval`` fresh points.

    Parameters
    ----------
    encode : callable
        Maps images ``(n, H, W)`` to codes ``(n, num_codes)`` (numpy or JAX arrays), e.g. posterior means.
    ds : oracle
        A ground-truth data set such as :class:`ppzoo.data.shapes.ShapesDataset`.
    key : int, numpy.random.Generator or jax.Array
        Randomness of the factor draws and the classifier.
    batch_size : int
        Pairs per point (disentanglement_lib: 64).
    num_train, num_eval : int
        Points to train and evaluate the classifier (disentanglement_lib: 10,000 and 5,000). Small values
        are fine for smoke tests.
    encode_batch_size : int
        Images per call of ``encode`` (memory, not the result).

    Returns
    -------
    dict
        ``train_accuracy`` and ``eval_accuracy`` in [0, 1]; chance is ``1 / num_factors``.

    Notes
    -----
    At the default sizes the oracle renders and ``encode`` sees 2 x 64 x 15,000 = 1.92 million images
    (several minutes of rendering alone at 64 x 64 on one CPU core); smaller sizes give noisier scores.
    The logistic regression keeps scikit-learn's defaults as disentanglement_lib does (100 lbfgs
    iterations on unscaled features), so it may warn that it did not converge.

    Raises
    ------
    TypeError
        If ``encode`` is not callable, ``ds`` is not an oracle, or ``key`` is not a seed, Generator or key.
    ValueError
        If a size is not a positive int, ``encode`` returns codes of the wrong shape or non-finite codes,
        or every training point fixed the same factor (``num_train`` too small).

    References
    ----------
    Higgins, I. et al. (2017). beta-VAE: Learning basic visual concepts with a constrained variational
    framework. ICLR, Sec. 3.
    """
    sizes = _check_oracle(ds)
    batch_size = _check_int("batch_size", batch_size, 1)
    num_train = _check_int("num_train", num_train, 2)
    num_eval = _check_int("num_eval", num_eval, 1)
    encode_batch_size = _check_int("encode_batch_size", encode_batch_size, 1)
    codes_of = _encoder(encode, ds, encode_batch_size)
    rng = as_generator(key)

    def features(num_points: int) -> tuple[np.ndarray, np.ndarray]:
        points_per_block = max(1, encode_batch_size // (2 * batch_size))
        labels, rows = [], []
        for start in range(0, num_points, points_per_block):
            count = min(points_per_block, num_points - start)
            # Pairs share factor k; across pairs it varies, as in disentanglement_lib.
            chosen = rng.integers(0, len(sizes), count)
            first = _sample_grid(ds, rng, count, batch_size, len(sizes))
            second = _sample_grid(ds, rng, count, batch_size, len(sizes))
            second[np.arange(count), :, chosen] = first[np.arange(count), :, chosen]
            both = np.concatenate([first.reshape(-1, len(sizes)), second.reshape(-1, len(sizes))])
            codes = codes_of(both)
            z1 = codes[: count * batch_size].reshape(count, batch_size, -1)
            z2 = codes[count * batch_size :].reshape(count, batch_size, -1)
            labels.append(chosen)
            rows.append(np.mean(np.abs(z1 - z2), axis=1))
        return np.concatenate(rows), np.concatenate(labels)

    train_x, train_y = features(num_train)
    if np.unique(train_y).size < 2:
        raise ValueError(
            f"all {num_train} training points fixed the same factor, so no classifier can be trained; "
            "increase `num_train`."
        )
    model = LogisticRegression(max_iter=1000, random_state=int(rng.integers(2**31 - 1))).fit(train_x, train_y)
    eval_x, eval_y = features(num_eval)
    return {
        "train_accuracy": float(np.mean(model.predict(train_x) == train_y)),
        "eval_accuracy": float(np.mean(model.predict(eval_x) == eval_y)),
    }


def factor_vae_score(
    encode: Callable[[np.ndarray], ArrayLike],
    ds: Any,
    key,
    *,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_threshold: float = 0.05,
    encode_batch_size: int = 4096,
) -> dict[str, float]:
    """The FactorVAE disentanglement score (Kim & Mnih 2018), as in disentanglement_lib.

    Codes are scaled by their standard deviations over ``num_variance_estimate`` random images, and codes
    whose standard deviation is below ``prune_threshold`` (collapsed to the prior) are dropped. Each point:
    choose a factor :math:`k`, draw ``batch_size`` factor vectors sharing factor :math:`k`, encode them, and
    vote for the pair (:math:`k`, code with the smallest scaled variance). A majority-vote classifier maps
    each code to the factor that voted for it most; the score is its accuracy on ``num_eval`` fresh votes.

    Parameters
    ----------
    encode : callable
        Maps images ``(n, H, W)`` to codes ``(n, num_codes)``.
    ds : oracle
        A ground-truth data set such as :class:`ppzoo.data.shapes.ShapesDataset`.
    key : int, numpy.random.Generator or jax.Array
        Randomness of the factor draws.
    batch_size : int
        Images per vote (disentanglement_lib: 64).
    num_train, num_eval : int
        Votes to build and to evaluate the classifier (disentanglement_lib: 10,000 and 5,000).
    num_variance_estimate : int
        Images for the global variances (disentanglement_lib: 10,000).
    prune_threshold : float
        Minimum standard deviation of an active code (disentanglement_lib's study: 0.05).
    encode_batch_size : int
        Images per call of ``encode``.

    Returns
    -------
    dict
        ``train_accuracy`` and ``eval_accuracy`` in [0, 1] (chance is about ``1 / num_factors``), and
        ``num_active_dims``. All zeros when no code is active.

    Notes
    -----
    At the default sizes ``encode`` sees 64 x 15,000 + 10,000 = 970,000 images.

    disentanglement_lib records the position of the arg-min among the *active* codes as if it indexed all
    codes, which mislabels the votes when some codes are pruned, and reports the number of all codes as
    ``num_active_dims``; here the arg-min is mapped back to the code it belongs to and the active codes
    are counted. Both agree when no code is pruned.

    Raises
    ------
    TypeError
        If ``encode`` is not callable, ``ds`` is not an oracle, or ``key`` is not a seed, Generator or key.
    ValueError
        If a size is not a positive int, ``prune_threshold`` is negative, or ``encode`` returns codes of the
        wrong shape or non-finite codes.

    References
    ----------
    Kim, H. & Mnih, A. (2018). Disentangling by factorising. ICML, Sec. 4.
    """
    sizes = _check_oracle(ds)
    batch_size = _check_int("batch_size", batch_size, 2)
    num_train = _check_int("num_train", num_train, 1)
    num_eval = _check_int("num_eval", num_eval, 1)
    num_variance_estimate = _check_int("num_variance_estimate", num_variance_estimate, 2)
    encode_batch_size = _check_int("encode_batch_size", encode_batch_size, 1)
    if not isinstance(prune_threshold, numbers.Real) or prune_threshold < 0:
        raise ValueError(f"`prune_threshold` must be a number >= 0, e.g. 0.05; got {prune_threshold!r}.")
    codes_of = _encoder(encode, ds, encode_batch_size)
    rng = as_generator(key)

    draws = _sample_grid(ds, rng, num_variance_estimate, 1, len(sizes))[:, 0]
    global_variances = np.var(codes_of(draws), axis=0, ddof=1)
    active = np.flatnonzero(np.sqrt(global_variances) >= prune_threshold)
    if active.size == 0:
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}

    def votes(num_points: int) -> np.ndarray:
        counts = np.zeros((len(sizes), global_variances.size), dtype=np.int64)
        points_per_block = max(1, encode_batch_size // batch_size)
        for start in range(0, num_points, points_per_block):
            count = min(points_per_block, num_points - start)
            chosen, factors = _fixed_factor_batches(ds, rng, sizes, count, batch_size)
            codes = codes_of(factors.reshape(-1, len(sizes))).reshape(count, batch_size, -1)
            local = np.var(codes, axis=1, ddof=1)
            argmin = active[np.argmin(local[:, active] / global_variances[active], axis=1)]
            np.add.at(counts, (chosen, argmin), 1)
        return counts

    train_votes = votes(num_train)
    classifier = np.argmax(train_votes, axis=0)
    columns = np.arange(train_votes.shape[1])
    eval_votes = votes(num_eval)
    return {
        "train_accuracy": float(train_votes[classifier, columns].sum() / train_votes.sum()),
        "eval_accuracy": float(eval_votes[classifier, columns].sum() / eval_votes.sum()),
        "num_active_dims": float(active.size),
    }
