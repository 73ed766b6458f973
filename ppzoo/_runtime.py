"""Process-level set-up that must happen before JAX starts: host devices and the compilation cache.

On CPU, MCMC chains run fastest in parallel across XLA host devices (measured on a 2-vCPU machine for
a 132-parameter hierarchical logistic regression, 4 chains: 1.6-2.7x more ESS per second than sequential
chains, while vectorized chains ran 3-4x slower; ``benchmarks/nuts_speed.py`` times ppzoo's engines). XLA reads the device count only when its CPU backend starts, so ppzoo sets it when it is
imported, unless JAX has already started a backend or the user set the flag themselves.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "configure_host_devices",
    "enable_compilation_cache",
    "CompileTimer",
    "num_chain_devices",
]

#: Virtual CPU devices created when ppzoo is imported: enough for 4 chains in parallel on any machine.
DEFAULT_HOST_DEVICES = max(4, os.cpu_count() or 1)
_FLAG = "--xla_force_host_platform_device_count"


def _backends_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(getattr(xla_bridge, "_backends", {}))
    except Exception:  # pragma: no cover - private API moved; assume the worst
        return True


def configure_host_devices(count: int = DEFAULT_HOST_DEVICES) -> bool:
    """Ask XLA for ``count`` CPU devices so that MCMC chains can run in parallel.

    Returns ``True`` if the setting took effect (or was already there), ``False`` if JAX had already
    started its backends, in which case chains fall back to running one after another with one compile.
    Respects a device count the user already put into ``XLA_FLAGS``.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if _FLAG in flags:
        return True
    if _backends_started():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}={count}".strip()
    return True


def num_chain_devices() -> int:
    """Number of devices available for running chains in parallel (CPU host devices or accelerators)."""
    import jax

    return jax.local_device_count()


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path:
    """Turn on JAX's persistent compilation cache so a second run of the same study skips compiling.

    Every compiled program is cached, however quick its compile (small models are all compile). Calling it
    again with another folder moves the cache there (JAX itself keeps the first folder it opened). The folder
    is not size-bounded: JAX's bound (``jax_compilation_cache_max_size``) rescans the whole folder on every
    write, which made a test run with ~10,000 cached programs 2.3x slower.

    Captured arrays under 1 KB stay embedded in the programs (JAX's ``jax_embedded_constants_max_bytes``), so
    NUTS on a new small data set of the same shapes compiles again. Hoisting them into arguments (the setting
    at 0) made that a cache hit (5.5 s -> 0.8 s) but changed the rounding of trained networks (nonlinear_ica's
    MCC 0.9468 -> 0.9473), so the case studies' recorded results would no longer reproduce: not done.

    Parameters
    ----------
    path : path-like, optional
        Cache folder. Defaults to ``$PPZOO_CACHE_DIR`` or ``~/.cache/ppzoo/jax``.

    Returns
    -------
    pathlib.Path
        The cache folder in use.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    folder = Path(path or os.environ.get("PPZOO_CACHE_DIR") or Path.home() / ".cache" / "ppzoo" / "jax")
    folder.mkdir(parents=True, exist_ok=True)
    if jax.config.jax_compilation_cache_dir not in (None, str(folder)):
        compilation_cache.reset_cache()  # JAX opens its cache once; forget the old folder
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


class CompileTimer:
    """Adds up the seconds JAX spends tracing, lowering and compiling while it is active.

    JAX reports these durations through :mod:`jax.monitoring`; its backend-compile event spans the
    persistent-cache lookup, so a hit reports only the short retrieval and a warm cache shows up as a smaller
    compile time. ``count`` is the number of programs compiled or read back from the persistent cache.
    """

    _EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0
        self._active = False

    def _listener(self, event: str, duration: float, **_: object) -> None:
        if self._active and event in self._EVENTS:
            self.seconds += duration
            self.count += event.endswith("backend_compile_duration")

    @contextlib.contextmanager
    def measure(self) -> Iterator["CompileTimer"]:
        from jax import monitoring

        monitoring.register_event_duration_secs_listener(self._listener)
        self._active = True
        try:
            yield self
        finally:
            self._active = False
            with contextlib.suppress(Exception):
                monitoring.unregister_event_duration_listener(self._listener)


@contextlib.contextmanager
def stopwatch() -> Iterator[dict]:
    """Wall-clock seconds of a block, written into the yielded dict as ``"seconds"``."""
    out: dict = {}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["seconds"] = time.perf_counter() - start


def warn(message: str, category: type[Warning] = UserWarning, stacklevel: int = 3) -> None:
    warnings.warn(message, category, stacklevel=stacklevel)
