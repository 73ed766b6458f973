"""One run of a study, in a worker process, and its folder: ``execute_run`` writes it, ``gather`` reads
every run's folder back into the study's table."""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import json
import os
import socket
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ppzoo.case_study_registry import case_study_module
from ppzoo.sweep.files import write_atomic, write_json
from ppzoo.sweep.study import RunSpec, case_study_args, load_function, resolve_metric

__all__ = ["RUN_COLUMNS", "execute_run", "run_guarded", "gather"]

#: Record columns that describe how a run went rather than what it found; they differ between backends.
RUN_COLUMNS = ("status", "attempts", "error", "seconds", "compile_s", "run_s", "total_s", "metrics_s", "pid", "host",
               "finished_at")

_DATA_CACHE: collections.OrderedDict[str, Any] = collections.OrderedDict()
_CACHE_ON: set[str] = set()


def _enable_cache(cache_dir: str | None) -> None:
    """Turn JAX's persistent compilation cache on in this worker, once per folder."""
    if cache_dir and cache_dir not in _CACHE_ON:
        import ppzoo

        ppzoo.enable_compilation_cache(cache_dir)
        _CACHE_ON.add(cache_dir)


def _dataset(settings: Mapping[str, Any]) -> Any:
    import ppzoo.data

    key = json.dumps(settings, sort_keys=True, default=repr)
    if key not in _DATA_CACHE:
        args = {k: v for k, v in settings.items() if k != "name"}
        _DATA_CACHE[key] = ppzoo.data.load(settings["name"], **args)
        while len(_DATA_CACHE) > 2:
            _DATA_CACHE.popitem(last=False)
    return _DATA_CACHE[key]


def _case_study_metrics(report: Path) -> dict[str, Any]:
    """The numeric columns of a case study's ``metrics.csv``, one column per fit: ``<fit>.<metric>``."""
    import pandas as pd

    path = report / "metrics.csv"
    if not path.exists():
        return {}
    frame = pd.read_csv(path)
    label = "fit" if "fit" in frame.columns else frame.columns[0]
    out = {}
    for _, row in frame.iterrows():
        for column, value in row.items():
            if column in (label, "seed") or isinstance(value, bool):
                continue
            if isinstance(value, (int, float, np.integer, np.floating)):
                out[f"{row[label]}.{column}"] = float(value)
    return out


def _scalar_metrics(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    out = {}
    for name, value in dict(values).items():
        array = np.asarray(value)
        if array.ndim != 0:
            raise TypeError(f"{source} returned {name!r} with shape {array.shape}; metrics must be scalars.")
        out[str(name)] = value.item() if isinstance(value, np.generic) else value
    return out


def execute_run(spec: RunSpec, runs_dir: str | os.PathLike, attempt: int = 1) -> dict[str, Any]:
    """Do one run and write its files; return its record. A run whose record exists is not redone.

    Writes ``runs_dir/<key>/fit.nc`` (zoo models, unless ``output.datatree`` is false) and then
    ``runs_dir/<key>/record.json``, each atomically; the record is written last, so its presence means
    the run finished.
    """
    folder = Path(runs_dir) / spec.key
    record_path = folder / "record.json"
    if record_path.exists():
        return json.loads(record_path.read_text(encoding="utf-8"))
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "settings.json", dataclasses.asdict(spec))
    start = time.perf_counter()
    record: dict[str, Any] = {"run": spec.key, "index": spec.index, "setting": spec.setting, **spec.params}
    if spec.kind == "task":
        task = load_function(spec.target, spec.base_dir, "task")
        settings = {"data": dict(spec.data), "model": dict(spec.model), "engine": dict(spec.engine_options)}
        result = task(settings, seed=spec.seed)
        if not isinstance(result, Mapping):
            raise TypeError(f"task {spec.target!r} must return a dict of metrics; got {type(result).__name__}.")
        record.update(_scalar_metrics(result, f"task {spec.target!r}"))
    elif spec.kind == "case_study":
        import shutil

        _enable_cache(spec.cache_dir)
        staging = folder / ".report"
        shutil.rmtree(staging, ignore_errors=True)
        args = case_study_args(spec.target, spec.args or {}, spec.seed, str(staging), spec.params)
        report = Path(case_study_module(spec.target).run(args))
        record.update(_case_study_metrics(report))
        final = folder / "report"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(report, final)  # the case study's report, whole, next to the record
    else:
        import ppzoo
        from ppzoo.arviz import write_datatree

        _enable_cache(spec.cache_dir)
        dataset = _dataset(spec.data)
        model = ppzoo.models.get(spec.target, **spec.model)
        fit = ppzoo.fit(model, dataset.data, engine=spec.engine, seed=spec.seed, **spec.engine_options)
        scoring = time.perf_counter()
        for reference in spec.metrics:
            values = resolve_metric(reference, spec.base_dir)(fit, dataset)
            values = _scalar_metrics(values, f"metric {reference!r}")
            clash = sorted(set(values) & set(record))
            if clash:
                raise ValueError(f"metric {reference!r} returned {clash}, which another column already has.")
            record.update(values)
        if fit.losses is not None and len(fit.losses):
            tail = np.asarray(fit.losses)[-max(1, len(fit.losses) // 10):]
            if tail.dtype.names:  # named losses (the adversarial engine: generator, discriminator, sleep)
                record.update({f"final_{name}_loss": float(np.mean(tail[name])) for name in tail.dtype.names})
            else:
                record["final_loss"] = float(np.mean(tail))
        record["num_warnings"] = len(fit.warnings)
        record["first_warning"] = fit.warnings[0] if fit.warnings else ""
        record.update({k: float(v) for k, v in fit.timings.items()})
        record["metrics_s"] = time.perf_counter() - scoring
        if spec.output.get("datatree", True):
            tree = fit.to_arviz(predictive_draws=spec.output["predictive_draws"], prior_draws=spec.output["prior_draws"])
            # Compressed, every draw kept (a sweep's runs are read back for any statistic).
            write_atomic(folder / "fit.nc", lambda p: write_datatree(tree, p, store_draws="all"))
    record.update({
        "status": "ok",
        "attempts": attempt,
        "error": "",
        "seconds": time.perf_counter() - start,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    })
    write_json(record_path, record)
    return record


def run_guarded(spec: RunSpec, runs_dir: str, attempt: int) -> tuple[str, Any]:
    """``execute_run`` with its exception turned into a message (what workers send back)."""
    try:
        return "ok", execute_run(spec, runs_dir, attempt)
    except Exception as error:  # noqa: BLE001 - every failure is recorded, never raised in the worker
        return "error", (f"{type(error).__name__}: {error}", traceback.format_exc())



def gather(runs: Sequence[RunSpec], out: str | os.PathLike) -> Any:
    """The study's table from the files in ``out``: one row per run in grid order, written to results.csv.

    Finished runs give their record; failed ones their grid values, ``status="failed"``, the number of
    attempts and the last error; runs never started ``status="pending"``.
    """
    import pandas as pd

    out = Path(out)
    rows = []
    for spec in runs:
        record_path = out / "runs" / spec.key / "record.json"
        failure_path = out / "failures" / f"{spec.key}.json"
        if record_path.exists():
            rows.append(json.loads(record_path.read_text(encoding="utf-8")))
            continue
        row = {"run": spec.key, "index": spec.index, "setting": spec.setting, **spec.params, "status": "pending"}
        if failure_path.exists():
            failure = json.loads(failure_path.read_text(encoding="utf-8"))
            row.update(status="failed", attempts=len(failure["attempts"]), error=failure["attempts"][-1]["error"])
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        first = ["run", "index", "setting"] + list(runs[0].params)
        rest = [c for c in table.columns if c not in first and c not in RUN_COLUMNS]
        tail = [c for c in RUN_COLUMNS if c in table.columns]
        table = table[first + rest + tail].sort_values("index").reset_index(drop=True)
    write_atomic(out / "results.csv", lambda p: table.to_csv(p, index=False))
    return table
