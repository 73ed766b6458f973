"""The case studies by name: ``ppzoo run NAME`` and a sweep's ``case_study = NAME`` look them up here.

A leaf module (standard library only), so that the command line and the sweep share one registry without
importing each other, and listing the case studies starts no JAX.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from types import ModuleType

__all__ = ["CASE_STUDIES", "available_case_studies", "case_study_module", "case_study_summary"]

#: Case-study name -> module. Explicit, so an unknown name lists the valid ones.
CASE_STUDIES: dict[str, str] = {
    "ica": "ppzoo.case_studies.ica",
    "shapes": "ppzoo.case_studies.shapes",
    "digits": "ppzoo.case_studies.digits",
    "nonlinear_ica": "ppzoo.case_studies.nonlinear_ica",
    "laws": "ppzoo.case_studies.laws",
    "pendulum": "ppzoo.case_studies.pendulum",
    "sachs": "ppzoo.case_studies.sachs",
    "gan_ica": "ppzoo.case_studies.gan_ica",
    "infogan": "ppzoo.case_studies.infogan",
}


def available_case_studies() -> list[str]:
    """The names in :data:`CASE_STUDIES` whose module is installed, in registry order."""
    return [name for name, module in CASE_STUDIES.items() if importlib.util.find_spec(module) is not None]


def case_study_module(name: str) -> ModuleType:
    """Import the case study ``name`` (a key of :data:`CASE_STUDIES`).

    Raises
    ------
    ValueError
        If ``name`` is not a case study (the message lists the valid ones).
    """
    if name not in CASE_STUDIES:
        raise ValueError(f"Unknown case study {name!r}. Valid: {', '.join(available_case_studies())}.")
    return importlib.import_module(CASE_STUDIES[name])


def case_study_summary(name: str) -> str:
    """First line of a case study's docstring, read from its source (nothing imported, so no JAX start)."""
    spec = importlib.util.find_spec(CASE_STUDIES[name])
    if spec is None or spec.origin is None:
        return ""
    with open(spec.origin, encoding="utf-8") as fh:
        docstring = ast.get_docstring(ast.parse(fh.read())) or ""
    line = docstring.strip().splitlines()[0] if docstring.strip() else ""
    return line.removeprefix("Case study: ").rstrip(".")
