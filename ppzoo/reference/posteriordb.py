"""The shipped posteriordb posteriors: which port goes with which posterior, and loading their data and
Stan's reference draws (``ppzoo/data/validation/posteriordb/``).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ppzoo.data import validation_dir
from ppzoo.reference.ports import (
    ark,
    arma11,
    blr,
    diamonds,
    eight_schools_noncentered,
    garch11,
    gp_pois_regr,
    hmm_example,
    kidscore_interaction,
    kilpisjarvi,
    logearn_interaction_z,
    logmesquite_logvas,
    lotka_volterra,
    low_dim_gauss_mix,
    one_comp_mm_elim_abs,
)
from ppzoo.reference.stan import assemble_draws

__all__ = ["ReferencePosterior", "reference_names", "load_reference"]


def _arrays(raw: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {key: np.asarray(raw[key], dtype=float) for key in keys}


@dataclass(frozen=True)
class _Case:
    model: Callable[..., None]
    prepare: Callable[[Mapping[str, Any]], dict[str, Any]]
    x64: bool = False
    log_scale: tuple[str, ...] = ()
    #: NUTS target acceptance when Stan's adapt_delta is not enough for NumPyro's and BlackJAX's NUTS.
    target_accept_prob: float | None = None


#: Registry: posteriordb posterior name -> port. Explicit, so an unknown name can list the valid ones.
_CASES: dict[str, _Case] = {
    "arK-arK": _Case(ark, lambda d: {"K": int(d["K"]), "y": np.asarray(d["y"], dtype=float)}),
    "arma-arma11": _Case(arma11, lambda d: _arrays(d, ("y",))),
    "diamonds-diamonds": _Case(diamonds, lambda d: _arrays(d, ("X", "Y"))),
    "earnings-logearn_interaction_z": _Case(logearn_interaction_z, lambda d: _arrays(d, ("earn", "height", "male"))),
    "eight_schools-eight_schools_noncentered": _Case(eight_schools_noncentered, lambda d: _arrays(d, ("y", "sigma"))),
    "garch-garch11": _Case(garch11, lambda d: {"y": np.asarray(d["y"], dtype=float), "sigma1": float(d["sigma1"])}),
    "gp_pois_regr-gp_pois_regr": _Case(
        gp_pois_regr,
        lambda d: {"x": np.asarray(d["x"], dtype=float), "k": np.asarray(d["k"], dtype=np.int32)},
        x64=True,
    ),
    "hmm_example-hmm_example": _Case(hmm_example, lambda d: _arrays(d, ("y",))),
    "hudson_lynx_hare-lotka_volterra": _Case(lotka_volterra, lambda d: _arrays(d, ("ts", "y_init", "y"))),
    "kidiq-kidscore_interaction": _Case(kidscore_interaction, lambda d: _arrays(d, ("kid_score", "mom_hs", "mom_iq"))),
    "kilpisjarvi_mod-kilpisjarvi": _Case(
        kilpisjarvi,
        lambda d: {
            **_arrays(d, ("x", "y")),
            **{key: float(d[key]) for key in ("pmualpha", "psalpha", "pmubeta", "psbeta")},
        },
    ),
    "low_dim_gauss_mix-low_dim_gauss_mix": _Case(low_dim_gauss_mix, lambda d: _arrays(d, ("y",))),
    "mesquite-logmesquite_logvas": _Case(
        logmesquite_logvas,
        lambda d: _arrays(d, ("weight", "diam1", "diam2", "canopy_height", "total_height", "density", "group")),
    ),
    "one_comp_mm_elim_abs-one_comp_mm_elim_abs": _Case(
        one_comp_mm_elim_abs,
        lambda d: {
            "t0": float(d["t0"]),
            "D": float(d["D"]),
            "V": float(d["V"]),
            **_arrays(d, ("times", "C_hat")),
        },
        # Along the ridge K_m -> inf with V_m / K_m fixed the likelihood is flat and the two half-Cauchy
        # priors leave a density ~ K_m^-3: infinite variance (Hill tail index of the reference draws
        # 1.4-1.9 for K_m, 2.3-3 for V_m; 10 of 10,000 draws carry half the sample variance).
        log_scale=("K_m", "V_m"),
        # At Stan's 0.99, NumPyro's NUTS (4 x 500 + 500) diverged 6 times with seed 0 and overstated the sd of
        # log V_m twofold (seeds 1, 2 passed); at 0.995 seeds 0-3 passed (0, 0, 1, 0 divergences).
        target_accept_prob=0.995,
    ),
    "sblrc-blr": _Case(blr, lambda d: _arrays(d, ("X", "y"))),
}


@dataclass(frozen=True)
class ReferencePosterior:
    """A posteriordb posterior: the NumPyro port, its data and Stan's reference draws.

    Attributes
    ----------
    name : str
        posteriordb posterior name, ``"<data>-<model>"``.
    model : Callable
        The NumPyro model; ``model(**data)`` defines the posterior.
    data : dict
        Keyword arguments for ``model`` (numpy arrays and Python scalars).
    draws : dict[str, numpy.ndarray]
        Reference draws by site name, shape ``(chain, draw, *site_shape)`` = ``(10, 1000, ...)``,
        assembled from Stan's scalar names (``theta[1]`` is ``draws["theta"][..., 0]``); float64 (the
        shipped copy stores them as float32, 7 significant digits).
    summary : pandas.DataFrame
        ``reference_summary.csv``: mean, sd (ddof=1), q05, median, q95 per Stan scalar name.
    meta : dict
        ``meta.json``: dimensions, how the reference was made, its diagnostics, source paths.
    adapt_delta : float
        Stan's target acceptance probability for this posterior.
    target_accept_prob : float
        What to pass as NUTS ``target_accept_prob``: Stan's ``adapt_delta``, or higher where a case needs it
        (``one_comp_mm_elim_abs``: 0.995).
    x64 : bool
        Whether the port needs ``jax_enable_x64`` to define exactly Stan's density (see
        :func:`gp_pois_regr`).
    log_scale : tuple of str
        Positive sites that :func:`compare_to_reference` compares on the log scale by default, because
        their posterior tail is so heavy (infinite variance) that sample means and sds obey no central
        limit theorem (``K_m`` and ``V_m`` of the pharmacokinetic model).
    """

    name: str
    model: Callable[..., None]
    data: dict[str, Any]
    draws: dict[str, np.ndarray] = field(repr=False)
    summary: pd.DataFrame = field(repr=False)
    meta: dict[str, Any] = field(repr=False)
    adapt_delta: float = 0.8
    x64: bool = False
    log_scale: tuple[str, ...] = ()
    target_accept_prob: float = 0.8

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {v.shape[2:]}" for k, v in self.draws.items())
        return f"ReferencePosterior({self.name!r}, model={self.model.__name__}, draws={{{shapes}}})"


def reference_names() -> list[str]:
    """Return the names of the 15 ported posteriordb posteriors, sorted."""
    return sorted(_CASES)


def _reference_dir() -> Path:
    return validation_dir() / "posteriordb"


def _packed_or_raw(folder: Path, packed: str, raw: str) -> Path:
    """The packed file of a case folder if present, else the raw one (layouts: :func:`validation_dir`)."""
    for candidate in (folder / packed, folder / raw):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{folder} has neither {packed} (the layout ppzoo ships) nor {raw} (the raw posteriordb layout). "
        f"Unset PPZOO_VALIDATION_DIR to use the shipped data, or point it at a complete validation folder."
    )


def _read_data(folder: Path) -> dict[str, Any]:
    """posteriordb's ``data.json`` of a case folder, from ``data.json.gz`` (packed) or ``data.json`` (raw)."""
    path = _packed_or_raw(folder, "data.json.gz", "data.json")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def _read_draws(folder: Path) -> dict[str, np.ndarray]:
    """Reference draws by Stan scalar name, each float64 of shape (chain, draw), in the file's order.

    The packed ``reference_draws.npz`` holds ``draws``, float32 (chain, draw, parameter), and
    ``parameter_names``; the raw ``reference_draws.json`` is posteriordb's list of chains. float32 draws
    are cast to float64 here, so every statistic computed from them is computed in float64.
    """
    path = _packed_or_raw(folder, "reference_draws.npz", "reference_draws.json")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as packed:
            draws = packed["draws"].astype(np.float64)
            names = [str(n) for n in packed["parameter_names"]]
        return {n: np.ascontiguousarray(draws[..., i]) for i, n in enumerate(names)}
    with open(path) as fh:
        chains = json.load(fh)
    return {key: np.stack([np.asarray(chain[key], dtype=float) for chain in chains]) for key in chains[0]}


def load_reference(name: str) -> ReferencePosterior:
    """Load a posteriordb reference posterior with its NumPyro port.

    Parameters
    ----------
    name : str
        One of :func:`reference_names`, e.g. ``"eight_schools-eight_schools_noncentered"``.

    Returns
    -------
    ReferencePosterior

    Raises
    ------
    ValueError
        If ``name`` is not one of the ported posteriors (the message lists them).
    FileNotFoundError
        If the validation folder is missing (see :func:`ppzoo.data.validation_dir`).

    Examples
    --------
    >>> ref = load_reference("eight_schools-eight_schools_noncentered")  # doctest: +SKIP
    >>> ref.draws["theta"].shape  # doctest: +SKIP
    (10, 1000, 8)
    """
    if not isinstance(name, str) or name not in _CASES:
        raise ValueError(
            f"Unknown reference posterior {name!r}. Valid names: {', '.join(reference_names())}. "
            "Example: load_reference('eight_schools-eight_schools_noncentered')."
        )
    case = _CASES[name]
    folder = _reference_dir() / name
    raw = _read_data(folder)
    with open(folder / "meta.json") as fh:
        meta = json.load(fh)
    columns = _read_draws(folder)
    summary = pd.read_csv(folder / "reference_summary.csv", index_col="parameter")
    adapt_delta = float(
        meta.get("reference_inference", {}).get("method_arguments", {}).get("control", {}).get("adapt_delta", 0.8)
    )
    return ReferencePosterior(
        name=name,
        model=case.model,
        data=case.prepare(raw),
        draws=assemble_draws(columns),
        summary=summary,
        meta=meta,
        adapt_delta=adapt_delta,
        x64=case.x64,
        log_scale=case.log_scale,
        target_accept_prob=max(adapt_delta, case.target_accept_prob or 0.0),
    )

