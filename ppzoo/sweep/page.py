"""A study's HTML page: what was run, the metrics per setting across seeds, best and worst runs, failures."""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppzoo.sweep.files import write_atomic
from ppzoo.sweep.run import RUN_COLUMNS
from ppzoo.sweep.study import Study

__all__ = ["LOWER_IS_BETTER", "write_page", "format_seconds"]

#: Metric names (or suffixes) for which smaller is better; every other metric is ranked larger-is-better.
LOWER_IS_BETTER = ("amari_distance", "_rmse", "final_loss", "gaussian_tc", "max_r_hat", "divergences", "_s")


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _metric_columns(table: Any, params: Sequence[str]) -> list[str]:
    skip = set(params) | set(RUN_COLUMNS) | {"run", "index", "setting", "num_warnings", "first_warning"}
    timings = ("compile_s", "run_s", "total_s")  # also a case study's per-fit timings, "svi.compile_s"
    return [c for c in table.columns if c not in skip and not c.endswith(timings)
            and np.issubdtype(table[c].dtype, np.number) and table[c].notna().any()]


def _lower_is_better(column: str) -> bool:
    return any(column == s or (s.startswith("_") and column.endswith(s)) for s in LOWER_IS_BETTER)


def _strip_box(table: Any, column: str, settings: list[str]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(settings) + 2), 3.2))
    groups = [table.loc[table["setting"] == s, column].dropna().to_numpy(float) for s in settings]
    positions = np.arange(1, len(settings) + 1)
    non_empty = [(p, g) for p, g in zip(positions, groups) if len(g)]
    if non_empty:
        ax.boxplot([g for _, g in non_empty], positions=[p for p, _ in non_empty], widths=0.5, showfliers=False)
    jitter = np.random.default_rng(0)
    for p, g in zip(positions, groups):
        ax.scatter(p + jitter.uniform(-0.12, 0.12, len(g)), g, s=14, alpha=0.75, zorder=3)
    ax.set_xticks(positions, settings, rotation=30 if len(settings) > 3 else 0, ha="right" if len(settings) > 3 else "center", fontsize=8)
    ax.set_ylabel(column)
    ax.set_title(f"{column} ({'lower' if _lower_is_better(column) else 'higher'} is better); one dot per seed", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def write_page(study: Study, table: Any, out: Path, *, backend: str, seconds: float) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import pandas as pd

    from ppzoo.report import Section, html_page

    params = [c for c in study.grid_keys if c in table.columns]
    ok = table[table["status"] == "ok"] if len(table) else table
    settings = list(dict.fromkeys(table["setting"])) if len(table) else []
    metrics = _metric_columns(ok, params) if len(ok) else []
    counts = table["status"].value_counts().to_dict() if len(table) else {}

    what = pd.DataFrame({"value": {
        "study": study.name,
        study.kind.replace("_", " "): study.target,
        "case-study options": ", ".join(f"{k}={v}" for k, v in study.args.items()) or "(defaults)",
        "engine": study.engine if study.kind == "model" else "",
        "data": ", ".join(f"{k}={v}" for k, v in study.data.items()),
        "model config": ", ".join(f"{k}={v}" for k, v in study.model.items()) or "(defaults)",
        "engine options": ", ".join(f"{k}={v}" for k, v in study.engine_options.items()) or "(defaults)",
        "grid": "; ".join([f"{k} in {v}" for k, v in study.product.items()]
                          + [" zip ".join(f"{k} in {v}" for k, v in z.items()) for z in study.zips]),
        "metrics": ", ".join(study.metrics) or ("(the case study's metrics.csv)" if study.kind == "case_study"
                                                 else "(returned by the task)"),
        "runs": f"{len(table)} ({', '.join(f'{n} {s}' for s, n in counts.items())})",
        "backend": backend,
        "wall time of the last call": format_seconds(seconds),
        "max_retries": study.max_retries,
    }})
    what.index.name = "setting"
    blocks = [Section("What was run", text=(
        f"<p>Each run fits the model once with one seed; a setting is one combination of the grid's "
        f"non-seed values. Full table: <code>{html.escape(str((out / 'results.csv').resolve()))}</code>; "
        f"each run's DataTree and record are in <code>runs/&lt;run&gt;/</code>.</p>"), tables=[("Study", what, None)])]

    if metrics:
        per_setting = ok.groupby("setting", sort=False)[metrics].agg(["mean", "std", "count"])
        per_setting.columns = [f"{m} {dict(std='sd', count='n').get(s, s)}" for m, s in per_setting.columns]
        per_setting = per_setting.reindex([s for s in settings if s in set(ok["setting"])])
        per_setting.index.name = "setting"
        figures = [(f"{m} per setting across seeds (box: quartiles; dots: runs)", _strip_box(ok, m, settings)) for m in metrics[:12]]
        blocks.append(Section("Metrics per setting", tables=[("Mean, sd and number of finished runs per setting", per_setting, None)], figures=figures))
        primary = metrics[0]
        ascending = _lower_is_better(primary)
        ranked = ok.sort_values(primary, ascending=ascending)
        columns = ["run", *params, *metrics[:6]]
        best = ranked.head(3)[columns].set_index("run")
        worst = ranked.tail(3).iloc[::-1][columns].set_index("run")
        blocks.append(Section(
            f"Best and worst runs by {primary}",
            text=f"<p>Ranked by <b>{html.escape(primary)}</b> ({'lower' if ascending else 'higher'} is better).</p>",
            tables=[("Best runs", best, None), ("Worst runs", worst, None)],
        ))
    failed = table[table["status"] != "ok"] if len(table) else table
    if len(failed):
        shown = failed[[c for c in ["run", *params, "status", "attempts", "error"] if c in failed.columns]].set_index("run")
        blocks.append(Section("Failures", text=(
            "<p>Runs that failed every attempt (or never ran). Each attempt's error and traceback are in "
            "<code>failures/&lt;run&gt;.json</code>; running the study again retries them.</p>"),
            tables=[("Failed runs", shown, pd.Series([True] * len(shown)))]))
    else:
        blocks.append(Section("Failures", text="<p class='good'>No failed runs.</p>"))
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    page = html_page(f"ppzoo sweep: {study.name}", f"<p>Written {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC}.</p>", blocks)
    path = folder / "index.html"
    write_atomic(path, lambda p: p.write_text(page, encoding="utf-8"))
    return path
