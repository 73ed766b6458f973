"""A case study's headline numbers, written beside its report as ``results.json``.

Every case study ends its default run by calling :func:`write_results` with the numbers its README paragraph
quotes (accuracies, verdicts, timings, and the settings that produced them). The repository keeps a copy of
each file in ``results/<case>.json``; ``scripts/readme_results.py`` renders the README's results paragraphs
from those copies, and a test checks that the README says exactly what the files hold. A number in the README
therefore always comes from a run of the current code, never from memory.

Examples
--------
>>> from ppzoo.results import write_results, read_results
>>> path = write_results("/tmp/report", "ica", {"mcc_nuts": 0.997, "chains": 4})  # doctest: +SKIP
>>> read_results(path)["values"]["mcc_nuts"]  # doctest: +SKIP
0.997
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import numbers
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["RESULTS_FILE", "write_results", "read_results", "key", "table_values", "render_template", "render_readme", "BLOCK"]

#: Name of the results file in a report folder.
RESULTS_FILE = "results.json"

_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


def _plain(key: str, value: Any) -> Any:
    """A JSON-safe copy of one value: bool, int, float (finite or None), str."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)  # numpy / JAX scalars
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return _plain(key, item())
    raise TypeError(
        f"results value {key!r} is a {type(value).__name__}; a results file holds numbers, booleans and "
        "strings only. Pass a scalar, e.g. float(table.loc['ivae', 'mcc'])."
    )


def key(*parts: Any) -> str:
    """A results name from labels: ``key("SCM-VAE", "do target MAE")`` -> ``"scm_vae_do_target_mae"``."""
    text = "_".join(str(p) for p in parts if str(p) != "")
    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return name if name and name[0].isalpha() else f"v_{name}"


def table_values(frame: Any, prefix: str = "") -> dict[str, Any]:
    """Every numeric or boolean cell of a table as ``{key(prefix, row, column): value}`` (rows of a
    MultiIndex are joined); text cells are left out. Non-finite numbers become None in the file."""
    values = {}
    for row, series in frame.iterrows():
        parts = row if isinstance(row, tuple) else (row,)
        for column, value in series.items():
            if isinstance(value, (bool, numbers.Real)) or (getattr(value, "ndim", None) == 0
                                                            and getattr(value, "dtype", None) is not None
                                                            and value.dtype.kind in "biuf"):
                values[key(prefix, *parts, column)] = value
    return values


def write_results(
    out: str | os.PathLike[str],
    case: str,
    values: Mapping[str, Any],
    *,
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``<out>/results.json``: the case study's name, its headline numbers and the settings of the run.

    Parameters
    ----------
    out : path
        The report folder (it must exist).
    case : str
        The case study's name (``"ica"``, ``"nonlinear_ica"``, ...).
    values : mapping
        Headline number name (snake_case) -> number, boolean or string. Non-finite numbers are stored as null.
    settings : mapping, optional
        The command-line settings of the run (same value types), so a reader knows what produced the numbers.

    Returns
    -------
    pathlib.Path
        The file written. It is written to a temporary file and renamed, so it is whole or absent.

    Raises
    ------
    TypeError
        If a value is not a scalar number, boolean or string.
    ValueError
        If a name is not snake_case or ``out`` is not a folder.
    """
    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"`out` must be an existing report folder; {str(out)!r} is not a folder.")
    checked = {}
    for label, mapping in (("values", values), ("settings", settings or {})):
        checked[label] = {}
        for key, value in mapping.items():
            if not isinstance(key, str) or not _KEY.match(key):
                raise ValueError(
                    f"results {label} name {key!r} must be snake_case (letters, digits, _; starting with a "
                    "letter), e.g. 'mcc_ivae', so that README templates can name it."
                )
            checked[label][key] = _plain(key, value)
    payload = {
        "case": case,
        "written": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"),
        "values": checked["values"],
        "settings": checked["settings"],
    }
    path = out / RESULTS_FILE
    handle, temporary = tempfile.mkstemp(prefix=f".{RESULTS_FILE}.", dir=out)
    try:
        with os.fdopen(handle, "w") as fh:
            json.dump(payload, fh, indent=1, sort_keys=False)
            fh.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a results file (or ``<folder>/results.json``); returns ``{"case", "written", "values", "settings"}``.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        If the file is not a ppzoo results file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    with open(path) as fh:
        payload = json.load(fh)
    if not isinstance(payload, dict) or not {"case", "values", "settings"} <= set(payload):
        raise ValueError(f"{path} is not a ppzoo results file (expected the keys case, values, settings).")
    return payload


#: A README block that :func:`render_readme` fills: ``<!-- results:CASE -->`` ... ``<!-- /results:CASE -->``.
BLOCK = re.compile(r"(<!-- results:(?P<case>[a-z_]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=case) -->)", re.S)

_FIELD = re.compile(r"\{[^{}]*\}")


def render_template(template: str, results: Mapping[str, Any], *, source: str = "template") -> str:
    """Fill a README template from a results file: ``{name}`` / ``{name:.3f}`` name its values or settings,
    ``{written}`` the date the file was written.

    A template may not contain a digit outside its ``{...}`` fields, so every number the rendered text quotes
    comes from the results file.

    Raises
    ------
    ValueError
        If the template has a digit outside its fields.
    KeyError
        If a field names neither a value nor a setting of the results file.
    """
    outside = _FIELD.sub("", template)
    digits = re.findall(r"\S*[0-9]\S*", outside)
    if digits:
        raise ValueError(
            f"{source} quotes number(s) {digits[:5]} that do not come from the results file; write them as "
            "{name} fields and put the values in the case study's write_results call."
        )
    fields = {"written": results.get("written"), **results.get("settings", {}), **results["values"]}
    try:
        return template.format_map(fields)
    except KeyError as error:
        raise KeyError(
            f"{source} names {error.args[0]!r}, which results/{results.get('case')}.json does not hold "
            f"(it has: {', '.join(sorted(fields))})."
        ) from None


def render_readme(readme: str, templates: Mapping[str, str], results: Mapping[str, Mapping[str, Any]]) -> str:
    """Return ``readme`` with every ``<!-- results:CASE -->`` block replaced by its rendered template.

    Raises
    ------
    KeyError
        If a block names a case without a template or a results file.
    """

    def fill(match: re.Match) -> str:
        case = match.group("case")
        if case not in templates or case not in results:
            raise KeyError(
                f"README block results:{case} needs results/templates/{case}.md and results/{case}.json; "
                f"found templates for {sorted(templates)} and results for {sorted(results)}."
            )
        body = render_template(templates[case], results[case], source=f"results/templates/{case}.md")
        return match.group(1) + body.rstrip("\n") + "\n" + match.group(4)

    return BLOCK.sub(fill, readme)
