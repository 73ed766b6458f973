"""Data sets with known truth: simulators, oracles and shipped real data.

Every loader returns a :class:`Dataset`: ``ds.data`` is the mapping of keyword arguments to pass to
:func:`ppzoo.fit` (named after the model's observed sites), and ``ds.truth`` holds the true values keyed
by the model's site names (``"z"`` for sources or latents, ``"mixing"``, ``"factors"``, ...).

Examples
--------
>>> ds = ppzoo.data.load("linear_ica", num_data=500, num_sources=3, seed=0)
>>> sorted(ds.data), sorted(ds.truth)
(['x'], ['mixing', 'noise_scale', 'z'])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ppzoo.data._dataset import Dataset
from ppzoo.data._paths import validation_dir

__all__ = ["Dataset", "load", "names", "LOADERS", "validation_dir"]

#: Registry: data set name -> "module:function". Explicit, so that an unknown name can list the valid ones.
LOADERS: dict[str, str] = {
    "linear_ica": "ppzoo.data.linear_ica:load",
    "nonlinear_ica": "ppzoo.data.nonlinear_ica:load",
    "shapes": "ppzoo.data.shapes:load",
    "digits": "ppzoo.data.digits:load",
    "pendulum": "ppzoo.data.pendulum:load",
    "sachs": "ppzoo.data.sachs:load",
    "signals": "ppzoo.data.signals:load",
}


def names() -> list[str]:
    """Return the names of the registered data sets."""
    return sorted(LOADERS)


def _resolve(name: str) -> Callable[..., Dataset]:
    if not isinstance(name, str) or name not in LOADERS:
        raise ValueError(
            f"Unknown data set {name!r}. Valid names: {', '.join(names())}. "
            "Example: ppzoo.data.load('linear_ica', num_data=1000, seed=0)."
        )
    module, _, function = LOADERS[name].partition(":")
    return getattr(importlib.import_module(module), function)


def load(name: str, /, **settings) -> Dataset:
    """Load or simulate the data set ``name``.

    Parameters
    ----------
    name : str
        A registered data set (see :func:`names`).
    **settings
        The loader's keyword-only settings (``num_data``, ``seed``, ...). An unknown setting is an error.

    Returns
    -------
    Dataset
        ``ds.data`` to pass to :func:`ppzoo.fit`, ``ds.truth`` keyed by site name.

    Raises
    ------
    ValueError
        If ``name`` is not a registered data set.
    TypeError
        If a setting is not one the loader takes.
    """
    loader = _resolve(name)
    import inspect

    params = inspect.signature(loader).parameters
    unknown = sorted(set(settings) - set(params))
    if unknown:
        valid = ", ".join(p for p in params)
        raise TypeError(
            f"ppzoo.data.load({name!r}) got unknown setting(s) {', '.join(map(repr, unknown))}. "
            f"Valid settings: {valid}."
        )
    return loader(**settings)
