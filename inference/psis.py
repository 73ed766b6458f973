"""Pareto-smoothed importance sampling (PSIS) diagnostics of a fitted guide, and importance resampling.

A fitted guide :math:`q` is judged by the importance ratios :math:`r_s = p(x, z_s) / q(z_s)`,
:math:`z_s \\sim q`: the shape :math:`\\hat k` of a generalized Pareto distribution fitted to their upper
tail says how far the importance-sampling estimate, and hence the guide, can be trusted (Yao, Vehtari,
Simpson & Gelman 2018, "Yes, but did it work?"; Vehtari et al. 2024, "Pareto smoothed importance
sampling"): below 0.5 the guide is close and the ratios have finite variance; above 0.7 the approximation
is unreliable. The smoothing and :math:`\\hat k` are ArviZ's (``azstats.psislw``), nothing is re-implemented.

Two kinds of diagnostic, chosen from the structure of the model and the guide:

``"joint"``
    The model has global latents (or a guide that couples data points): ``num_draws`` draws of every
    latent site from the guide, one :math:`\\hat k` for the whole posterior, the effective sample size of the
    smoothed weights, and the draws themselves so that :func:`resample` can importance-resample them.
    Subsampled plates are evaluated on all their data (the full model density).
``"per_datum"``
    Every latent site, in model and guide, is a per-datum latent in the plate ``"data"`` (VAEs, the
    iVAE): given the learned parameters the posterior factorises over data points, and so does the guide,
    so each item :math:`n` has its own ratio :math:`p(x_n, z_n) / q(z_n \\mid x_n)` and its own
    :math:`\\hat k`. Computed on ``num_items`` items chosen at random (all of them when there are fewer),
    ``num_draws`` draws each; reported as the distribution of the items' :math:`\\hat k` and the share above
    0.7. The densities are unscaled: a training-time scale (beta-VAE's :math:`\\beta` on ``z``, minibatch
    scaling, an annealing weight) is not part of the generative model whose posterior is approximated.
    ``numpyro.factor`` sites in the plate are included as written; factors outside it cannot be split per
    item and are left out (named in ``PSISResult.left_out``).

References
----------
Yao, Y., Vehtari, A., Simpson, D. and Gelman, A. (2018). Yes, but did it work?: Evaluating variational
inference. ICML.
Vehtari, A., Simpson, D., Gelman, A., Yao, Y. and Gabry, J. (2024). Pareto smoothed importance sampling.
JMLR 25(72).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer import autoguide
from numpyro.primitives import Messenger

from ppzoo.inference._base import split_data

__all__ = [
    "K_THRESHOLD",
    "PSISResult",
    "smooth",
    "weights_ess",
    "moment_pareto_k",
    "diagnose",
    "joint_ratios",
    "joint_result",
    "resample",
    "mode_of",
    "has_density",
    "skip_reason",
    "warning_of",
    "moment_warning",
    "moment_sites",
    "drawn_sites",
    "all_per_datum",
    "DATA_PLATE",
    "ITEM_SHARE",
    "diagnose_fit",
    "check_resample",
]

#: Above this :math:`\hat k` the importance ratios have (practically) no finite mean: the guide is not to be
#: trusted (Vehtari et al. 2024, Sec. 3.2).
K_THRESHOLD = 0.7

#: The plate of per-datum latents, by the zoo's site vocabulary.
DATA_PLATE = "data"

Mode = Literal["joint", "per_datum"]


@dataclasses.dataclass(frozen=True, eq=False)
class PSISResult:
    """The PSIS diagnostic of one fitted guide.

    Attributes
    ----------
    mode : {"joint", "per_datum"}
        One :math:`\\hat k` for the whole posterior, or one per data item (amortized guides).
    pareto_k : float
        ``"joint"``: the :math:`\\hat k` of the importance ratios. ``"per_datum"``: the median over the items
        (the lower median: one item's value).
    ess : float
        Effective sample size of the smoothed weights, :math:`1 / \\sum_s w_s^2` (``"per_datum"``: median
        over the items).
    num_draws : int
        Guide draws per :math:`\\hat k`.
    item_k : numpy.ndarray or None
        ``"per_datum"``: the :math:`\\hat k` of each item in ``items``.
    items : numpy.ndarray or None
        ``"per_datum"``: the data indices diagnosed.
    log_weights : numpy.ndarray or None
        ``"joint"``: the smoothed, normalised log weights of the draws ``(num_draws,)``.
    draws : dict or None
        ``"joint"`` (when asked for): the guide's draws of the latent and deterministic sites, ``(num_draws, ...)``.
    log_joint : numpy.ndarray or None
        ``"joint"``: :math:`\\log p(x, z_s)` of each draw (the ``lp`` of resampled draws).
    left_out : tuple of str
        ``numpyro.factor`` sites outside the plate, not counted per item.
    moment_k, moment_at : float or None, str or None
        ``"joint"`` diagnostics of a fit (SVI, Pathfinder): the largest :math:`\\hat k` of the weighted means
        and variances of the global latent scalars (:func:`moment_pareto_k`) and the scalar it belongs to;
        ``None`` otherwise.
    """

    mode: Mode
    pareto_k: float
    ess: float
    num_draws: int
    item_k: np.ndarray | None = None
    items: np.ndarray | None = None
    log_weights: np.ndarray | None = dataclasses.field(default=None, repr=False)
    draws: dict[str, np.ndarray] | None = dataclasses.field(default=None, repr=False)
    log_joint: np.ndarray | None = dataclasses.field(default=None, repr=False)
    left_out: tuple[str, ...] = ()
    moment_k: float | None = None
    moment_at: str | None = None

    @property
    def share_above(self) -> float | None:
        """``"per_datum"``: the share of items with :math:`\\hat k` above :data:`K_THRESHOLD`."""
        return None if self.item_k is None else float(np.mean(self.item_k > K_THRESHOLD))

    @property
    def reliable(self) -> bool:
        """``"joint"``: :math:`\\hat k \\le 0.7`. ``"per_datum"``: at most 10% of the items above 0.7."""
        if self.mode == "joint":
            return bool(self.pareto_k <= K_THRESHOLD and (self.moment_k is None or self.moment_k <= K_THRESHOLD))
        return bool(self.share_above <= ITEM_SHARE)

    def summary(self) -> dict[str, Any]:
        """The numbers a report or a results file keeps (plain floats)."""
        out = {"mode": self.mode, "pareto_k": float(self.pareto_k), "ess": float(self.ess),
               "num_draws": int(self.num_draws)}
        if self.moment_k is not None:
            out.update(moment_k=float(self.moment_k), moment_at=self.moment_at)
        if self.item_k is not None:
            out.update(num_items=int(self.item_k.size), share_above_0_7=self.share_above,
                       item_k_quantiles={q: float(np.quantile(self.item_k, q, method="inverted_cdf")) for q in (0.1, 0.5, 0.9)})
        return out


#: ``"per_datum"``: the share of items above :data:`K_THRESHOLD` beyond which the encoder is flagged.
#: An item's :math:`\hat k` from 1000 draws is noisy: on items of equal true k (a Gaussian proposal at 0.3x the
#: sd of a Gaussian target, tests/test_amortization.py) the estimates spread with sd ~0.16 and sat below the
#: asymptotic k (median 0.77-0.81 for k = 0.91). So an encoder whose items all sit near 0.5 puts a few percent
#: of them above 0.7 by noise alone; one whose estimates centre near 0.6 puts ~25% above and is flagged.
ITEM_SHARE = 0.1


#: :func:`skip_reason` for ``psis_draws=0``.
TURNED_OFF = "psis_draws=0 turned the diagnostic off"


#: Log ratios that all lie within this of each other are treated as constant by :func:`smooth`.
CONSTANT_SPREAD = 1e-3


def smooth(log_ratios: Any, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's PSIS of ``log_ratios`` (:math:`\\log p - \\log q`) along ``axis``.

    Returns the smoothed log weights, normalised along ``axis`` (moved last), and :math:`\\hat k` (the other
    axes; ``-inf`` where the ratios are constant to within :data:`CONSTANT_SPREAD`, an exact guide). ArviZ's ``psislw`` follows the LOO convention, where the ratios are :math:`1 / p(y_i \\mid \\theta)`,
    and negates its input; so it is given :math:`-(\\log p - \\log q)`. Check: a N(0, 1) proposal for a
    N(0, 1.5^2) target gives :math:`\\hat k \\approx 0.53` (theory :math:`1 - 1/1.5^2 = 0.56`).
    """
    import arviz_stats  # noqa: F401  (registers the ``azstats`` accessor)
    import xarray as xr

    ratios = np.moveaxis(np.asarray(log_ratios, dtype=np.float64), axis, -1)
    if ratios.shape[-1] < 5:
        raise ValueError(f"PSIS needs at least 5 draws; got {ratios.shape[-1]}. Use psis_draws=1000.")
    # Not finite ratios (a draw outside the model's support) get zero weight rather than breaking the fit.
    ratios = np.where(np.isnan(ratios), -np.inf, ratios)
    # Constant ratios (the guide is the posterior) have no tail to fit: ArviZ refuses them, or returns NaN when
    # float32 rounding leaves a handful of distinct values. Ratios within CONSTANT_SPREAD of each other (weights
    # equal to 0.1%) count as constant: equal weights, k = -inf.
    constant = np.ptp(ratios, axis=-1) < CONSTANT_SPREAD
    log_weights = np.full(ratios.shape, -np.log(ratios.shape[-1]))
    khat = np.full(ratios.shape[:-1], -np.inf)
    if not constant.all():
        varying = ratios[~constant]
        lw, k = xr.DataArray(-varying, dims=["row", "draw"]).azstats.psislw(dim="draw")
        log_weights[~constant] = np.asarray(lw.transpose("row", "draw"))
        khat[~constant] = np.asarray(k)
    return log_weights, khat


def moment_pareto_k(log_ratios: Any, draws: Mapping[str, Any]) -> tuple[float, str | None]:
    """The largest :math:`\\hat k` of the importance-weighted means and variances of every scalar in ``draws``.

    Weighted draws estimate a posterior mean well when the products :math:`r_s |x_s - m|` have a thin upper
    tail, and a variance when :math:`r_s (x_s - m)^2` do. At a finite number of draws their tails look
    heavier than those of the ratios :math:`r_s` alone, so the ratios' :math:`\\hat k` can pass while an sd
    still rests on a handful of draws (Vehtari et al. 2024, the :math:`\\hat k` of a specific functional;
    priorsense's ``pareto_k_mean`` / ``pareto_k_var``, here centred at the weighted mean ``m``). Each is
    ArviZ's PSIS :math:`\\hat k` (:func:`smooth`) of ``log r + log|x - m|`` and ``log r + 2 log|x - m|``.

    Measured (4000 draws of a N(0, 1) proposal, 20 seeds): for a N(0, 1.3^2) target the ratios' k-hat is
    0.38 +- 0.07 and this one 0.53 +- 0.08; for N(0, 1.5^2) 0.51 +- 0.08 and 0.67 +- 0.09, higher on every
    seed by at least 0.095; for the exact target (constant ratios) 0.04 +- 0.06. On posteriordb's sblrc-blr
    and one-compartment references, Pathfinder's pool had ratio k-hats 0.55 and 0.66 (no warning) while its
    resampled sds were 15% and 28% too small; this k-hat is 0.73 and 0.95 there.

    ``log_ratios``: ``(S,)``; ``draws``: site -> ``(S, ...)``, the draws the ratios belong to. Returns the
    largest :math:`\\hat k` and the scalar it belongs to (e.g. ``"beta[2]"``); ``(-inf, None)`` when every
    scalar is constant.
    """
    log_ratios = np.where(np.isnan(np.asarray(log_ratios, np.float64)), -np.inf, np.asarray(log_ratios, np.float64))
    weights = np.exp(log_ratios - np.logaddexp.reduce(log_ratios))
    names, columns = [], []
    for name, value in draws.items():
        value = np.asarray(value, np.float64).reshape(len(log_ratios), -1)
        shape = np.shape(draws[name])[1:]
        for j in range(value.shape[1]):
            names.append(name if not shape else f"{name}[{', '.join(map(str, np.unravel_index(j, shape)))}]")
        columns.append(value)
    if not columns:
        return -np.inf, None
    values = np.concatenate(columns, axis=1).T  # (scalars, S)
    keep = np.all(np.isfinite(values), axis=1) & (np.ptp(values, axis=1) > 0)
    if not keep.any():
        return -np.inf, None
    values = values[keep]
    # The smallest positive float keeps draws exactly at the mean (log 0) finite; they are never in the tail.
    log_deviation = np.log(np.maximum(np.abs(values - (values @ weights)[:, None]), np.finfo(np.float64).tiny))
    khat = np.full(len(values), -np.inf)
    for start in range(0, len(values), 256):  # rows in batches: memory 256 x S
        rows = slice(start, start + 256)
        for power in (1, 2):
            khat[rows] = np.maximum(khat[rows], smooth(log_ratios[None, :] + power * log_deviation[rows])[1])
    worst = int(np.argmax(khat))
    return float(khat[worst]), [n for n, k in zip(names, keep) if k][worst]


def weights_ess(log_weights: np.ndarray) -> np.ndarray:
    """Effective sample size :math:`1 / \\sum_s w_s^2` of normalised log weights along the last axis."""
    w = np.exp(log_weights - np.logaddexp.reduce(log_weights, axis=-1, keepdims=True))
    return 1.0 / np.sum(w**2, axis=-1)


class _PlateItems(Messenger):
    """Plate ``"data"`` on the indices ``items`` (or all data), every other subsampled plate on all its data."""

    def __init__(self, fn=None, items: jax.Array | None = None):
        self.items = items
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] != "plate":
            return
        size = msg["args"][0]
        value = self.items if (self.items is not None and msg["name"] == DATA_PLATE) else jnp.arange(size)
        msg["value"] = value
        msg["args"] = (size, value.shape[0])


def _traces(model, guide, params, key, data, items=None):
    guide_key, model_key = jax.random.split(key)
    g = handlers.seed(handlers.substitute(_PlateItems(guide, items), data=params), rng_seed=guide_key)
    guide_trace = handlers.trace(g).get_trace(**data)
    m = handlers.seed(handlers.substitute(_PlateItems(model, items), data=params), rng_seed=model_key)
    model_trace = handlers.trace(handlers.replay(m, guide_trace)).get_trace(**data)
    return model_trace, guide_trace


def _log_prob(site: Mapping[str, Any], *, scaled: bool) -> jax.Array:
    value, intermediates = site["value"], site["intermediates"]
    log_prob = site["fn"].log_prob(value, intermediates) if intermediates else site["fn"].log_prob(value)
    if scaled and site["scale"] is not None:
        log_prob = site["scale"] * log_prob
    return log_prob


def _data_axis(site: Mapping[str, Any]) -> int | None:
    """The axis of the plate ``"data"`` in a site's log-probability (batch shape), or None when outside it."""
    for frame in site.get("cond_indep_stack", ()):
        if frame.name == DATA_PLATE:
            return frame.dim
    return None


def _sample_sites(trace):
    return {n: s for n, s in trace.items() if s["type"] == "sample"}


def _latent_in_plate(trace) -> bool:
    latents = [s for s in _sample_sites(trace).values() if not s["is_observed"]]
    return bool(latents) and all(_data_axis(s) is not None for s in latents)


def mode_of(model: Callable[..., Any], guide: Callable[..., Any], params: Mapping[str, Any],
            data: Mapping[str, Any]) -> Mode:
    """``"per_datum"`` when every latent site of model and guide lies in the plate ``"data"``, else ``"joint"``.

    Decided from one abstract trace (``jax.eval_shape``): nothing is computed or compiled.
    """
    arrays, static = split_data(data)
    found: dict[str, Mode] = {}

    def probe(key, params, arrays):
        model_trace, guide_trace = _traces(model, guide, params, key, {**arrays, **static})
        found["mode"] = "per_datum" if _latent_in_plate(model_trace) and _latent_in_plate(guide_trace) else "joint"
        return jnp.zeros(())

    jax.eval_shape(probe, jax.random.key(0), params, arrays)
    return found["mode"]


def has_density(guide: Callable[..., Any]) -> bool:
    """Whether the guide has a density to weight against: not a point estimate (``AutoDelta``)."""
    return not isinstance(guide, autoguide.AutoDelta)


def skip_reason(guide: Callable[..., Any], params: Mapping[str, Any], data: Mapping[str, Any],
                psis_draws: int) -> str | None:
    """Why :func:`diagnose_fit` runs no diagnostic on this guide, in words for the report's n/a line, or
    ``None`` when it runs one."""
    if psis_draws == 0:
        return TURNED_OFF
    if not has_density(guide):
        return "the guide is a point estimate (AutoDelta): its log q is 0 whatever the value"
    sites = point_estimate_sites(guide, params, data)
    if sites:
        return (f"the guide draws {', '.join(sites)} from a Delta (a point estimate): its log q is 0 whatever the "
                "value, so importance ratios against it measure nothing")
    return None


def point_estimate_sites(guide: Callable[..., Any], params: Mapping[str, Any], data: Mapping[str, Any]) -> list[str]:
    """The guide's latent sites drawn from a ``Delta`` (point estimates: a zoo model's own encoder that returns
    codes, such as GAN-ICA's), from one abstract trace. Their log q is 0 whatever the value, so importance
    ratios against them measure nothing: such a guide has no density to diagnose.

    A guide that draws an auxiliary site (``infer={"is_auxiliary": True}``) and hands its transform to the
    model through ``Delta`` sites with the transform's log-Jacobian as ``log_density`` (NumPyro's
    ``AutoContinuous`` guides, the ICA guide) has a density: its Delta sites are not point estimates, and none
    is returned.
    """
    arrays, static = split_data(data)
    found: list[str] = []
    auxiliary: list[str] = []

    def probe(key, params, arrays):
        trace = handlers.trace(handlers.seed(handlers.substitute(guide, data=params), rng_seed=key)).get_trace(
            **arrays, **static)
        for name, site in _sample_sites(trace).items():
            if site["is_observed"]:
                continue
            if site.get("infer", {}).get("is_auxiliary"):
                auxiliary.append(name)
            fn = site["fn"]
            while hasattr(fn, "base_dist"):  # masked, expanded, independent wrappers
                fn = fn.base_dist
            if isinstance(fn, dist.Delta):
                found.append(name)
        return jnp.zeros(())

    jax.eval_shape(probe, jax.random.key(0), params, arrays)
    return [] if auxiliary else found


def _per_item(trace, num_items: int, left_out: set[str]) -> jax.Array:
    total = jnp.zeros(num_items)
    for name, site in _sample_sites(trace).items():
        axis = _data_axis(site)
        if axis is None:
            left_out.add(name)  # only factors get here: latent sites outside the plate mean mode "joint"
            continue
        log_prob = _log_prob(site, scaled=False)
        log_prob = jnp.broadcast_to(log_prob, (*log_prob.shape[: log_prob.ndim + axis], num_items,
                                               *log_prob.shape[log_prob.ndim + axis + 1:]))
        log_prob = jnp.moveaxis(log_prob, axis, 0).reshape(num_items, -1).sum(-1)
        total = total + log_prob
    return total


def diagnose(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    params: Mapping[str, Any],
    key: jax.Array,
    data: Mapping[str, Any],
    *,
    num_draws: int = 1000,
    num_items: int = 256,
    return_sites: list[str] | None = None,
    moment_sites: list[str] | None = None,
    batch_size: int = 64,
) -> PSISResult:
    """The PSIS diagnostic of ``guide`` (fitted: ``params``) for ``model(**data)``.

    Parameters
    ----------
    model, guide : callable
        The NumPyro model and the guide it was fit with.
    params : mapping
        The fitted parameters (``svi.get_params(state)``, ``fit.params``).
    key : jax key
        For the guide's draws (and, ``"per_datum"``, the choice of items).
    data : mapping
        The model's keyword arguments.
    num_draws : int
        Guide draws per :math:`\\hat k` (1000: a tail of 95 draws for the Pareto fit).
    num_items : int
        ``"per_datum"``: how many data items to diagnose.
    return_sites : list of str, optional
        ``"joint"``: sites whose draws to keep in ``PSISResult.draws`` (for :func:`resample`).
    moment_sites : list of str, optional
        ``"joint"``: sites whose weighted means and variances get the k-hat :func:`moment_pareto_k`
        (``PSISResult.moment_k``).
    batch_size : int
        ``"per_datum"``: at most this many draws evaluated at once (memory: draws x items x data size).

    Returns
    -------
    PSISResult

    Raises
    ------
    ValueError
        A guide with no density (``AutoDelta``); fewer than 5 draws.
    """
    if not has_density(guide):
        raise ValueError(
            "PSIS needs a guide with a density, but the guide is a point estimate (auto_delta). Use "
            "guide='auto_normal' or 'auto_mvn' to diagnose the fit or resample its draws."
        )
    if isinstance(num_draws, bool) or not isinstance(num_draws, (int, np.integer)) or num_draws < 5:
        raise ValueError(f"PSIS `num_draws` must be an integer of at least 5; got {num_draws!r}. Typical: 1000.")
    params = dict(params)
    mode = mode_of(model, guide, params, data)
    arrays, static = split_data(data)
    draws_key, items_key = jax.random.split(key)
    keys = jax.random.split(draws_key, num_draws)
    if mode == "per_datum":
        size = _plate_size(model, guide, params, data)
        n = min(num_items, size)
        items = jnp.sort(jax.random.choice(items_key, size, (n,), replace=False))
        chosen = items
        if n < size and not _reads_items(model, guide, params, data, items):
            # The model reads its data without numpyro.subsample: evaluate every item, keep the chosen ones.
            chosen, n = None, size
        left_out: set[str] = set()

        def item_ratios(key, params, arrays, items):
            model_trace, guide_trace = _traces(model, guide, params, key, {**arrays, **static}, items)
            return _per_item(model_trace, n, left_out) - _per_item(guide_trace, n, set())

        batch = max(b for b in range(1, min(batch_size, num_draws) + 1) if num_draws % b == 0)  # no remainder program
        ratios = jax.jit(lambda keys, params, arrays, items: jax.lax.map(
            lambda k: item_ratios(k, params, arrays, items), keys, batch_size=batch))(keys, params, arrays, chosen)
        ratios = np.asarray(ratios) if chosen is not None else np.asarray(ratios)[:, np.asarray(items)]
        log_weights, khat = smooth(ratios.T)
        ess = weights_ess(log_weights)
        median = float(np.quantile(khat, 0.5, method="inverted_cdf"))  # an item's value: -inf items stay -inf
        return PSISResult("per_datum", median, float(np.median(ess)), num_draws,
                          item_k=np.asarray(khat), items=np.asarray(items),
                          left_out=tuple(sorted(n_ for n_ in left_out)))

    names = list(return_sites or [])
    moments = list(moment_sites or [])
    wanted = names + [n for n in moments if n not in names]
    ratios = jax.jit(lambda keys, params, arrays: joint_ratios(model, guide, params, keys, {**arrays, **static},
                                                               wanted))(keys, params, arrays)
    return joint_result(*ratios, num_draws=num_draws, names=names, moment_sites=moments)


def joint_ratios(model: Callable[..., Any], guide: Callable[..., Any], params: Mapping[str, Any], keys: jax.Array,
                 data: Mapping[str, Any], names: list[str]) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    r"""The traceable half of a ``"joint"`` diagnostic: for each key of ``keys``, one guide draw's log ratio
    :math:`\log p(x, z) - \log q(z)`, its :math:`\log p(x, z)` and the values of the sites ``names``.

    One vmap over all draws: a lax.map in batches compiled 1.7x slower for a small model (the draws of
    global latents and their log densities are small). :func:`joint_result` smooths them on the host.
    """

    def joint(key):
        model_trace, guide_trace = _traces(model, guide, params, key, data)
        log_p = sum(_log_prob(s, scaled=True).sum() for s in _sample_sites(model_trace).values())
        log_q = sum(_log_prob(s, scaled=True).sum() for s in _sample_sites(guide_trace).values())
        values = {}
        for name in names:
            site = model_trace.get(name) or guide_trace.get(name)
            if site is not None:
                values[name] = site["value"]
        return log_p - log_q, log_p, values

    return jax.vmap(joint)(keys)


def joint_result(ratios: Any, log_p: Any, values: Mapping[str, Any], *, num_draws: int,
                 names: list[str], moment_sites: list[str] | None = None) -> PSISResult:
    """The host half of a ``"joint"`` diagnostic: ArviZ's smoothing of :func:`joint_ratios`' output; the draws
    of ``names`` kept, and the k-hat of the weighted moments of ``moment_sites``."""
    log_weights, khat = smooth(np.asarray(ratios))
    draws = {k: np.asarray(values[k]) for k in names if k in values} if names else None
    moment_values = {k: np.asarray(values[k]) for k in moment_sites or [] if k in values}
    moment_k, moment_at = moment_pareto_k(ratios, moment_values) if moment_values else (None, None)
    return PSISResult("joint", float(khat), float(weights_ess(log_weights)), num_draws,
                      log_weights=log_weights, draws=draws, log_joint=np.asarray(log_p), moment_k=moment_k,
                      moment_at=moment_at)


def _reads_items(model, guide, params, data, items) -> bool:
    """Whether, with the plate ``"data"`` on ``items``, every site in it holds one value per item (model and guide
    read their data and per-item params through ``numpyro.subsample`` / ``param(..., event_dim=...)``), from an
    abstract trace; ``False`` also when the subset's shapes do not broadcast."""
    arrays, static = split_data(data)
    found = {}

    def probe(key, params, arrays):
        ok = True
        for trace in _traces(model, guide, params, key, {**arrays, **static}, items):
            for site in _sample_sites(trace).values():
                axis = _data_axis(site)
                if axis is None:
                    continue
                shape = jnp.shape(site["value"])[: jnp.ndim(site["value"]) - site["fn"].event_dim]
                ok &= len(shape) >= -axis and shape[axis] == items.shape[0]
        found["ok"] = ok
        return jnp.zeros(())

    try:
        jax.eval_shape(probe, jax.random.key(0), params, arrays)
    except (TypeError, ValueError, IndexError, AssertionError):
        # Shapes that do not broadcast on a subset (NumPyro raises any of these, by where the shapes clash) (data or params read whole, not through numpyro.subsample or
        # param(..., event_dim=...)): the caller evaluates every item instead, which is exact.
        return False
    return bool(found["ok"])


def _plate_size(model, guide, params, data) -> int:
    """The full size of the plate ``"data"`` (from an abstract trace of the guide)."""
    arrays, static = split_data(data)
    found = {}

    def probe(key, params, arrays):
        g = handlers.seed(handlers.substitute(guide, data=params), rng_seed=key)
        for name, site in handlers.trace(g).get_trace(**arrays, **static).items():
            if site["type"] == "plate" and name == DATA_PLATE:
                found["size"] = site["args"][0]
        return jnp.zeros(())

    jax.eval_shape(probe, jax.random.key(0), params, arrays)
    if "size" not in found:
        raise ValueError(f"The guide has no plate {DATA_PLATE!r}: per-datum PSIS needs one.")
    return int(found["size"])


def resample(result: PSISResult, key: jax.Array, num_draws: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``num_draws`` draws resampled (with replacement) by the PSIS weights of a ``"joint"`` diagnostic.

    Returns the draws of ``result.draws``' sites, ``(num_draws, ...)``, and their log joint density.

    Raises
    ------
    ValueError
        A ``"per_datum"`` diagnostic (each item has its own weights: there is no joint draw to resample),
        or one computed without ``return_sites``.
    """
    if result.mode != "joint":
        raise ValueError(
            "importance_resample needs one set of weights for the whole posterior, but this guide is amortized per "
            "datum (every latent is in the plate 'data'): each item has its own weights. Use the per-item k-hat "
            "as a diagnostic, or fit the per-datum posteriors with NUTS (params=svi_fit.params)."
        )
    if result.draws is None:
        raise ValueError("resample() needs the draws: call diagnose(..., return_sites=[...]).")
    weights = np.exp(result.log_weights - np.logaddexp.reduce(result.log_weights))
    index = np.asarray(jax.random.choice(key, weights.size, (num_draws,), replace=True, p=jnp.asarray(weights)))
    return {k: v[index] for k, v in result.draws.items()}, result.log_joint[index]


def warning_of(result: PSISResult) -> str | None:
    """The fit's warning when the diagnostic says the approximation is unreliable (else None)."""
    if result.reliable:
        return None
    if result.mode == "joint" and result.pareto_k <= K_THRESHOLD:
        return moment_warning(result, "the fit's draws")
    if result.mode == "joint":
        return (f"the variational approximation is unreliable for this posterior: Pareto k = {result.pareto_k:.2f} "
                f"(> {K_THRESHOLD}; ESS of the importance weights {result.ess:.0f} of {result.num_draws}), use NUTS "
                "or importance_resample")
    return (f"the amortized guide is unreliable for {100 * result.share_above:.0f}% of the "
            f"{result.item_k.size} items diagnosed: per-item Pareto k > {K_THRESHOLD} (median "
            f"{result.pareto_k:.2f}); the encoder's posteriors are not to be trusted item by item: compare with "
            "NUTS on a few items (params=svi_fit.params)")


def moment_warning(result: PSISResult, what: str) -> str:
    """The warning for weighted draws whose ratios pass but whose means or variances do not
    (:attr:`PSISResult.moment_k` above :data:`K_THRESHOLD`)."""
    return (f"importance weights cannot confirm every posterior mean and sd of {what}: the Pareto k of the "
            f"weighted deviations is {result.moment_k:.2f} for {result.moment_at} (> {K_THRESHOLD}; the ratios' own k "
            f"is {result.pareto_k:.2f}), so that scalar's mean and sd rest on a few heavy draws and may be off (often "
            "an sd too small); compare with NUTS")


def check_resample(guide: Callable[..., Any], sites: Any) -> None:
    """Refuse ``importance_resample`` where it cannot work, before anything compiles.

    Raises
    ------
    ValueError
        The guide has no density (``AutoDelta``); every latent site of the model is a per-datum latent in the
        plate ``"data"`` (an amortized or per-datum guide: the items' weights differ, one global resampling of
        ``N x K`` numbers makes no sense).
    """
    if not has_density(guide):
        raise ValueError(
            "SVI option importance_resample=True needs a guide with a density, but the guide is a point estimate "
            "(auto_delta): there are no importance weights. Use guide='auto_normal' or 'auto_mvn'."
        )
    latent = list(sites.latent)
    if all_per_datum(sites):
        raise ValueError(
            f"SVI option importance_resample=True resamples whole posterior draws, but every latent site of this model "
            f"({', '.join(latent)}) is a per-datum latent in the plate {DATA_PLATE!r} (an amortized guide): each item "
            "has its own importance weights. Leave importance_resample=False (the fit reports each item's Pareto k), "
            "or sample the items' posteriors with NUTS (params=svi_fit.params)."
        )


def diagnose_fit(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    params: Mapping[str, Any],
    key: jax.Array,
    data: Mapping[str, Any],
    sites: Any,
    *,
    psis_draws: int,
    psis_items: int,
    importance_resample: bool,
    num_draws: int,
) -> tuple[dict[str, Any], tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None, list[str]]:
    """What the SVI engine runs after training: the fit's diagnostics, the resampled draws if asked, the warnings.

    The diagnostics are ``{"psis": PSISResult}``, or ``{"psis_skipped": reason}`` (:func:`skip_reason`) for
    ``psis_draws=0`` or a guide with no density (``AutoDelta``, point-estimate ``Delta`` sites). With
    ``importance_resample``, the fit's draws are ``num_draws`` draws resampled from ``psis_draws`` guide
    draws by their smoothed weights, shaped like the SVI engine's own, ``(1, num_draws, ...)``, with their
    log joint as the ``lp`` sample stat.
    """
    if importance_resample:
        check_resample(guide, sites)
    reason = skip_reason(guide, params, data, psis_draws)
    if reason is not None:
        return {"psis_skipped": reason}, None, []
    names = drawn_sites(sites)
    diagnose_key, resample_key = jax.random.split(key)
    result = diagnose(model, guide, params, diagnose_key, data, num_draws=psis_draws, num_items=psis_items,
                      return_sites=names if importance_resample else None, moment_sites=moment_sites(sites))
    return fit_outcome(result, resample_key, importance_resample=importance_resample, num_draws=num_draws)


def drawn_sites(sites: Any) -> list[str]:
    """The sites a fit draws: its latent sites, then its deterministic ones."""
    return list(sites.latent) + [s for s in sites.deterministic if s not in sites.latent]


def all_per_datum(sites: Any) -> bool:
    """Whether the model has latent sites and every one is a per-datum latent in the plate ``"data"``."""
    latent = list(sites.latent)
    return bool(latent) and all(DATA_PLATE in sites.dims.get(name, ()) for name in latent)


def moment_sites(sites: Any) -> list[str]:
    """The latent sites whose weighted moments get :func:`moment_pareto_k`: those outside the plate ``"data"``
    (the global parameters a fit is judged on; per-datum latents can number thousands, each a PSIS fit)."""
    return [name for name in sites.latent if DATA_PLATE not in sites.dims.get(name, ())]


def fit_outcome(result: PSISResult, resample_key: jax.Array, *, importance_resample: bool,
                num_draws: int) -> tuple[dict[str, Any], tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None,
                                         list[str]]:
    """:func:`diagnose_fit`'s return value from a finished diagnostic: its warning and, if asked, the
    ``num_draws`` draws resampled with ``resample_key``."""
    warning = warning_of(result)
    resampled = None
    if importance_resample:
        draws, log_joint = resample(result, resample_key, num_draws)
        resampled = ({k: v[None] for k, v in draws.items()}, {"lp": log_joint[None]})
        result = dataclasses.replace(result, draws=None)  # the fit keeps the resampled draws, not these
    return {"psis": result}, resampled, [warning] if warning else []
