"""``run_study``: run a study's unfinished runs on a backend, retry failures, report progress, then
write the table and the page."""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ppzoo.sweep.backends import BACKENDS, LocalBackend, RayBackend, check_ray_address, import_ray
from ppzoo.sweep.files import write_atomic, write_json
from ppzoo.sweep.page import format_seconds, write_page
from ppzoo.sweep.run import gather
from ppzoo.sweep.study import RunSpec, Study, StudyError, expand, load_study

__all__ = ["run_study", "SweepResult", "MARKER"]

MARKER = ".ppzoo-sweep"


@dataclasses.dataclass
class SweepResult:
    """What :func:`run_study` did.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per run in grid order: the grid values, the metrics, status, attempts, error, timings.
    out : pathlib.Path
        The study's folder (``results.csv``, ``report/index.html``, ``runs/<key>/``).
    skipped : int
        Runs already finished before this call (resumed).
    executed : int
        Runs finished by this call.
    failed : int
        Runs that failed every attempt.
    seconds : float
        Wall time of this call.
    backend : str
    """

    table: Any
    out: Path
    skipped: int
    executed: int
    failed: int
    seconds: float
    backend: str

    @property
    def report(self) -> Path:
        return self.out / "report" / "index.html"


def _default_workers(study: Study) -> int:
    cores = os.cpu_count() or 1
    return max(1, int(cores // max(study.num_cpus, 1)))


def _prepare_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise StudyError(
            f"Output folder {str(out)!r} exists and was not written by ppzoo sweep; refusing to write into it. "
            "Choose another --out."
        )


class _Progress:
    def __init__(self, name: str, total: int, skipped: int, capacity: int, stream: Any, every_s: float = 15.0) -> None:
        self.name, self.total, self.done, self.failed = name, total, skipped, 0
        self.capacity, self.stream, self.every_s = capacity, stream, every_s
        self.start = time.monotonic()
        self.durations: list[float] = []
        self.last = 0.0

    def line(self, running: int) -> str:
        remaining = self.total - self.done - self.failed
        if self.durations:
            mean = float(np.mean(self.durations))
            left = format_seconds(math.ceil(remaining / max(self.capacity, 1)) * mean if remaining else 0)
        else:
            left = "?"
        return (
            f"[sweep {self.name}] {self.done}/{self.total} done, {running} running, {self.failed} failed, "
            f"~{left} left ({format_seconds(time.monotonic() - self.start)} elapsed)"
        )

    def show(self, running: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.stream is not None and (force or now - self.last >= self.every_s):
            print(self.line(running), file=self.stream, flush=True)
            self.last = now


def run_study(
    study: Study | str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    backend: Literal["local", "ray"] = "local",
    workers: int | None = None,
    address: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: Any = "stdout",
    write_report: bool = True,
) -> SweepResult:
    """Run every run of a study that has not finished yet, then write the table and the report.

    Parameters
    ----------
    study : Study or path
        A parsed study or the path of its TOML file.
    out : path-like, optional
        The study's folder (default ``sweeps/<study name>``). Rerunning into the same folder resumes.
    backend : {"local", "ray"}
    workers : int, optional
        Runs at once. Default: cores // num_cpus (local); the Ray cluster's CPUs // num_cpus (ray).
    address : str, optional
        Ray cluster address (``host:port``, ``ray://host:port`` or ``"auto"``); none starts a local instance.
    cache_dir : path-like, optional
        JAX's persistent compilation cache for the workers (shared, so a program compiled by one worker is
        loaded by the others); ``None`` leaves it off.
    progress : file, "stdout" or None
        Where the progress lines go (``"stdout"``: ``sys.stdout`` at call time; ``None``: nowhere).
    write_report : bool
        Also write ``report/index.html``.

    Returns
    -------
    SweepResult

    Raises
    ------
    StudyError
        Bad study file, unknown backend, Ray missing or its address not answering, a bad output folder;
        all before any run starts.
    """
    if not isinstance(study, Study):
        study = load_study(study)
    if isinstance(progress, str) and progress == "stdout":
        progress = sys.stdout
    if backend not in BACKENDS:
        raise StudyError(f"Unknown backend {backend!r}. Valid backends: {', '.join(BACKENDS)}.")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise StudyError(f"`workers` must be a positive integer; got {workers!r}.")
    if address and backend != "ray":
        raise StudyError("An address is for the ray backend; add --backend ray or drop --address.")
    out = Path(out) if out is not None else Path("sweeps") / study.name
    runs = expand(study, cache_dir=str(cache_dir) if cache_dir else None)
    _prepare_out(out)
    if backend == "ray":
        import_ray()
        check_ray_address(address)
    runs_dir = out / "runs"
    finished = {r.key for r in runs if (runs_dir / r.key / "record.json").exists()}
    todo = [r for r in runs if r.key not in finished]
    start = time.monotonic()
    runner: Any = None
    failures: dict[str, list[dict]] = {}
    progress_state: _Progress | None = None
    try:
        if todo:
            if backend == "local":
                count = min(workers or _default_workers(study), len(todo))
                runner = LocalBackend(count, str(runs_dir), study.timeout_s)
            else:
                runner = RayBackend(address, workers, str(runs_dir), study)
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("written by ppzoo sweep\n")
        write_atomic(out / "study.toml", lambda p: p.write_text(study.source, encoding="utf-8"))
        runs_dir.mkdir(exist_ok=True)
        progress_state = _Progress(study.name, len(runs), len(finished), runner.capacity if runner else 1, progress)
        if progress is not None:
            where = runner.description if runner else "nothing to run"
            print(f"[sweep {study.name}] {len(runs)} runs, {len(finished)} already finished; {where}; out: {out}",
                  file=progress, flush=True)
        if runner is not None:
            _schedule(todo, runner, study, out, failures, progress_state)
    finally:
        if runner is not None:
            runner.close()
    seconds = time.monotonic() - start
    table = gather(runs, out)
    if write_report:
        write_page(study, table, out, backend=runner.description if runner else backend, seconds=seconds)
    failed = int((table["status"] == "failed").sum()) if len(table) else 0
    if progress is not None and progress_state is not None:
        progress_state.show(0, force=True)
        print(f"[sweep {study.name}] table: {out / 'results.csv'}", file=progress, flush=True)
        if write_report:
            print(f"[sweep {study.name}] report: {(out / 'report' / 'index.html').resolve()}", file=progress, flush=True)
    executed = int((table["run"].isin([r.key for r in todo]) & (table["status"] == "ok")).sum()) if len(table) else 0
    return SweepResult(table, out, len(finished), executed, failed, seconds, runner.description if runner else backend)


def _schedule(todo: list[RunSpec], runner: Any, study: Study, out: Path, failures: dict[str, list[dict]],
              progress: _Progress) -> None:
    pending = collections.deque((spec, 1) for spec in todo)
    failure_dir = out / "failures"
    while pending or runner.in_flight:
        while pending and runner.in_flight < runner.capacity:
            spec, attempt = pending.popleft()
            runner.submit(spec, attempt)
            progress.show(runner.in_flight)
        for outcome in runner.poll(timeout=1.0):
            key = outcome.spec.key
            if outcome.ok:
                progress.done += 1
                progress.durations.append(float(outcome.record.get("seconds", 0.0)))
            else:
                entry = {"attempt": outcome.attempt, "error": outcome.error, "traceback": outcome.detail,
                         "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
                failures.setdefault(key, []).append(entry)
                failure_dir.mkdir(exist_ok=True)
                retry = outcome.attempt <= study.max_retries
                write_json(failure_dir / f"{key}.json", {"run": key, "params": outcome.spec.params,
                                                           "final": not retry, "attempts": failures[key]})
                if retry:
                    pending.append((outcome.spec, outcome.attempt + 1))
                    if progress.stream is not None:
                        print(f"[sweep {study.name}] run {key} ({outcome.spec.params}) failed "
                              f"(attempt {outcome.attempt}): {outcome.error}; retrying", file=progress.stream, flush=True)
                else:
                    progress.failed += 1
                    if progress.stream is not None:
                        print(f"[sweep {study.name}] run {key} ({outcome.spec.params}) failed "
                              f"after {outcome.attempt} attempt(s): {outcome.error}", file=progress.stream, flush=True)
            progress.show(runner.in_flight, force=True)
        progress.show(runner.in_flight)
