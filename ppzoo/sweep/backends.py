"""Where a study's runs execute: a pool of local worker processes, or Ray tasks."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import socket
import time
import warnings
from typing import Any

from ppzoo.sweep.run import run_guarded
from ppzoo.sweep.study import RunSpec, Study, StudyError

__all__ = ["BACKENDS", "Outcome", "LocalBackend", "RayBackend", "check_ray_address", "import_ray"]

BACKENDS = ("local", "ray")
RAY_HINT = 'pip install "ppzoo[ray]"'
#: Seconds to wait for a Ray address to answer before giving up.
ADDRESS_TIMEOUT_S = 3.0


def _worker_main(connection: Any) -> None:
    """Loop of a local worker process: receive a run, do it, send the outcome; stop on ``None``."""
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        spec, runs_dir, attempt = message
        outcome = run_guarded(spec, runs_dir, attempt)
        try:
            connection.send(outcome)
        except (BrokenPipeError, OSError):
            return


@dataclasses.dataclass
class Outcome:
    spec: RunSpec
    attempt: int
    ok: bool
    record: dict[str, Any] | None = None
    error: str = ""
    detail: str = ""


class LocalBackend:
    """Worker processes started with ``spawn``, one run each at a time; a dead worker is replaced."""

    def __init__(self, workers: int, runs_dir: str, timeout_s: float | None) -> None:
        import multiprocessing

        self.context = multiprocessing.get_context("spawn")
        self.runs_dir = runs_dir
        self.timeout_s = timeout_s
        self.capacity = workers
        self.idle: list[Any] = []
        self.busy: dict[Any, tuple[RunSpec, int, float]] = {}
        self.description = f"local, {workers} worker process(es) (spawn)"

    def _start(self) -> Any:
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker_main, args=(child,), daemon=True, name="ppzoo-sweep-worker")
        process.start()
        child.close()
        return (process, parent)

    @property
    def in_flight(self) -> int:
        return len(self.busy)

    def submit(self, spec: RunSpec, attempt: int) -> None:
        worker = self.idle.pop() if self.idle else self._start()
        worker[1].send((spec, self.runs_dir, attempt))
        self.busy[worker] = (spec, attempt, time.monotonic())

    def _retire(self, worker: Any, *, kill: bool) -> None:
        process, connection = worker
        if kill and process.is_alive():
            process.kill()
        process.join(timeout=5)
        connection.close()

    def poll(self, timeout: float) -> list[Outcome]:
        from multiprocessing.connection import wait

        if not self.busy:
            return []
        waitables = {}
        for worker in self.busy:
            waitables[worker[1]] = worker
            waitables[worker[0].sentinel] = worker
        ready = wait(list(waitables), timeout=timeout)
        outcomes, handled = [], set()
        for item in ready:
            worker = waitables[item]
            if worker in handled:
                continue
            handled.add(worker)
            process, connection = worker
            spec, attempt, _ = self.busy.pop(worker)
            message = None
            try:
                if connection.poll():
                    message = connection.recv()
            except (EOFError, OSError):
                message = None
            if message is None:
                process.join(timeout=5)
                code = process.exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                outcomes.append(Outcome(spec, attempt, False, error=f"worker process {process.pid} died ({how})"))
                self._retire(worker, kill=True)
                continue
            status, payload = message
            if status == "ok":
                outcomes.append(Outcome(spec, attempt, True, record=payload))
            else:
                outcomes.append(Outcome(spec, attempt, False, error=payload[0], detail=payload[1]))
            self.idle.append(worker)
        if self.timeout_s is not None:
            now = time.monotonic()
            for worker, (spec, attempt, started) in list(self.busy.items()):
                if now - started > self.timeout_s:
                    del self.busy[worker]
                    self._retire(worker, kill=True)
                    outcomes.append(Outcome(spec, attempt, False, error=f"timed out after {self.timeout_s:g} s (worker stopped)"))
        return outcomes

    def close(self) -> None:
        for worker in self.idle:
            with contextlib.suppress(Exception):
                worker[1].send(None)
        for worker in self.idle:
            self._retire(worker, kill=False)
        for worker in list(self.busy):
            self._retire(worker, kill=True)
        self.idle, self.busy = [], {}


def import_ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise StudyError(f"The ray backend needs Ray, an optional extra: {RAY_HINT}.") from error
    return ray


def check_ray_address(address: str | None, timeout: float = ADDRESS_TIMEOUT_S) -> None:
    """Raise :class:`StudyError` if a ``host:port`` (or ``ray://host:port``) Ray address does not answer."""
    if address in (None, "", "auto", "local"):
        return
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise StudyError(
            f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001), "
            "'auto', or empty for a new local instance."
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as error:
        raise StudyError(
            f"Ray address {address!r} does not answer ({error}; waited {timeout:g} s). Start the cluster with "
            "`ray start --head`, check the address, or leave --address out to start a local Ray instance."
        ) from error


def _ray_run(spec: RunSpec, runs_dir: str, attempt: int) -> tuple[str, Any]:
    return run_guarded(spec, runs_dir, attempt)


class RayBackend:
    """Each run a Ray task (``num_cpus``, ``num_gpus``); Ray's own retries are off, ours are recorded."""

    def __init__(self, address: str | None, workers: int | None, runs_dir: str, study: Study) -> None:
        ray = import_ray()
        check_ray_address(address)
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            if address:
                kwargs["address"] = address
            elif workers is not None:
                kwargs["num_cpus"] = int(math.ceil(workers * max(study.num_cpus, 1)))
            try:
                with warnings.catch_warnings():
                    # Ray starts its processes by fork + exec, which is safe; Python warns because JAX has threads.
                    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
                    ray.init(**kwargs)
            except (ConnectionError, RuntimeError) as error:
                raise StudyError(f"Could not connect to Ray at {address!r}: {error}") from error
        resources = ray.cluster_resources()
        cpus = resources.get("CPU", 1)
        per_run = study.num_cpus if study.num_cpus else 1
        self.capacity = workers or max(1, int(cpus // per_run))
        options: dict[str, Any] = {"num_cpus": study.num_cpus, "max_retries": 0}
        if study.num_gpus:
            options["num_gpus"] = study.num_gpus
        self.remote = ray.remote(_ray_run).options(**options)
        self.runs_dir = runs_dir
        self.timeout_s = study.timeout_s
        self.busy: dict[Any, tuple[RunSpec, int, float]] = {}
        self.description = f"ray ({address or 'new local instance'}, {cpus:g} CPUs, up to {self.capacity} runs at once)"

    @property
    def in_flight(self) -> int:
        return len(self.busy)

    def submit(self, spec: RunSpec, attempt: int) -> None:
        self.busy[self.remote.remote(spec, self.runs_dir, attempt)] = (spec, attempt, time.monotonic())

    def poll(self, timeout: float) -> list[Outcome]:
        ray = self.ray
        if not self.busy:
            return []
        ready, _ = ray.wait(list(self.busy), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(list(self.busy), num_returns=len(self.busy), timeout=0)
        outcomes = []
        for ref in ready:
            spec, attempt, _ = self.busy.pop(ref)
            try:
                status, payload = ray.get(ref)
            except Exception as error:  # noqa: BLE001 - a crashed worker or a lost node
                outcomes.append(Outcome(spec, attempt, False, error=f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"))
                continue
            if status == "ok":
                outcomes.append(Outcome(spec, attempt, True, record=payload))
            else:
                outcomes.append(Outcome(spec, attempt, False, error=payload[0], detail=payload[1]))
        if self.timeout_s is not None:
            now = time.monotonic()
            for ref, (spec, attempt, started) in list(self.busy.items()):
                if now - started > self.timeout_s:
                    del self.busy[ref]
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True)
                    outcomes.append(Outcome(spec, attempt, False, error=f"timed out after {self.timeout_s:g} s (task cancelled)"))
        return outcomes

    def close(self) -> None:
        for ref in list(self.busy):
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self.busy = {}
        if self.started:
            self.ray.shutdown()

