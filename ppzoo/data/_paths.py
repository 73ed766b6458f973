"""Where ppzoo finds the shipped validation material (real data sets, recipes, reference posteriors)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["validation_dir", "ENV_VAR"]

#: Environment variable that overrides the default location of the validation folder.
ENV_VAR = "PPZOO_VALIDATION_DIR"


def validation_dir() -> Path:
    """Return the folder that holds the validation material (``sachs/``, ``pendulum/``, ...).

    The folder is found in this order:

    1. the environment variable ``PPZOO_VALIDATION_DIR``, if set (it names the ``validation`` folder itself);
    2. ``<repository root>/../shared/validation``, where the repository root is the folder that holds the
       ``ppzoo`` package (the layout of a source checkout with the shared folder beside it).

    Returns
    -------
    pathlib.Path
        The absolute, resolved path of an existing folder.

    Raises
    ------
    FileNotFoundError
        If the folder does not exist; the message says where it looked and how to set
        ``PPZOO_VALIDATION_DIR``.

    Examples
    --------
    >>> (validation_dir() / "sachs" / "README.md").exists()  # doctest: +SKIP
    True
    """
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(
                f"{ENV_VAR} is set to {override!r}, but {path} is not a folder. Point it at the folder that "
                f"holds sachs/ and pendulum/, e.g. export {ENV_VAR}=/path/to/shared/validation, or unset it "
                "to use <repository root>/../shared/validation."
            )
        return path
    repo_root = Path(__file__).resolve().parents[2]
    path = (repo_root / ".." / "shared" / "validation").resolve()
    if not path.is_dir():
        raise FileNotFoundError(
            f"ppzoo's validation folder was not found at {path} (<repository root>/../shared/validation, "
            f"repository root {repo_root}). Copy the shared/ folder beside the repository, or set the "
            f"environment variable {ENV_VAR} to the folder that holds sachs/ and pendulum/, e.g. "
            f"export {ENV_VAR}=/path/to/shared/validation."
        )
    return path
