"""Building blocks of a report page that know nothing of fits: sections, the study's claims, figures.

:mod:`ppzoo.report` lays them out; :mod:`ppzoo.checks` and the case studies make them.
"""

from __future__ import annotations

import dataclasses
import io
import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Section", "Claim", "section_anchor", "figure_png", "message_figure", "figure_or_error"]


class Section:
    """A block of the page: a heading, HTML text, tables and figures (matplotlib figures or PNG bytes).

    ``checks`` (:class:`ppzoo.checks.Check` objects, as :func:`ppzoo.checks.closed_loop_section` sets them) are
    listed in the page's verdict strip, linked to this section. The section's anchor on the page is
    :func:`section_anchor` of its title.
    """

    def __init__(self, title: str, *, text: str = "", tables: Sequence[tuple[str, pd.DataFrame]] = (),
                 figures: Sequence[tuple[str, Any]] = (), checks: Sequence[Any] = ()) -> None:
        self.title = title
        self.text = text
        self.tables = list(tables)
        self.figures = list(figures)
        self.checks = list(checks)


@dataclasses.dataclass
class Claim:
    """One of the study's own claims, shown first in the page's verdict strip (e.g. "iVAE MCC > VAE MCC").

    Attributes
    ----------
    name : str
        The claim in words, with its numbers ("iVAE MCC 0.947 > VAE 0.724").
    passed : bool or None
        Whether the run bears it out; ``None`` when it cannot be judged here (``detail`` says why).
    detail : str
        What it rests on: the numbers, the tolerance, the seeds.
    section : str, optional
        Title of the section that shows the evidence (one of the ``sections`` passed to :func:`report`, or a
        built-in one such as ``"What was run"``); the strip links to it.
    """

    name: str
    passed: bool | None
    detail: str
    section: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Claim.name must be a non-empty string; got {self.name!r}.")
        if self.passed is not None and not isinstance(self.passed, (bool, np.bool_)):
            raise TypeError(f"Claim.passed must be True, False or None (cannot be judged); got {self.passed!r}.")
        if self.passed is not None:
            self.passed = bool(self.passed)
        if self.section is not None and not isinstance(self.section, str):
            raise TypeError(f"Claim.section must be a section title (str) or None; got {self.section!r}.")


def section_anchor(title: str) -> str:
    """The HTML id of a section with this title: ``"Engine: nuts"`` -> ``"sec-engine-nuts"``.

    Stable across runs (it depends on the title only); a second section with the same title on one page gets
    ``-2``, a third ``-3``.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return f"sec-{slug or 'section'}"


def figure_png(figure: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    if hasattr(figure, "savefig") and not hasattr(figure, "add_subplot"):  # arviz_plots PlotCollection
        figure = figure.viz["figure"].item() if "figure" in getattr(figure, "viz", {}) else figure
        if hasattr(figure, "set_layout_engine") and figure.get_layout_engine() is None:
            # arviz-plots leaves the grid's spacing fixed: a panel's (two-line) title then runs into the tick
            # labels of the panel above. Constrained layout makes room for titles, ticks and axis labels.
            figure.set_layout_engine("constrained")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*constrained_layout not applied", category=UserWarning)
        figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def message_figure(text: str) -> Any:
    """A small figure that shows ``text`` (e.g. why a plot failed), for a page that shows every figure it promised."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.8))
    ax.axis("off")
    ax.text(0, 0.5, text[:300], fontsize=8, va="center", wrap=True)
    return fig


def figure_or_error(caption: str, draw: Callable[[], Any]) -> tuple[str, Any]:
    """``(caption, draw())``; if drawing fails, the caption with the error and a figure that shows it.

    A broken plot is shown on the page, never hidden: the figure says which error stopped it (and a warning
    says it too), and the verdicts, which never depend on plots, stand.
    """
    try:
        return caption, draw()
    except Exception as error:  # any plotting failure: shown in place of the plot
        message = f"{type(error).__name__}: {error}"
        warnings.warn(f"Plot {caption!r} failed: {message}", stacklevel=2)
        return f"{caption} (the plot failed: {message})", message_figure(f"Plot failed: {message}")
