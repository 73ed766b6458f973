"""Stan's scalar parameter names (``theta[1]``, ``z[2,1]``; 1-based) to and from arrays by site."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["stan_names", "assemble_draws", "parse_stan_name"]

_INDEX = re.compile(r"^(?P<site>[^\[\]]+)(?:\[(?P<index>[0-9, ]+)\])?$")


def parse_stan_name(name: str) -> tuple[str, tuple[int, ...]]:
    match = _INDEX.match(name)
    if match is None:
        raise ValueError(
            f"Cannot parse the Stan parameter name {name!r}: expected 'site' or 'site[i]' / 'site[i,j]' with "
            "1-based integer indices, e.g. 'theta[1]'."
        )
    index = match.group("index")
    idx = tuple(int(i) - 1 for i in index.split(",")) if index else ()
    if any(i < 0 for i in idx):
        raise ValueError(f"Stan parameter name {name!r} has an index below 1; Stan indices start at 1.")
    return match.group("site"), idx


def assemble_draws(columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Assemble Stan-named scalar draws into arrays by site.

    Parameters
    ----------
    columns : Mapping[str, array_like]
        Stan scalar name (``"mu"``, ``"theta[1]"``, ``"z[2,1]"``; 1-based) -> draws of shape
        ``(chain, draw)``.

    Returns
    -------
    dict[str, numpy.ndarray]
        Site name -> array ``(chain, draw, *shape)`` with ``theta[i]`` at ``[..., i - 1]``; the shape is
        the largest index seen along each axis. Sites keep the order of first appearance.

    Raises
    ------
    ValueError
        If a name cannot be parsed, a site mixes scalar and indexed names, or an indexed site has holes.
    """
    parsed: dict[str, dict[tuple[int, ...], np.ndarray]] = {}
    for name, values in columns.items():
        site, idx = parse_stan_name(name)
        parsed.setdefault(site, {})[idx] = np.asarray(values, dtype=float)
    out: dict[str, np.ndarray] = {}
    for site, entries in parsed.items():
        ranks = {len(i) for i in entries}
        if len(ranks) != 1:
            raise ValueError(
                f"Site {site!r} appears both with and without indices ({sorted(map(str, entries))[:4]}); "
                "each site needs one consistent naming, e.g. only 'theta[1]', 'theta[2]', ..."
            )
        first = next(iter(entries.values()))
        if ranks == {0}:
            out[site] = first
            continue
        shape = tuple(max(i[axis] for i in entries) + 1 for axis in range(ranks.pop()))
        if len(entries) != math.prod(shape):
            raise ValueError(
                f"Site {site!r} has {len(entries)} indexed names but its largest indices imply shape {shape}; "
                "every element of the site must be present."
            )
        array = np.empty(first.shape + shape, dtype=float)
        for idx, values in entries.items():
            array[(..., *idx)] = values
        out[site] = array
    return out


def stan_names(site: str, shape: tuple[int, ...]) -> list[str]:
    """Stan-style scalar names of a site of ``shape``, in C order: ``theta[1]``, ..., ``z[1,2]``.

    Examples
    --------
    >>> stan_names("theta", (2,)), stan_names("mu", ())
    (['theta[1]', 'theta[2]'], ['mu'])
    """
    if not shape:
        return [site]
    return [f"{site}[{','.join(str(i + 1) for i in idx)}]" for idx in np.ndindex(*shape)]
