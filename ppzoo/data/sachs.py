"""Sachs et al. (2005) protein-signalling flow cytometry data with two reference causal graphs.

Read from the validation folder shipped with ppzoo, ``ppzoo/data/validation/sachs/`` (see
:func:`ppzoo.data._paths.validation_dir`; the CSV files are the sources' values, unchanged), whose README
documents the sources (Causal Discovery Toolbox and ``cmu-phil/example-causal-datasets``), the nine
experimental conditions and the two graphs.
"""

from __future__ import annotations

import csv
import numbers
from pathlib import Path
from typing import Literal

import numpy as np

from ppzoo.data._dataset import Dataset
from ppzoo.data._paths import validation_dir

__all__ = ["load", "SUBSETS", "CONDITIONS", "INTERVENTIONS", "VARIABLES"]

SUBSETS = ("observational", "all")
#: Short variable names, in the column order of the files.
VARIABLES = ("raf", "mek", "plc", "pip2", "pip3", "erk", "akt", "pka", "pkc", "p38", "jnk")
#: The nine conditions of the main analysis, in file order; code k of ``u`` is ``CONDITIONS[k]``.
CONDITIONS = (
    "cd3cd28",
    "cd3cd28+icam2",
    "cd3cd28+aktinhib",
    "cd3cd28+g0076",
    "cd3cd28+psitect",
    "cd3cd28+u0126",
    "cd3cd28+ly",
    "pma",
    "b2camp",
)
#: Condition -> (targeted variable, "inhibitor" | "activator" | None), as described by Sachs et al. 2005
#: (README of the validation folder). The first two are general stimuli without a specific target.
INTERVENTIONS: dict[str, tuple[str | None, str | None]] = {
    "cd3cd28": (None, None),
    "cd3cd28+icam2": (None, None),
    "cd3cd28+aktinhib": ("akt", "inhibitor"),
    "cd3cd28+g0076": ("pkc", "inhibitor"),
    "cd3cd28+psitect": ("pip2", "inhibitor"),
    "cd3cd28+u0126": ("mek", "inhibitor"),
    "cd3cd28+ly": ("pip3", "inhibitor"),
    "pma": ("pkc", "activator"),
    "b2camp": ("pka", "activator"),
}
_FILES = {"observational": "sachs_observational_853.csv", "all": "sachs_all_conditions_7466.csv"}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _adjacency(edges: list[tuple[str, str]]) -> np.ndarray:
    adjacency = np.zeros((len(VARIABLES), len(VARIABLES)), dtype=np.int8)
    for cause, effect in edges:
        adjacency[VARIABLES.index(cause), VARIABLES.index(effect)] = 1
    return adjacency


def load(
    *, subset: Literal["observational", "all"] = "observational", log_transform: bool = True, seed: int = 0
) -> Dataset:
    """Load the Sachs flow-cytometry measurements of 11 phosphoproteins and phospholipids.

    Parameters
    ----------
    subset : {"observational", "all"}
        ``"observational"``: the 853 cells of the CD3/CD28 condition (the usual structure-learning
        benchmark). ``"all"``: the 7466 cells of all nine conditions, with the condition of each cell.
    log_transform : bool
        If True, return the natural log of the raw fluorescence intensities (all raw values are >= 1,
        so the logs are finite and >= 0); otherwise the raw values.
    seed : int
        Accepted for the uniform loader interface; the data are fixed and rows keep the file order.

    Returns
    -------
    Dataset
        ``data = {"x": (N, 11) float64}`` and, for ``subset="all"``, ``"u": (N,) int32`` condition codes
        (indices into ``info["conditions"]``). ``truth`` is empty (the graphs are references, not the
        truth). ``info``: ``"variables"`` (short names, column order), ``"conditions"``,
        ``"interventions"`` (condition -> (target, "inhibitor" | "activator" | None)),
        ``"graphs"`` = {"consensus_cdt": 11 x 11 (18 edges), "cmu_phil": 11 x 11 (20 edges)} with
        entry [i, j] = 1 for the edge variables[i] -> variables[j], and the settings and source.

    Raises
    ------
    ValueError
        If ``subset`` is not one of the valid names.
    TypeError
        If ``log_transform`` is not a bool or ``seed`` not an integer.
    FileNotFoundError
        If the validation folder is missing (see :func:`ppzoo.data._paths.validation_dir`).

    References
    ----------
    Sachs, Perez, Pe'er, Lauffenburger, Nolan (2005). Causal protein-signaling networks derived from
    multiparameter single-cell data. Science 308(5721), 523-529.

    Examples
    --------
    >>> ds = load()  # doctest: +SKIP
    >>> ds.data["x"].shape, int(ds.info["graphs"]["consensus_cdt"].sum())  # doctest: +SKIP
    ((853, 11), 18)
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset={subset!r} is not a subset. Valid: {', '.join(map(repr, SUBSETS))}.")
    if not isinstance(log_transform, bool):
        raise TypeError(f"log_transform must be True or False, got {log_transform!r}.")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}; for example seed=0.")

    folder = validation_dir() / "sachs"
    names = _read_csv(folder / "variable_names.csv")
    short = {row["column_in_csv"]: row["short_name"] for row in names}
    columns = [row["column_in_csv"] for row in names]
    if tuple(short[c] for c in columns) != VARIABLES:
        raise ValueError(f"{folder / 'variable_names.csv'} does not list the expected variables {VARIABLES}.")

    rows = _read_csv(folder / _FILES[subset])
    x = np.array([[float(row[c]) for c in columns] for row in rows])
    data: dict[str, np.ndarray] = {"x": np.log(x) if log_transform else x}
    if subset == "all":
        data["u"] = np.array([CONDITIONS.index(row["condition"]) for row in rows], dtype=np.int32)

    cdt = [(short[r["cause"]], short[r["effect"]]) for r in _read_csv(folder / "edges_consensus_cdt.csv")]
    cmu = [(r["cause"], r["effect"]) for r in _read_csv(folder / "edges_ground_truth_cmu_phil.csv")]
    return Dataset(
        name="sachs",
        data=data,
        truth={},
        info={
            "settings": dict(subset=subset, log_transform=log_transform, seed=seed),
            "variables": VARIABLES,
            "columns": tuple(columns),
            "conditions": CONDITIONS,
            "interventions": dict(INTERVENTIONS),
            "graphs": {"consensus_cdt": _adjacency(cdt), "cmu_phil": _adjacency(cmu)},
            "path": str(folder),
            "source": "Sachs et al. 2005 via Causal Discovery Toolbox (cyto_full_data.csv) and "
            "cmu-phil/example-causal-datasets (condition labels, graph); see ppzoo/data/validation/sachs/README.md",
        },
    )
