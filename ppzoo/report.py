"""``ppzoo.report``: one self-contained HTML page (plots embedded as PNG), the DataTrees and the metrics.

The folder is written to a temporary sibling and renamed into place at the end, so a failed run leaves
no half-written report; an existing folder is replaced only if ppzoo wrote it.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import html
import importlib.metadata as md
import os
import platform
import re
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ppzoo.arviz import MAX_STORED_VALUES, STORED_STATS, write_datatree
from ppzoo.compare import ESS_MIN, RHAT_MAX, comparable_samples, global_sites, label_fits
from ppzoo.fit import Fit
from ppzoo.page import Claim, Section, figure_or_error, figure_png, message_figure, section_anchor

__all__ = [
    "report", "html_page", "recovery_metrics", "remove_stale_staging", "file_stem", "rst_to_html", "Section", "MARKER", "global_sites",
    "comparable_samples", "label_fits", "Claim", "section_anchor", "RHAT_MAX", "ESS_MIN", "figure_or_error",
    "message_figure",
]

MARKER = ".ppzoo-report"


def _img(caption: str, figure: Any) -> str:
    data = figure if isinstance(figure, bytes) else figure_png(figure)
    encoded = base64.b64encode(data).decode()
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _table(caption: str, frame: pd.DataFrame, flag: pd.Series | None = None) -> str:
    rows = []
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in [frame.index.name or ""] + list(frame.columns))
    for i, (index, row) in enumerate(frame.iterrows()):
        cls = ' class="flag"' if flag is not None and bool(flag.iloc[i]) else ""
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row.values)
        rows.append(f"<tr{cls}><th>{html.escape(str(index))}</th>{cells}</tr>")
    # Wide tables scroll inside their own box instead of running off the page.
    return (f'<div class="scroll"><table><caption>{html.escape(caption)}</caption><thead><tr>{header}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value)


def recovery_metrics(fit: Fit, truth: Mapping[str, Any]) -> dict[str, float]:
    """How well a fit recovered known values.

    ``z`` against ``truth["z"]``: MCC (Pearson and Spearman) of the posterior mean; ``mixing``: Amari
    distance of the posterior mean; any other site in both with the same shape: RMSE of the posterior
    mean and the share of true values inside the central 90% interval.
    """
    from ppzoo.metrics import amari_distance, mcc

    out: dict[str, float] = {}
    for name, true in truth.items():
        if name not in fit.samples:
            continue
        draws = fit.samples[name].reshape((-1,) + fit.samples[name].shape[2:])
        true = np.asarray(true)
        mean = draws.mean(0)
        if name == "z" and mean.ndim == 2 and true.ndim == 2 and mean.shape[0] == true.shape[0]:
            out["mcc_pearson"] = mcc(mean, true, method="pearson")
            out["mcc_spearman"] = mcc(mean, true, method="spearman")
        elif name == "mixing" and mean.shape == true.shape:
            out["amari_distance"] = amari_distance(mean, true)
        elif mean.shape == true.shape:
            low, high = np.quantile(draws, [0.05, 0.95], axis=0)
            out[f"{name}_rmse"] = float(np.sqrt(np.mean((mean - true) ** 2)))
            out[f"{name}_coverage90"] = float(np.mean((true >= low) & (true <= high)))
    return out


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("ppzoo", "jax", "numpyro", "blackjax", "flax", "optax", "arviz-base", "arviz-stats", "arviz-plots"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            out[package] = "not installed"
    return out


#: Most panels in one rank or density figure (arviz-plots' own limit is 40).
MAX_PANELS = 36


def _engine_sections(fit: Fit, tree: Any, label: str) -> tuple[Section, pd.DataFrame | None]:
    import arviz_plots
    import arviz_stats
    import matplotlib.pyplot as plt

    from ppzoo.checks import is_mcmc

    sites = global_sites(fit)
    tables, figures, text = [], [], []
    summary = None
    if fit.warnings:
        text.append("<p class='warn'><b>Warnings:</b> " + "<br>".join(html.escape(w) for w in fit.warnings) + "</p>")
    for note in fit.notes:
        text.append(f"<p class='note'>{html.escape(note)}</p>")
    if sites:
        summary = arviz_stats.summary(tree, var_names=sites, round_to="none")
        if fit.num_chains > 1:
            flag = (summary["r_hat"] > RHAT_MAX) | (summary["ess_bulk"] < ESS_MIN) | (summary["ess_tail"] < ESS_MIN)
            failing = summary.index[flag].tolist()
            text.append(
                f"<p>Flagged rows (red): r_hat &gt; {RHAT_MAX} or bulk/tail ESS &lt; {ESS_MIN} (all chains together). "
                + (f"<b class='bad'>{len(failing)} failing: {html.escape(', '.join(failing))}</b>" if failing else "<b class='good'>None failing.</b>")
                + "</p>"
            )
        else:
            flag = None
            text.append("<p>One Markov chain: no between-chain r_hat (run two or more chains to check mixing).</p>"
                        if is_mcmc(fit) else
                        "<p>One chain of independent draws from the fitted guide: r_hat and ESS do not apply.</p>")
        tables.append((f"{label}: ArviZ summary of {', '.join(sites)}", summary, flag))
        # arviz-plots draws one panel per scalar and refuses more than rcParams["plot.max_subplots"] (40):
        # plot whole sites, in order, while they fit in MAX_PANELS; the summary table above has them all.
        plotted, panels = [], 0
        for site in sites:
            size = int(np.prod(np.shape(fit.samples[site])[2:], dtype=int))
            if panels + size > MAX_PANELS and plotted:
                break
            plotted.append(site)
            panels += size
        if panels > MAX_PANELS:
            plotted = []
        note = "" if plotted == sites else f" ({', '.join(plotted)}; the other sites have too many scalars to plot)"
        if plotted and fit.num_chains > 1:
            figures.append(figure_or_error(f"{label}: rank plots (uniform ranks = chains agree){note}",
                                           lambda: arviz_plots.plot_rank(tree, var_names=plotted, backend="matplotlib")))
        elif plotted:
            figures.append(figure_or_error(f"{label}: posterior densities{note}",
                                           lambda: arviz_plots.plot_dist(tree, var_names=plotted, backend="matplotlib")))
    if "diverging" in fit.sample_stats:
        div = np.asarray(fit.sample_stats["diverging"])
        text.append(f"<p>Divergent transitions: <b class='{'bad' if div.any() else 'good'}'>{int(div.sum())}</b> of {div.size}.</p>")
    if fit.losses is not None:
        fig, ax = plt.subplots(figsize=(6, 2.6))
        losses = np.asarray(fit.losses)
        # Several losses (the adversarial engine's generator and discriminator) come as named fields.
        named = losses.dtype.names or ()
        curves = {n: np.asarray(losses[n], float) for n in named} if named else {"": losses}
        for name, curve in curves.items():
            ax.plot(np.arange(len(curve)), curve, lw=0.8, label=name or None)
        finite = np.concatenate([c[np.isfinite(c)] for c in curves.values()])
        if finite.size:
            lo, hi = np.quantile(finite, [0.0, 0.98])
            ax.set_ylim(lo - 0.05 * abs(hi - lo), hi + 0.05 * abs(hi - lo))
        ax.set_xlabel("step")
        ax.set_ylabel("loss" if named else "loss (negative ELBO)")
        if named:
            ax.legend(fontsize=8)
        kind = f"{' and '.join(named)} losses" if named else "SVI loss"
        ax.set_title(f"{label}: {kind}")
        figures.append((f"{label}: {kind} per step", fig))
    section = Section(f"Engine: {label}", text="".join(text))
    section.tables = tables
    section.figures = figures
    return section, summary


def report(
    fits: Fit | Sequence[Fit] | Mapping[str, Fit],
    out: str | os.PathLike = "report",
    *,
    truth: Mapping[str, Any] | None = None,
    title: str | None = None,
    description: str = "",
    sections: Sequence[Section] = (),
    data_info: Mapping[str, Any] | None = None,
    store_draws: str = "summary",
    claims: Sequence[Claim] = (),
) -> Path:
    """Write the report folder of one or more fits of the same model.

    The page opens with a verdict strip: the study's ``claims`` first, then every closed-loop check on the page
    (engines agree, prior and posterior predictive, LOO, LOO-PIT, SBC, convergence of each MCMC fit, and the
    checks of ``sections`` made by :func:`ppzoo.checks.closed_loop_section`), each PASS / FAIL / n/a and linked to
    the section that shows its evidence; ``verdicts.csv`` holds the same rows.

    Parameters
    ----------
    fits : Fit, sequence of Fit, or mapping label -> Fit
        Fits of the same model (any engines). Labels default to the engine names.
    out : path-like
        The folder to write: ``index.html``, one ``<label>.nc`` DataTree per fit (the label made shell-safe by :func:`file_stem`), ``metrics.csv``,
        ``verdicts.csv`` (columns kind "claim" | "check", name, engine, verdict "PASS" | "FAIL" | "n/a", detail).
    truth : mapping, optional
        Known true values by site name (``ds.truth``); adds recovery metrics.
    title, description : str
        Page heading and an introductory paragraph (HTML allowed in ``description``).
    sections : sequence of Section
        Extra blocks appended by case studies.
    data_info : mapping, optional
        How the data were made (``ds.info``), shown under "What was run".
    store_draws : {"summary", "all"}
        How the ``.nc`` files hold per-datum variables (local latents such as ``z``, replicated data,
        pointwise log-likelihood) with more than :data:`ppzoo.arviz.MAX_STORED_VALUES` values: ``"summary"``
        (default) stores their per-element mean, sd and quantiles in a ``<group>_summary`` group instead of
        every draw; ``"all"`` keeps every draw. The page says what was stored. Files are compressed either way.
    claims : sequence of Claim
        The study's own claims, listed first in the verdict strip; each ``Claim.section`` must be the title of one
        of ``sections`` or of a built-in section ("What was run", "Engine: <label>", the closed-loop section,
        "Engines side by side").

    Returns
    -------
    pathlib.Path
        The report folder.

    Raises
    ------
    ValueError
        If no fit is given, the fits are of different models, ``out`` exists and was not written by ppzoo, or a
        claim links to a section that is not on the page.
    TypeError
        If ``claims`` holds something other than :class:`Claim`.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    labelled = label_fits(fits)
    names = {f.model_name for f in labelled.values()}
    if len(names) > 1:
        raise ValueError(f"`fits` must be fits of one model; got models {sorted(names)}. Make one report per model.")
    claims = list(claims)
    _check_claims(claims, _builtin_titles(labelled) + [s.title for s in sections])
    out = Path(out)
    if out.exists() and not (out / MARKER).exists() and any(out.iterdir()):
        raise ValueError(
            f"`out` folder {str(out)!r} exists and was not written by ppzoo; refusing to replace it. "
            "Choose another folder or remove it."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    staging = _staging_folder(out, "new")
    try:
        _write(labelled, staging, truth=truth, title=title, description=description, sections=sections,
               data_info=data_info, store_draws=store_draws, claims=claims)
        (staging / MARKER).write_text("written by ppzoo.report\n")
        if out.exists():
            trash = _staging_folder(out, "old")
            os.replace(out, trash / "old")
            os.replace(staging, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, out)
        (out / STAGING_OWNER).unlink(missing_ok=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


#: File inside a temporary sibling folder that names the process writing it (``<pid>`` on one line).
STAGING_OWNER = ".ppzoo-staging"


def _staging_folder(out: Path, kind: str) -> Path:
    """A hidden sibling of ``out`` that this process owns: ``.<name>.<kind>.<random>`` with its pid inside."""
    folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.{kind}.", dir=out.parent))
    (folder / STAGING_OWNER).write_text(f"{os.getpid()}\n")
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_staging(out: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary siblings of ``out`` left by writers that were killed before they could clean up.

    A report is written into a hidden sibling folder and renamed into place; a writer killed in between
    (SIGKILL, power loss) leaves that folder behind. Every such folder names its writer's process id, so
    the next write to the same place removes those whose process is gone and keeps those of a live writer.

    Returns
    -------
    list of pathlib.Path
        The folders removed.
    """
    out = Path(out)
    removed = []
    if not out.parent.is_dir():
        return removed
    for folder in out.parent.glob(f".{out.name}.*"):
        owner = folder / STAGING_OWNER
        if not folder.is_dir() or not owner.is_file():
            continue
        try:
            pid = int(owner.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed



def rst_to_html(text: str) -> str:
    """A docstring paragraph as HTML for a report: escaped, one line, ``literals`` and Sphinx roles
    (``:func:`ppzoo.fit```) as ``<code>``."""
    text = html.escape(" ".join(text.split()), quote=False)
    text = re.sub(r":\w+:`~?([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"``(.+?)``", r"<code>\1</code>", text)

def file_stem(label: str, taken: set[str] | None = None) -> str:
    """A file name a shell can use without quoting, from a fit's label: ``"iVAE (NUTS, exact)"`` ->
    ``"iVAE_NUTS_exact"``; letters, digits, ``.``, ``_`` and ``-`` are kept, runs of anything else become one
    ``_``. With ``taken``, a name already in it gets a ``_2``, ``_3``, ... suffix, and the name is added."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_.") or "fit"
    if taken is None:
        return stem
    unique, k = stem, 2
    while unique in taken:
        unique, k = f"{stem}_{k}", k + 1
    taken.add(unique)
    return unique


#: Title of the built-in closed-loop section (predictive checks, LOO, engines agree).
CLOSED_LOOP_TITLE = "Closed loop: predictive checks and LOO"


def _builtin_titles(labelled: Mapping[str, Fit]) -> list[str]:
    """The titles of the sections every page has, in page order."""
    return ["What was run", *(f"Engine: {label}" for label in labelled), CLOSED_LOOP_TITLE, "Engines side by side"]


def _check_claims(claims: Sequence[Claim], titles: Sequence[str]) -> None:
    for i, claim in enumerate(claims):
        if not isinstance(claim, Claim):
            raise TypeError(f"`claims[{i}]` is a {type(claim).__name__}, not a ppzoo.report.Claim; make it with "
                            "Claim(name, passed, detail, section=...).")
        if claim.section is not None and claim.section not in titles:
            raise ValueError(
                f"Claim {claim.name!r} links to section {claim.section!r}, which is not on the page; use one of the "
                f"section titles: {', '.join(repr(t) for t in titles)} (or section=None)."
            )


def _write(labelled: dict[str, Fit], folder: Path, *, truth, title, description, sections, data_info,
           store_draws: str = "summary", claims: Sequence[Claim] = ()) -> None:
    import arviz_plots

    first = next(iter(labelled.values()))
    trees = {label: f.datatree for label, f in labelled.items()}  # built once per fit, shared with the checks
    stems: set[str] = set()
    stored = {}
    for label, tree in trees.items():
        path = folder / f"{file_stem(label, stems)}.nc"
        stored[label] = (path.name, write_datatree(tree, path, store_draws=store_draws))

    # What was run.
    runs = pd.DataFrame(
        {
            label: {
                "engine": f.engine,
                "seed": f.seed,
                "chains x draws": f"{f.num_chains} x {f.num_draws}",
                "compile s": round(f.timings["compile_s"], 2),
                "run s": round(f.timings["run_s"], 2),
                "settings": _settings_text(f),
                "warnings": len(f.warnings),
            }
            for label, f in labelled.items()
        }
    ).T
    runs.index.name = "fit"
    data_rows = {k: str(np.shape(v)) if hasattr(v, "shape") else repr(v) for k, v in first.data.items()}
    data_frame = pd.DataFrame({"value": data_rows})
    data_frame.index.name = "data argument"
    blocks = [Section("What was run", text=_intro(first, data_info) + _stored_text(stored, folder),
                      tables=[("Fits", runs, None), ("Data", data_frame, None)])]

    from ppzoo.checks import (closed_loop_section, convergence_check, engines_agree, is_mcmc, predictive_checks,
                              psis_check)

    metrics_rows = []
    summaries = {}
    for label, f in labelled.items():
        section, summary = _engine_sections(f, trees[label], label)
        section.figures = [fig for fig in section.figures if fig[1] is not None]
        summaries[label] = summary
        if is_mcmc(f):  # Markov chains: every sampled site, per-datum latents summarised
            _add_convergence(section, convergence_check(f, label))
        blocks.append(section)
        row = {"fit": label, "engine": f.engine, "model": f.model_name, "seed": f.seed,
               "compile_s": f.timings["compile_s"], "run_s": f.timings["run_s"]}
        if "diverging" in f.sample_stats:
            row["divergences"] = int(np.asarray(f.sample_stats["diverging"]).sum())
        if f.pareto_k is not None:  # a fitted approximation's PSIS k-hat (median over items if amortized)
            row["pareto_k"] = f.pareto_k
        if summary is not None and f.num_chains > 1:
            row["max_r_hat"] = float(summary["r_hat"].max())
            row["min_ess_bulk"] = float(summary["ess_bulk"].min())
        if truth:
            row.update(recovery_metrics(f, truth))
        metrics_rows.append(row)
    metrics = pd.DataFrame(metrics_rows)
    metrics.to_csv(folder / "metrics.csv", index=False)

    # Several engines on one page: first say whether they found the same posterior.
    checks = [engines_agree(labelled)] if len(labelled) > 1 else []
    prior_shown: str | None = None
    for label, f in labelled.items():
        for check in predictive_checks(f, trees[label], label=label):
            if check.name == "prior predictive" and check.figures and len(labelled) > 1:
                prior_shown = _prior_figures_once(check, label, f, prior_shown, labelled)
            check.name = f"{check.name} ({label})"
            checks.append(check)
        if not is_mcmc(f):  # a fitted approximation: can it be trusted (PSIS k-hat)?
            checks.append(psis_check(f, label))
    blocks.append(closed_loop_section(checks, title=CLOSED_LOOP_TITLE))

    compare = Section("Engines side by side")
    sites = global_sites(first)
    if len(trees) > 1 and sites:
        aligned = getattr(first.model, "align", None) is not None
        marked = [s for s in sites if truth and s in truth and np.shape(truth[s]) == first.samples[s].shape[2:]]
        if aligned and len(marked) < len(sites):
            marked = []  # the fits cannot be mapped onto the truth's labelling of the modes: no markers
        compare.figures.append(figure_or_error(
            "Posterior of each fit per parameter, one panel (x axis) per site: median (dot), 50% "
            "(thick) and 94% (thin) intervals, chains pooled"
            + (f"; true values: black diamonds ({', '.join(marked)})" if marked else "")
            + ((" (each fit mapped onto the true sources' labelling: permutation and signs)"
                if marked else " (each fit mapped onto the first fit's mode; the truth is not "
                "marked, as its labelling of the modes is unknown)") if aligned else ""),
            lambda: _forest(labelled, sites, {s: truth[s] for s in marked})))
    shown = metrics.set_index("fit").drop(columns=["model"])
    compare.tables.append(("Per fit: timings, diagnostics" + (" and recovery of the truth" if truth else ""), shown, None))
    if truth:
        compare.text = _recovery_text(metrics)
    blocks.append(compare)
    blocks.extend(sections)
    anchors = _anchors(blocks)
    strip = _strip_rows(claims, blocks, anchors)
    pd.DataFrame(strip, columns=[*VERDICT_COLUMNS, "anchor"])[list(VERDICT_COLUMNS)].to_csv(
        folder / "verdicts.csv", index=False)
    page = html_page(title or f"ppzoo report: {first.model_name}", description, blocks, anchors=anchors, strip=strip)
    (folder / "index.html").write_text(page, encoding="utf-8")


def _verdict_word(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "n/a"}[passed]


def _add_convergence(section: Section, check: Any) -> None:
    """An MCMC fit's convergence verdict and per-site table (worst scalar, counts) in its engine section."""
    css = {True: "good", False: "bad", None: "na"}[check.passed]
    section.text += (f"<p><b class='{css}'>{_verdict_word(check.passed)}</b> <b>convergence</b> of every sampled "
                     f"site: {html.escape(check.verdict)}</p>")
    for caption, frame in check.tables:
        flag = (frame[[c for c in frame.columns if c.startswith(("r_hat >", "ESS <"))]] > 0).any(axis=1)
        section.tables.append((caption, frame, flag))
    section.checks.append(check)


def _anchors(blocks: Sequence[Section]) -> list[str]:
    """Each block's HTML id: :func:`section_anchor` of its title, ``-2``, ``-3`` ... for repeated titles."""
    out, taken = [], set()
    for block in blocks:
        base = anchor = section_anchor(block.title)
        k = 2
        while anchor in taken:
            anchor, k = f"{base}-{k}", k + 1
        taken.add(anchor)
        out.append(anchor)
    return out


#: Columns of ``verdicts.csv``, one row per line of the verdict strip.
VERDICT_COLUMNS = ("kind", "name", "engine", "verdict", "detail")

#: Order of the closed-loop checks in the strip (by name, before the fit's label); others come last.
_CHECK_ORDER = ("engines agree", "prior predictive", "posterior predictive", "LOO", "LOO-PIT", "SBC",
                "reference posterior", "convergence")


def _split_label(name: str) -> tuple[str, str]:
    """``"LOO (nuts)"`` -> ``("LOO", "nuts")``; a name without a trailing parenthesis has no fit label."""
    match = re.fullmatch(r"(.*\S)\s+\(([^()]*)\)", name)
    return (match.group(1), match.group(2)) if match else (name, "")


def _strip_rows(claims: Sequence[Claim], blocks: Sequence[Section], anchors: Sequence[str]) -> list[dict[str, Any]]:
    """The verdict strip: the study's claims, then the checks held by the page's sections, in check order.

    A check that appears in two sections with the same verdict (a case study that repeats the built-in
    predictive checks in its own closed-loop section) is listed once, linked to the first.
    """
    by_title: dict[str, str] = {}
    for block, anchor in zip(blocks, anchors):
        by_title.setdefault(block.title, anchor)
    rows = [{"kind": "claim", "name": c.name, "engine": "", "verdict": _verdict_word(c.passed), "detail": c.detail,
             "anchor": by_title.get(c.section) if c.section else None} for c in claims]
    checks, seen = [], set()
    for block, anchor in zip(blocks, anchors):
        for check in getattr(block, "checks", ()):
            name, engine = _split_label(check.name)
            key = (name, engine, check.passed, check.verdict)
            if key in seen:
                continue
            seen.add(key)
            rank = next((i for i, n in enumerate(_CHECK_ORDER) if name == n or name.startswith(n + " ")),
                        len(_CHECK_ORDER))
            checks.append((rank, {"kind": "check", "name": name, "engine": engine,
                                  "verdict": _verdict_word(check.passed), "detail": check.verdict, "anchor": anchor}))
    checks.sort(key=lambda item: item[0])  # stable: fits keep their page order within a check
    return rows + [row for _, row in checks]


#: Longest detail shown in the strip; the whole text is on hover and in ``verdicts.csv``.
STRIP_DETAIL_CHARS = 220


def _strip_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """The verdict strip's HTML; ``""`` for a page without verdicts (a sweep's page)."""
    if not rows:
        return ""
    counts = {w: sum(r["verdict"] == w for r in rows) for w in ("PASS", "FAIL", "n/a")}
    parts = [
        "<section id='verdicts' class='strip'><p class='strip-head'><b>Verdicts</b>: "
        f"<span class='good'>{counts['PASS']} PASS</span>, <span class='bad'>{counts['FAIL']} FAIL</span>, "
        f"<span class='na'>{counts['n/a']} n/a</span>. The study's claims first, then ppzoo's closed-loop checks; "
        "each name links to the section with its evidence (full text on hover and in verdicts.csv).</p>"
        "<table class='strip'><tbody>"
    ]
    for kind, heading, empty in (("claim", "The study's claims", "none stated on this page"),
                                 ("check", "Closed-loop checks", "none")):
        group = [r for r in rows if r["kind"] == kind]
        parts.append(f"<tr class='group'><th colspan='4'>{heading}</th></tr>")
        if not group:
            parts.append(f"<tr><td></td><td colspan='3' class='na small'>{empty}</td></tr>")
        for r in group:
            css = {"PASS": "pass", "FAIL": "fail", "n/a": "na"}[r["verdict"]]
            name = html.escape(r["name"])
            link = f"<a href='#{r['anchor']}'>{name}</a>" if r["anchor"] else name
            detail = str(r["detail"])
            short = detail if len(detail) <= STRIP_DETAIL_CHARS else detail[:STRIP_DETAIL_CHARS].rsplit(" ", 1)[0] + " ..."
            hover = f" title='{html.escape(detail, quote=True)}'" if short != detail else ""
            parts.append(
                f"<tr class='{css}'><td><span class='badge {css}'>{r['verdict']}</span></td><td>{link}</td>"
                f"<td class='small'>{html.escape(r['engine'])}</td>"
                f"<td class='small'{hover}>{html.escape(short)}</td></tr>"
            )
    parts.append("</tbody></table></section>")
    return "".join(parts)


def _same_data(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if set(a) != set(b):
        return False
    for key in a:
        x, y = a[key], b[key]
        if hasattr(x, "shape") or hasattr(y, "shape"):
            if np.shape(x) != np.shape(y) or not np.array_equal(np.asarray(x), np.asarray(y)):
                return False
        elif x is not y and x != y:
            return False
    return True


def _prior_figures_once(check: Any, label: str, fit: Fit, shown: str | None, labelled: Mapping[str, Fit]) -> str:
    """Keep a prior predictive figure on the first fit only: the prior depends on the model and data, not on the
    engine, so every later fit of the same data would repeat it. Returns the label whose figure is shown."""
    import matplotlib.pyplot as plt

    if shown is not None and _same_data(labelled[shown].data, fit.data):
        for _, figure in check.figures:
            if hasattr(figure, "savefig") and hasattr(figure, "add_subplot"):
                plt.close(figure)
            elif "figure" in getattr(figure, "viz", {}):
                plt.close(figure.viz["figure"].item())
        check.figures = []
        return shown
    others = [other for other, f in labelled.items() if other != label and _same_data(f.data, fit.data)]
    check.figures = [(caption + f" (the same for {', '.join(others)}: the prior does not depend on the engine)"
                      if others else caption, figure) for caption, figure in check.figures]
    return label


def _forest(labelled: Mapping[str, Fit], sites: Sequence[str], truth: Mapping[str, Any] | None = None):
    """One panel per site, each on its own x axis (sites differ in scale); in it one row per scalar, one
    coloured interval per fit (chains pooled), and the true value (black diamond) where ``truth`` gives it."""
    import matplotlib.pyplot as plt

    comparable = comparable_samples(labelled, sites, truth)
    first = next(iter(labelled.values()))
    shapes = {site: first.samples[site].shape[2:] for site in sites}
    heights = [max(1, int(np.prod(shapes[s], dtype=int))) for s in sites]
    per_row = 0.32 * max(1, len(labelled) / 2)
    fig, axes = plt.subplots(len(sites), 1, figsize=(7, per_row * sum(heights) + 0.75 * len(sites) + 0.4),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    offsets = np.linspace(-0.25, 0.25, len(labelled)) if len(labelled) > 1 else [0.0]
    for ax, site in zip(axes[:, 0], sites):
        shape = shapes[site]
        indices = list(np.ndindex(*shape)) if shape else [()]
        for k, (label, samples) in enumerate(comparable.items()):
            draws = samples[site].reshape((-1,) + samples[site].shape[2:])
            colour = colours[k % len(colours)]
            for r, idx in enumerate(indices):
                q = np.quantile(draws[(slice(None),) + idx], [0.03, 0.25, 0.5, 0.75, 0.97])
                y = r + offsets[k]
                ax.plot([q[0], q[4]], [y, y], color=colour, lw=1)
                ax.plot([q[1], q[3]], [y, y], color=colour, lw=3.5)
                ax.plot(q[2], y, "o", color=colour, ms=4, label=label if r == 0 and ax is axes[0, 0] else None)
        true = None if truth is None or site not in truth else np.asarray(truth[site])
        if true is not None and true.shape == tuple(shape):
            ax.plot([float(true[idx]) for idx in indices], range(len(indices)), "D", color="black", ms=5,
                    mfc="none", label="truth")
        ax.set_yticks(range(len(indices)))
        ax.set_yticklabels([f"{site}[{', '.join(map(str, idx))}]" if shape else site for idx in indices], fontsize=8)
        ax.set_ylim(len(indices) - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
    handles, names = [], []
    for ax in axes[:, 0]:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            if name not in names:
                handles.append(handle)
                names.append(name)
    axes[0, 0].legend(handles, names, loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def _readable(value: Any) -> str:
    """A setting as a reader wants it: numbers rounded, ``<X object at 0x...>`` as ``X``, an optax optimizer
    (a pair of closures) as what it is, a function by its name."""
    if isinstance(value, (float, np.floating)):
        return _fmt(value)
    if callable(getattr(value, "init", None)) and callable(getattr(value, "update", None)) and isinstance(value, tuple):
        return f"optax {type(value).__name__}"
    text = re.sub(r"<(?:[\w.]+\.)?(\w+) object at 0x[0-9a-fA-F]+>", r"\1", str(value))
    return re.sub(r"<function ([\w.<>]+) at 0x[0-9a-fA-F]+>", r"\1", text)


def _settings_text(fit: Fit) -> str:
    """The engine settings that ran: the guide and optimizer an unset option stood for, objects by class name."""
    # By option name, not engine name: the options of an optimising engine (SVI's guide, optimizer) say what
    # their unset values stood for; any engine with such options gets the same reading.
    parts = []
    for key, value in fit.options.items():
        if key == "guide" and value is None:
            own = getattr(fit.model, "guide", None) is not None  # a zoo model's own (amortized) guide
            value = f"the model's own guide ({fit.model_name})" if own else "auto_normal (default)"
        elif key == "optimizer" and value is None and "learning_rate" in fit.options:
            value = f"adam({_fmt(fit.options.get('learning_rate'))})"
        elif key == "learning_rate" and fit.options.get("optimizer") is not None:
            continue  # the optimizer given carries its own rate
        else:
            value = _readable(value)
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def _stored_text(stored: Mapping[str, tuple[str, Mapping[str, list[str]]]], folder: Path) -> str:
    """What the ``.nc`` files hold: every draw, or per-element summaries of the large per-datum variables."""
    items = []
    for label, (name, summarised) in stored.items():
        size = (folder / name).stat().st_size / 1e6
        what = "every draw of every variable"
        if summarised:
            parts = [f"{', '.join(names)} in {group}" for group, names in summarised.items()]
            what = (f"every draw, except per-element {', '.join(STORED_STATS)} (in <code>&lt;group&gt;_summary</code>) "
                    f"for {html.escape('; '.join(parts))}")
        items.append(f"<li><code>{html.escape(name)}</code> ({size:.1f} MB, {html.escape(label)}): {what}</li>")
    return (
        "<p class='small'><b>Files</b> (ArviZ DataTrees, compressed netCDF; per-datum variables with more than "
        f"{MAX_STORED_VALUES:,} values are stored as summaries unless <code>ppzoo.report(..., "
        "store_draws='all')</code>):</p><ul class='small'>" + "".join(items) + "</ul>"
    )


def _config_text(fit: Fit) -> str:
    """The model's config, with the settings left to the data (``None``) shown by the shapes that ran."""
    config = getattr(fit.model, "config", None)
    text = ""
    if config is not None:
        if dataclasses.is_dataclass(config):
            fields = [(f.name, getattr(config, f.name)) for f in dataclasses.fields(config)]
            shown = ", ".join(f"{k}={_readable(v)}" for k, v in fields)
            text = f"<p><b>Model config:</b> {html.escape(type(config).__name__)}({html.escape(shown)})</p>"
            if any(v is None for _, v in fields):
                text += ("<p class='small'>Fields left as None take their value from the data or their documented "
                         "default when the model runs: the site shapes below are what ran.</p>")
        else:
            text = f"<p><b>Model config:</b> {html.escape(_readable(config))}</p>"
    sites = getattr(fit, "sites", None)
    if sites is not None:
        roles = [(n, "latent") for n in sites.latent] + [(n, "deterministic") for n in sites.deterministic] + [
            (n, "observed") for n in sites.observed]
        shapes = "; ".join(
            f"{name} {tuple(np.shape(sites.values[name]))} ({role}; dims {', '.join(sites.dims.get(name, [])) or 'none'})"
            for name, role in roles if name in sites.values)
        text += f"<p class='small'><b>Sites as run</b> (shape of one draw): {html.escape(shapes)}</p>"
    return text


def _intro(fit: Fit, data_info: Mapping[str, Any] | None) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in _versions().items())
    info = ""
    if data_info:
        info = "<p><b>Data set:</b> " + html.escape(", ".join(f"{k}={_readable(v)}" for k, v in data_info.items())) + "</p>"
    cfg = _config_text(fit)
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"<p><b>Model:</b> {html.escape(fit.model_name)}. <b>Written:</b> {when}.</p>{cfg}{info}"
        f"<p class='small'><b>Versions:</b> {html.escape(versions)}</p>"
        "<p class='small'>compile s = tracing, lowering and XLA compilation (small when JAX's persistent cache "
        "already holds the program); run s = everything else.</p>"
    )


def _recovery_text(metrics: pd.DataFrame) -> str:
    parts = []
    for _, row in metrics.iterrows():
        bits = []
        if "mcc_pearson" in row and pd.notna(row.get("mcc_pearson")):
            bits.append(f"MCC {row['mcc_pearson']:.3f}")
        if "amari_distance" in row and pd.notna(row.get("amari_distance")):
            bits.append(f"Amari distance {row['amari_distance']:.3f}")
        if bits:
            parts.append(f"<li><b>{html.escape(str(row['fit']))}</b>: {', '.join(bits)}</li>")
    if not parts:
        return ""
    return (
        "<p>Recovery of the true sources and mixing (MCC: mean absolute correlation of matched sources, 1 is "
        "perfect; Amari distance: 0 is perfect, both invariant to permutation and sign):</p><ul>" + "".join(parts) + "</ul>"
    )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:.85em} caption{text-align:left;font-weight:600;padding:.3em 0}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right} thead th{background:#f3f3f3}
tbody th{text-align:left;font-weight:500} tr.flag td,tr.flag th{background:#fde2e2}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee} figcaption{font-size:.85em;color:#555}
.warn{background:#fff4d6;padding:.5em;border-left:4px solid #e0a800} .note{background:#eef5ff;padding:.5em;border-left:4px solid #4a90d9}
.bad{color:#b00020} .good{color:#1b7f3b} .na{color:#777} .scroll{overflow-x:auto;max-width:100%} .small{font-size:.8em;color:#555} nav a{margin-right:1em}
.strip{border:1px solid #ccc;border-radius:4px;padding:.3em .8em;margin:0 0 1.2em;background:#fafafa} .strip-head{margin:.3em 0}
table.strip{margin:.3em 0;width:100%} table.strip td,table.strip th{border:none;border-bottom:1px solid #eee;text-align:left;vertical-align:top;padding:.2em .5em}
table.strip tr.group th{background:none;font-size:.85em;color:#444;padding-top:.6em} table.strip tr.fail td{background:#fdecec}
.badge{display:inline-block;min-width:2.6em;text-align:center;border-radius:3px;color:#fff;font-weight:700;font-size:.8em;padding:.05em .3em}
.badge.pass{background:#1b7f3b} .badge.fail{background:#b00020} .badge.na{background:#999} table.strip td:nth-child(2){min-width:12em}
"""


def html_page(title: str, description: str, blocks: Sequence[Section], *, anchors: Sequence[str] | None = None,
              strip: Sequence[Mapping[str, Any]] = ()) -> str:
    """The HTML page of ``blocks`` (:class:`Section`) under ``title``: what :func:`report` writes, and
    other pages in the same style (a sweep's). ``strip`` holds the verdict strip's rows."""
    anchors = _anchors(blocks) if anchors is None else anchors
    nav = "".join(f'<a href="#{a}">{html.escape(b.title)}</a>' for a, b in zip(anchors, blocks))
    body = []
    for anchor, block in zip(anchors, blocks):
        parts = [f'<h2 id="{anchor}">{html.escape(block.title)}</h2>', block.text]
        for table in block.tables:
            caption, frame, *flag = table
            parts.append(_table(caption, frame, flag[0] if flag else None))
        for caption, figure in block.figures:
            try:
                parts.append(_img(caption, figure))
            except Exception as error:  # a broken plot is shown, never hidden
                warnings.warn(f"Plot {caption!r} failed: {error}", stacklevel=2)
                parts.append(f"<p class='warn'>Plot {html.escape(caption)} failed: {html.escape(str(error))}</p>")
        body.append("".join(parts))
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{_strip_html(strip)}{description}"
        f"<nav>{nav}</nav>"
        + "".join(body)
        + "</body></html>"
    )
