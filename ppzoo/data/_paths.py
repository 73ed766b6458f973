"""Where ppzoo finds its validation material (real data sets, recipes, reference posteriors).

The material ships inside the package, in ``ppzoo/data/validation/`` (package data; its README names the
sources and licences), so a clone or an installed wheel needs no other folder.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["validation_dir", "shipped_validation_dir", "ENV_VAR"]

#: Environment variable that overrides the location of the validation folder.
ENV_VAR = "PPZOO_VALIDATION_DIR"


def shipped_validation_dir() -> Path:
    """Return the folder of the validation material shipped with ppzoo (it may be missing from a broken install).

    Returns
    -------
    pathlib.Path
        ``<ppzoo package>/data/validation``, absolute and resolved; not checked for existence.
    """
    return Path(__file__).resolve().parent / "validation"


def validation_dir() -> Path:
    """Return the folder that holds the validation material (``posteriordb/``, ``sachs/``, ``pendulum/``).

    The folder is found in this order:

    1. the environment variable ``PPZOO_VALIDATION_DIR``, if set: the folder itself, in either of two
       layouts. The *packed* layout is the one ppzoo ships (posteriordb cases with ``data.json.gz`` and
       ``reference_draws.npz``); the *raw* layout is the one ``scripts/pack_validation.py`` reads (cases
       with ``data.json`` and ``reference_draws.json``). The Sachs files are CSV in both.
    2. the data shipped inside the package, ``ppzoo/data/validation`` (:func:`shipped_validation_dir`).

    Returns
    -------
    pathlib.Path
        The absolute, resolved path of an existing folder.

    Raises
    ------
    FileNotFoundError
        If ``PPZOO_VALIDATION_DIR`` names no folder, or the shipped folder is missing from the
        installation; the message says where it looked and how to fix it.

    Examples
    --------
    >>> (validation_dir() / "sachs" / "README.md").exists()
    True
    """
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(
                f"{ENV_VAR} is set to {override!r}, but {path} is not a folder. Point it at a folder that holds "
                f"posteriordb/, sachs/ and pendulum/ (packed or raw layout), e.g. "
                f"export {ENV_VAR}=/path/to/validation, "
                f"or unset it to use the data shipped with ppzoo ({shipped_validation_dir()})."
            )
        return path
    path = shipped_validation_dir()
    if not path.is_dir():
        raise FileNotFoundError(
            f"ppzoo's shipped validation data were not found at {path}: this installation lacks its package data. "
            "Reinstall ppzoo (pip install . from a full checkout, or from the wheel), regenerate the folder with "
            "python scripts/pack_validation.py /path/to/raw/validation, or set the environment variable "
            f"{ENV_VAR} to a folder that holds posteriordb/, sachs/ and pendulum/."
        )
    return path
