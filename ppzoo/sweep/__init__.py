"""``ppzoo.sweep``: run a study (a grid of fits over hyperparameters and seeds) locally or on Ray.

A study is a TOML file. It names a zoo model (or a custom task), the data set, the engine and its
options, the metrics, and a grid. Every point of the grid is one run: it loads the data, fits the model
with :func:`ppzoo.fit`, scores the fit, and writes its DataTree (``fit.nc``) and a one-row record
(``record.json``) into ``OUT/runs/<key>/``, each by writing a temporary file and renaming it, so a killed
run leaves nothing half-written. ``<key>`` is a stable hash of the run's settings: running the same study
again skips the finished runs and retries the failed ones. At the end the records are gathered into one
table (``OUT/results.csv``) and one HTML page (``OUT/report/index.html``).

Study file
----------
.. code-block:: toml

    [study]
    name = "ica_small"            # default: the file's stem
    model = "ica"                 # a zoo model (ppzoo models), or task = "file.py:function"
    engine = "svi"                # svi | nuts | blackjax
    metrics = ["recovery"]        # names in ppzoo.sweep.METRICS or "module:function" / "file.py:function"
    max_retries = 1               # a failing or killed run is tried again this many times
    num_cpus = 1                  # per run (Ray's resource request; local: workers = cores // num_cpus)
    num_gpus = 0                  # per run, Ray only
    timeout_s = 600               # optional: a run taking longer is stopped and counted as failed

    [data]                        # ppzoo.data.load(name, **the rest)
    name = "linear_ica"
    num_data = 500

    [model]                       # fixed fields of the model's config
    [engine]                      # fixed engine options
    steps = 1000

    [grid]                        # product of these lists
    seed = [0, 1, 2, 3, 4, 5]     # the fit's seed
    "data.noise_scale" = [0.05, 0.1, 0.2, 0.4]

    [[grid.zip]]                  # lists of equal length, zipped, then crossed with the product
    "engine.steps" = [500, 1000]
    "engine.learning_rate" = [0.02, 0.01]

    [output]
    datatree = true               # write each run's DataTree
    predictive_draws = 50         # posterior-predictive and prior draws kept in it
    prior_draws = 50

Grid keys are ``seed``, ``data.<loader argument>``, ``model.<config field>`` and
``engine.<engine option>``. Every key, name and value is checked before any run starts; an unknown one is
an error that names it and lists the valid ones, and nothing is written.

A case study (``case_study = "ica"`` instead of ``model``) is run as ``ppzoo run NAME`` would run it: its
command-line options go under ``[args]`` (``num_data = 200`` for ``--num-data 200``; grid keys
``args.<option>``), ``seed`` becomes ``--seed``, its report folder is kept as ``runs/<key>/report/`` and the
numeric columns of its ``metrics.csv`` become the record's metrics, one per fit (``svi.mcc_pearson``).

A custom task (``task = "file.py:function"``, the path relative to the study file, or
``"package.module:function"``) is called as ``function(settings, seed=seed)`` with
``settings = {"data": {...}, "model": {...}, "engine": {...}}`` and returns a dict of metrics.

A metric is ``function(fit, dataset) -> dict[str, float]``; built in: ``recovery`` (MCC of the sources,
Amari distance of the mixing, RMSE and 90% coverage of other true sites), ``identifiability`` (MCC and
Amari only), ``disentanglement`` (MIG, DCI, SAP and Gaussian total correlation of a VAE's encoder means
against the data set's true factors) and ``diagnostics`` (largest r_hat, smallest bulk ESS, divergences).
Every record also holds the fit's timings, warnings and final SVI loss.

Backends
--------
``local``: a pool of worker processes started with ``spawn`` (JAX is not fork-safe), sized to the
machine; a worker that dies is replaced and only its run is counted as failed. ``ray``: each run is a Ray
task with ``num_cpus``/``num_gpus``; ``ray.init(address=...)`` connects to a cluster, or starts a local
instance when no address is given. Ray is the optional extra ``pip install "ppzoo[ray]"``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import hashlib
import html
import importlib
import importlib.util
import inspect
import itertools
import json
import math
import os
import socket
import sys
import tempfile
import time
import tomllib
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "check_ray_address",
    "gather",
    "Study",
    "RunSpec",
    "StudyError",
    "SweepResult",
    "METRICS",
    "DEFAULT_METRICS",
    "BACKENDS",
    "load_study",
    "parse_study",
    "expand",
    "run_study",
    "execute_run",
]

BACKENDS = ("local", "ray")
MARKER = ".ppzoo-sweep"
RAY_HINT = 'pip install "ppzoo[ray]"'
#: Seconds to wait for a Ray address to answer before giving up.
ADDRESS_TIMEOUT_S = 3.0

_TOP_KEYS = ("study", "data", "model", "engine", "args", "grid", "output")
_STUDY_KEYS = ("name", "model", "case_study", "task", "engine", "metrics", "max_retries", "num_cpus", "num_gpus", "timeout_s")
_OUTPUT_KEYS = ("datatree", "predictive_draws", "prior_draws")
_GRID_SECTIONS = ("data", "model", "engine", "args")
_KINDS = ("model", "case_study", "task")
#: Record columns that describe how a run went rather than what it found; they differ between backends.
RUN_COLUMNS = ("status", "attempts", "error", "seconds", "compile_s", "run_s", "total_s", "metrics_s", "pid", "host",
               "finished_at")
#: Metric names (or suffixes) for which smaller is better; every other metric is ranked larger-is-better.
LOWER_IS_BETTER = ("amari_distance", "_rmse", "final_loss", "gaussian_tc", "max_r_hat", "divergences", "_s")


class StudyError(ValueError):
    """A study file or a sweep setting that cannot run; raised before any run starts."""


# --------------------------------------------------------------------------------------------------
# Metrics


def _recovery(fit: Any, dataset: Any) -> dict[str, float]:
    from ppzoo.report import recovery_metrics

    return recovery_metrics(fit, dataset.truth)


def _identifiability(fit: Any, dataset: Any) -> dict[str, float]:
    out = _recovery(fit, dataset)
    return {k: v for k, v in out.items() if k in ("mcc_pearson", "mcc_spearman", "amari_distance")}


def _disentanglement(fit: Any, dataset: Any, *, max_points: int = 1000) -> dict[str, float]:
    from ppzoo.metrics import dci, gaussian_total_correlation, mig, sap
    from ppzoo.models.vae import encode

    truth = dataset.truth
    factors = np.asarray(truth["factor_indices"] if "factor_indices" in truth else truth["factors"])
    codes, _ = encode(fit, dataset.data["x"])
    seed = fit.seed or 0
    rows = np.random.default_rng(seed).permutation(len(codes))[:max_points]
    d = dci(codes[rows], factors[rows], seed=seed)
    return {
        "mig": mig(codes, factors),
        "dci_disentanglement": d["disentanglement"],
        "dci_completeness": d["completeness"],
        "dci_informativeness": d["informativeness"],
        "sap": sap(codes[rows], factors[rows], seed=seed),
        "gaussian_tc": gaussian_total_correlation(codes),
    }


def _diagnostics(fit: Any, dataset: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    if "diverging" in fit.sample_stats:
        out["divergences"] = int(np.asarray(fit.sample_stats["diverging"]).sum())
    if fit.num_chains > 1:
        import arviz_stats

        from ppzoo.report import _global_sites

        sites = _global_sites(fit)
        if sites:
            summary = arviz_stats.summary(fit.datatree, var_names=sites, round_to="none")
            out["max_r_hat"] = float(summary["r_hat"].max())
            out["min_ess_bulk"] = float(summary["ess_bulk"].min())
    return out


#: Metric name -> ``function(fit, dataset) -> dict[str, float]``. Add your own, or name one in a study
#: file as ``"package.module:function"`` or ``"file.py:function"`` (relative to the study file).
METRICS: dict[str, Callable[[Any, Any], Mapping[str, float]]] = {
    "recovery": _recovery,
    "identifiability": _identifiability,
    "disentanglement": _disentanglement,
    "diagnostics": _diagnostics,
}

#: Metrics used when a study names none: by zoo model, else ``("recovery",)``.
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "ica": ("identifiability",),
    "vae": ("disentanglement",),
    "beta_vae": ("disentanglement",),
    "beta_tcvae": ("disentanglement",),
    "factor_vae": ("disentanglement",),
    "dip_vae_i": ("disentanglement",),
    "dip_vae_ii": ("disentanglement",),
    "ivae": ("identifiability",),
}


def _load_reference(reference: str, base_dir: str | None, what: str) -> Callable[..., Any]:
    """``"name"`` in METRICS, ``"package.module:function"`` or ``"path/file.py:function"``."""
    module_part, sep, attribute = reference.rpartition(":")
    if not sep or not module_part or not attribute:
        raise StudyError(
            f"{what} {reference!r} is neither a built-in name nor of the form 'package.module:function' or "
            "'file.py:function'."
        )
    if module_part.endswith(".py"):
        path = Path(module_part)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.is_file():
            raise StudyError(f"{what} {reference!r}: file {str(path)!r} does not exist.")
        name = "_ppzoo_sweep_plugin_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
    else:
        try:
            module = importlib.import_module(module_part)
        except ImportError as error:
            raise StudyError(f"{what} {reference!r}: cannot import {module_part!r} ({error}).") from error
    function = getattr(module, attribute, None)
    if not callable(function):
        raise StudyError(f"{what} {reference!r}: {module_part!r} has no function {attribute!r}.")
    return function


def _metric(reference: str, base_dir: str | None) -> Callable[[Any, Any], Mapping[str, float]]:
    if reference in METRICS:
        return METRICS[reference]
    if ":" not in reference:
        raise StudyError(
            f"Unknown metric {reference!r}. Built in: {', '.join(METRICS)}; or name your own as "
            "'package.module:function' or 'file.py:function' (a function(fit, dataset) -> dict)."
        )
    return _load_reference(reference, base_dir, "metric")


# --------------------------------------------------------------------------------------------------
# Study files and grids


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a study: everything a worker needs, and nothing large (the data are loaded there).

    Attributes
    ----------
    key : str
        Stable hash of the settings below (not of the output options); names the run's folder.
    index : int
        Position in the grid (the table's row order).
    params : dict
        The grid's values for this run, by grid key (``"seed"``, ``"data.noise_scale"``, ...).
    kind : {"model", "case_study", "task"}
        A zoo model fit by :func:`ppzoo.fit`, a case study (``ppzoo run NAME``) or a custom task function.
    target : str
        The zoo model's name or the task's reference.
    engine : str
    data, model, engine_options : dict
        ``ppzoo.data.load`` settings (``name`` included), model config fields, engine options.
    seed : int
    metrics : tuple of str
    output : dict
        ``datatree``, ``predictive_draws``, ``prior_draws``.
    base_dir : str or None
        Folder of the study file (file references are relative to it).
    cache_dir : str or None
        JAX persistent compilation cache for the workers (``None``: off).
    args : dict or None
        A case study's command-line options (option name with underscores -> value).
    replicates : tuple of str
        The grid keys that vary with the seed: ``seed`` and any key zipped with it (e.g. the networks'
        ``model.init_seed``). Runs that differ only in these are replicates of one setting.
    """

    key: str
    index: int
    params: dict[str, Any]
    kind: Literal["model", "case_study", "task"]
    target: str
    engine: str
    data: dict[str, Any]
    model: dict[str, Any]
    engine_options: dict[str, Any]
    seed: int
    metrics: tuple[str, ...]
    output: dict[str, Any]
    base_dir: str | None = None
    cache_dir: str | None = None
    args: dict[str, Any] | None = None
    replicates: tuple[str, ...] = ("seed",)

    @property
    def setting(self) -> str:
        """The run's grid values other than the replicate keys, as one label (the report's groups)."""
        parts = [f"{k}={_short(v)}" for k, v in self.params.items() if k not in self.replicates]
        return ", ".join(parts) or "(one setting)"


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclasses.dataclass(frozen=True)
class Study:
    """A parsed, validated study file.

    Attributes
    ----------
    name : str
    kind : {"model", "case_study", "task"}
    target : str
        Zoo model name, case-study name or task reference.
    engine : str
    data, model, engine_options : dict
        Fixed settings (grid values are added per run).
    args : dict
        A case study's fixed command-line options (option name with underscores -> value).
    metrics : tuple of str
    product : dict
        Grid key -> list of values, crossed.
    zips : tuple of dict
        Groups of grid keys -> equal-length lists, each group zipped then crossed with the product.
    max_retries : int
    num_cpus, num_gpus : float
    timeout_s : float or None
    output : dict
    source : str
        The study file's text (copied into the output folder).
    base_dir : str or None
    """

    name: str
    kind: Literal["model", "case_study", "task"]
    target: str
    engine: str
    data: dict[str, Any]
    model: dict[str, Any]
    engine_options: dict[str, Any]
    args: dict[str, Any]
    metrics: tuple[str, ...]
    product: dict[str, list[Any]]
    zips: tuple[dict[str, list[Any]], ...]
    max_retries: int = 1
    num_cpus: float = 1
    num_gpus: float = 0
    timeout_s: float | None = None
    output: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = ""
    base_dir: str | None = None

    @property
    def replicates(self) -> tuple[str, ...]:
        """``seed`` and the grid keys zipped with it: what varies between replicates of one setting."""
        for group in self.zips:
            if "seed" in group:
                return ("seed", *[k for k in group if k != "seed"])
        return ("seed",)

    @property
    def grid_keys(self) -> list[str]:
        keys = list(self.product)
        for group in self.zips:
            keys.extend(group)
        return keys


def _unknown(what: str, keys: Iterable[str], valid: Sequence[str]) -> None:
    unknown = sorted(set(keys) - set(valid))
    if unknown:
        raise StudyError(
            f"Unknown key(s) {', '.join(map(repr, unknown))} in {what}. Valid keys: {', '.join(valid)}."
        )


def load_study(path: str | os.PathLike) -> Study:
    """Read and validate a study file (see the module docstring for its keys).

    Raises
    ------
    StudyError
        The file is missing or not TOML, or a key, name or value is wrong (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"Study file {str(path)!r} does not exist. Examples: studies/ica_small.toml.")
    text = path.read_text(encoding="utf-8")
    return parse_study(text, name=path.stem, base_dir=str(path.resolve().parent))


def parse_study(text: str, *, name: str = "study", base_dir: str | None = None) -> Study:
    """Parse and validate the text of a study file; ``name`` is the default study name."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise StudyError(f"The study file is not valid TOML: {error}.") from error
    _unknown("the study file (top-level tables)", raw, _TOP_KEYS)
    for table in _TOP_KEYS:
        if table in raw and not isinstance(raw[table], dict):
            raise StudyError(f"[{table}] must be a table; got {raw[table]!r}.")
    head = dict(raw.get("study", {}))
    _unknown("[study]", head, _STUDY_KEYS)
    named = [k for k in _KINDS if k in head]
    if len(named) != 1:
        raise StudyError(
            "[study] must name exactly one of `model` (a zoo model, e.g. model = \"ica\"; see `ppzoo models`), "
            "`case_study` (e.g. case_study = \"ica\"; see `ppzoo run --help`) or `task` (a custom function, "
            f"e.g. task = \"tasks.py:run\"); got {', '.join(named) or 'none'}."
        )
    kind = named[0]
    target = head[kind]
    if kind == "case_study":
        misplaced = [t for t in ("data", "model", "engine", "output") if t in raw]
        if misplaced or "engine" in head or "metrics" in head:
            what = ", ".join(f"[{t}]" for t in misplaced) or "`engine`/`metrics` from [study]"
            raise StudyError(
                "A case study takes its settings as command-line options under [args] (e.g. num_data = 200 for "
                f"--num-data 200) and grid keys args.<option>; remove {what}."
            )
    elif "args" in raw:
        raise StudyError(f"[args] holds a case study's command-line options; this study names a {kind}. "
                         "Use [data], [model] and [engine].")
    if not isinstance(target, str):
        raise StudyError(f"[study] {kind} must be a string; got {target!r}.")
    engine = head.get("engine", "svi")
    metrics = head.get("metrics")
    if isinstance(metrics, str):
        metrics = [metrics]
    if kind == "task" and metrics:
        raise StudyError("[study] metrics apply to zoo models; a task returns its own metrics. Remove `metrics`.")
    if metrics is None:
        metrics = list(DEFAULT_METRICS.get(target, ("recovery",))) if kind == "model" else []
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise StudyError(f"[study] metrics must be a list of names; got {metrics!r}.")
    max_retries = head.get("max_retries", 1)
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise StudyError(f"[study] max_retries must be a non-negative integer; got {max_retries!r}.")
    num_cpus, num_gpus = head.get("num_cpus", 1), head.get("num_gpus", 0)
    for label, value, minimum in (("num_cpus", num_cpus, 0), ("num_gpus", num_gpus, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise StudyError(f"[study] {label} must be a non-negative number; got {value!r}.")
    timeout_s = head.get("timeout_s")
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s <= 0):
        raise StudyError(f"[study] timeout_s must be a positive number of seconds; got {timeout_s!r}.")
    output = {"datatree": True, "predictive_draws": 50, "prior_draws": 50}
    given_output = dict(raw.get("output", {}))
    _unknown("[output]", given_output, _OUTPUT_KEYS)
    output.update(given_output)
    if not isinstance(output["datatree"], bool):
        raise StudyError(f"[output] datatree must be true or false; got {output['datatree']!r}.")
    for label in ("predictive_draws", "prior_draws"):
        if isinstance(output[label], bool) or not isinstance(output[label], int) or output[label] < 1:
            raise StudyError(f"[output] {label} must be a positive integer; got {output[label]!r}.")

    grid = dict(raw.get("grid", {}))
    zips_raw = grid.pop("zip", [])
    if isinstance(zips_raw, dict):
        zips_raw = [zips_raw]
    if not isinstance(zips_raw, list) or not all(isinstance(z, dict) for z in zips_raw):
        raise StudyError("[[grid.zip]] must be tables of equal-length lists.")
    product = {k: v for k, v in grid.items()}
    zips = tuple(dict(z) for z in zips_raw)
    study = Study(
        name=str(head.get("name", name)),
        kind=kind,
        target=target,
        engine=engine,
        data=dict(raw.get("data", {})),
        model=dict(raw.get("model", {})),
        engine_options=dict(raw.get("engine", {})),
        args=dict(raw.get("args", {})),
        metrics=tuple(metrics),
        product=product,
        zips=zips,
        max_retries=max_retries,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        timeout_s=timeout_s,
        output=output,
        source=text,
        base_dir=base_dir,
    )
    _check_grid(study)
    _check_names(study)
    return study


def _check_grid(study: Study) -> None:
    if not study.product and not study.zips:
        raise StudyError(
            "The grid is empty: add at least one list under [grid], e.g. seed = [0, 1, 2] "
            "(grid keys: seed, data.<argument>, model.<config field>, engine.<option>)."
        )
    seen: set[str] = set()
    groups = [("[grid]", study.product)] + [(f"[[grid.zip]] #{i + 1}", z) for i, z in enumerate(study.zips)]
    for where, group in groups:
        if where != "[grid]" and not group:
            raise StudyError(f"{where} is empty: give it lists of equal length.")
        lengths = {}
        for key, values in group.items():
            if key in seen:
                raise StudyError(f"Grid key {key!r} appears twice in the grid; give it once.")
            seen.add(key)
            section, dot, field = key.partition(".")
            sections = ("args",) if study.kind == "case_study" else ("data", "model", "engine")
            if key != "seed" and not (dot and section in sections and field):
                valid = ("seed, args.<option>" if study.kind == "case_study"
                         else "seed, data.<argument>, model.<config field>, engine.<option>")
                raise StudyError(
                    f"Unknown grid key {key!r} in {where}. Valid keys: {valid} "
                    "(quote dotted keys: \"engine.steps\" = [...])."
                )
            if not isinstance(values, list):
                raise StudyError(f"Grid key {key!r} in {where} must be a list of values; got {values!r}.")
            if not values:
                raise StudyError(f"Grid key {key!r} in {where} is an empty list: the grid would have no runs.")
            lengths[key] = len(values)
            if key != "seed":
                fixed = {"data": study.data, "model": study.model, "engine": study.engine_options,
                         "args": study.args}[section]
                if field in fixed:
                    raise StudyError(
                        f"{field!r} is set both in [{section}] and in the grid as {key!r}; keep one of them."
                    )
        if where != "[grid]" and len(set(lengths.values())) > 1:
            sizes = ", ".join(f"{k}: {n}" for k, n in lengths.items())
            raise StudyError(f"The lists of {where} must have equal lengths to be zipped; got {sizes}.")
    if "seed" in seen:
        seeds = study.product.get("seed") or next(z["seed"] for z in study.zips if "seed" in z)
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
            raise StudyError(f"Grid key 'seed' must list non-negative integers; got {seeds!r}.")


def _check_names(study: Study) -> None:
    from ppzoo.inference import ENGINES

    if study.kind == "task":
        _load_reference(study.target, study.base_dir, "task")
        return
    if study.kind == "case_study":
        from ppzoo.cli import CASE_STUDIES, _available_case_studies

        valid = _available_case_studies()
        if study.target not in valid:
            raise StudyError(f"Unknown case study {study.target!r} in [study]. Valid: {', '.join(valid)}.")
        module = importlib.import_module(CASE_STUDIES[study.target])
        if not (callable(getattr(module, "parse_args", None)) and callable(getattr(module, "run", None))):
            raise StudyError(f"Case study {study.target!r} has no parse_args(argv) and run(args); it cannot be swept.")
        return
    import ppzoo.data
    import ppzoo.models

    if study.target not in ppzoo.models.REGISTRY:
        raise StudyError(
            f"Unknown model {study.target!r} in [study]. The zoo has: {', '.join(ppzoo.models.names())} "
            "(see `ppzoo models`)."
        )
    if study.engine not in ENGINES:
        raise StudyError(f"Unknown engine {study.engine!r} in [study]. Valid engines: {', '.join(ENGINES)}.")
    for metric in study.metrics:
        _metric(metric, study.base_dir)
    name = study.data.get("name")
    if name is None:
        raise StudyError(
            f"[data] must name the data set: name = one of {', '.join(ppzoo.data.names())} "
            "(the other keys are its settings)."
        )
    if name not in ppzoo.data.LOADERS:
        raise StudyError(f"Unknown data set {name!r} in [data]. Valid names: {', '.join(ppzoo.data.names())}.")
    module, _, function = ppzoo.data.LOADERS[name].partition(":")
    accepted = list(inspect.signature(getattr(importlib.import_module(module), function)).parameters)
    data_keys = [k for k in study.data if k != "name"] + [k[5:] for k in study.grid_keys if k.startswith("data.")]
    _unknown(f"the settings of data set {name!r} ([data] or data.* grid keys)", data_keys, ["name"] + accepted)
    options_class = ENGINES[study.engine][0]
    engine_keys = list(study.engine_options) + [k[7:] for k in study.grid_keys if k.startswith("engine.")]
    _unknown(f"the options of engine {study.engine!r} ([engine] or engine.* grid keys)", engine_keys,
             options_class.valid_names())
    entry = ppzoo.models.get(study.target)
    valid_fields = [f.name for f in dataclasses.fields(entry.config_class)]
    model_keys = list(study.model) + [k[6:] for k in study.grid_keys if k.startswith("model.")]
    _unknown(f"the config of model {study.target!r} ([model] or model.* grid keys)", model_keys, valid_fields)


def _run_key(kind: str, target: str, engine: str, data: Mapping, model: Mapping, options: Mapping,
             metrics: Sequence[str], seed: int, args: Mapping) -> str:
    payload: dict[str, Any] = {"kind": kind, "target": target, "engine": engine, "data": data, "model": model,
                               "engine_options": options, "metrics": list(metrics), "seed": seed}
    if kind == "case_study":
        payload = {"kind": kind, "target": target, "args": args, "seed": seed}
    text = json.dumps(payload, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def expand(study: Study, *, cache_dir: str | None = None) -> list[RunSpec]:
    """The study's runs: the product of ``[grid]`` and of each ``[[grid.zip]]`` group, in file order.

    Each run's settings are validated (model config and engine options are built, nothing is compiled
    and no data are loaded).

    Raises
    ------
    StudyError
        A value the model's config or the engine rejects, or two grid points with identical settings.
    """
    axes: list[list[dict[str, Any]]] = [[{key: v} for v in values] for key, values in study.product.items()]
    for group in study.zips:
        keys = list(group)
        axes.append([dict(zip(keys, values)) for values in zip(*(group[k] for k in keys))])
    runs: list[RunSpec] = []
    seen: dict[str, dict] = {}
    for index, combination in enumerate(itertools.product(*axes)):
        params: dict[str, Any] = {}
        for part in combination:
            params.update(part)
        data, model, options = dict(study.data), dict(study.model), dict(study.engine_options)
        args = dict(study.args)
        for key, value in params.items():
            section, _, field = key.partition(".")
            if section in _GRID_SECTIONS:
                {"data": data, "model": model, "engine": options, "args": args}[section][field] = value
        seed = int(params.get("seed", 0))
        if study.kind == "model":
            _check_run(study, model, options, params)
        elif study.kind == "case_study":
            _case_study_args(study.target, args, seed, "case-study-check", params)
        key = _run_key(study.kind, study.target, study.engine, data, model, options, study.metrics, seed, args)
        if key in seen:
            raise StudyError(f"Grid points {seen[key]} and {params} have identical settings; remove the duplicate.")
        seen[key] = params
        runs.append(RunSpec(
            key=key, index=index, params=params, kind=study.kind, target=study.target, engine=study.engine,
            data=data, model=model, engine_options=options, args=args, seed=seed, metrics=study.metrics,
            output=dict(study.output), base_dir=study.base_dir, cache_dir=cache_dir,
            replicates=study.replicates,
        ))
    return runs


def _case_study_args(name: str, args: Mapping[str, Any], seed: int, out: str, params: Mapping) -> Any:
    """The case study's parsed arguments for one run: [args] as --options, plus --seed and --out."""
    import contextlib
    import io

    from ppzoo.cli import CASE_STUDIES

    argv = ["--out", out, "--seed", str(seed)]
    for option, value in args.items():
        flag = "--" + option.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        elif isinstance(value, list):
            argv += [flag, ",".join(map(str, value))]
        else:
            argv += [flag, str(value)]
    module = importlib.import_module(CASE_STUDIES[name])
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            parsed = module.parse_args(argv)
        # argparse accepts abbreviations (--num-dat for --num-data); a study file names options in full.
        valid = sorted(k for k in vars(parsed) if k not in ("out", "seed"))
        _unknown(f"the options of case study {name!r} ([args] or args.* grid keys)", args, valid)
        return parsed
    except SystemExit as error:
        text = errors.getvalue().strip()
        message = text.splitlines()[-1] if text else str(error)
        where = f" (grid point {dict(params)})" if params else ""
        raise StudyError(
            f"Case study {name!r} rejects its options{where}: {message}. See `ppzoo run {name} --help`; [args] "
            "keys are its options with underscores (num_data = 200 for --num-data 200)."
        ) from None


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


def _check_run(study: Study, model: dict, options: dict, params: dict) -> None:
    import ppzoo.models
    from ppzoo.inference import ENGINES

    where = f" (grid point {params})" if params else ""
    try:
        ppzoo.models.get(study.target, **model)
    except (TypeError, ValueError) as error:
        raise StudyError(f"Model {study.target!r} rejects its config{where}: {error}") from error
    try:
        ENGINES[study.engine][0].from_kwargs(study.engine, dict(options))
    except (TypeError, ValueError) as error:
        raise StudyError(f"Engine {study.engine!r} rejects its options{where}: {error}") from error


# --------------------------------------------------------------------------------------------------
# One run (in a worker process)

_DATA_CACHE: collections.OrderedDict[str, Any] = collections.OrderedDict()
_CACHE_ON: set[str] = set()


def _dataset(settings: Mapping[str, Any]) -> Any:
    import ppzoo.data

    key = json.dumps(settings, sort_keys=True, default=repr)
    if key not in _DATA_CACHE:
        args = {k: v for k, v in settings.items() if k != "name"}
        _DATA_CACHE[key] = ppzoo.data.load(settings["name"], **args)
        while len(_DATA_CACHE) > 2:
            _DATA_CACHE.popitem(last=False)
    return _DATA_CACHE[key]


_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary file in the same folder, then rename: readers see all of it or nothing."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes the file private; give it the usual mode
        os.replace(temporary, path)
    except BaseException:
        with _suppress():
            os.unlink(temporary)
        raise


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], Exception)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)


def _write_json(path: Path, payload: Any) -> None:
    _write_atomic(path, lambda p: p.write_text(json.dumps(payload, indent=1, default=_json_default), encoding="utf-8"))


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
    _write_json(folder / "settings.json", dataclasses.asdict(spec))
    start = time.perf_counter()
    record: dict[str, Any] = {"run": spec.key, "index": spec.index, "setting": spec.setting, **spec.params}
    if spec.kind == "task":
        task = _load_reference(spec.target, spec.base_dir, "task")
        settings = {"data": dict(spec.data), "model": dict(spec.model), "engine": dict(spec.engine_options)}
        result = task(settings, seed=spec.seed)
        if not isinstance(result, Mapping):
            raise TypeError(f"task {spec.target!r} must return a dict of metrics; got {type(result).__name__}.")
        record.update(_scalar_metrics(result, f"task {spec.target!r}"))
    elif spec.kind == "case_study":
        import shutil

        import ppzoo
        from ppzoo.cli import CASE_STUDIES

        if spec.cache_dir and spec.cache_dir not in _CACHE_ON:
            ppzoo.enable_compilation_cache(spec.cache_dir)
            _CACHE_ON.add(spec.cache_dir)
        staging = folder / ".report"
        shutil.rmtree(staging, ignore_errors=True)
        args = _case_study_args(spec.target, spec.args or {}, spec.seed, str(staging), spec.params)
        report = Path(importlib.import_module(CASE_STUDIES[spec.target]).run(args))
        record.update(_case_study_metrics(report))
        final = folder / "report"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(report, final)  # the case study's report, whole, next to the record
    else:
        import ppzoo
        from ppzoo.arviz import write_datatree

        if spec.cache_dir and spec.cache_dir not in _CACHE_ON:
            ppzoo.enable_compilation_cache(spec.cache_dir)
            _CACHE_ON.add(spec.cache_dir)
        dataset = _dataset(spec.data)
        model = ppzoo.models.get(spec.target, **spec.model)
        fit = ppzoo.fit(model, dataset.data, engine=spec.engine, seed=spec.seed, **spec.engine_options)
        scoring = time.perf_counter()
        for reference in spec.metrics:
            values = _metric(reference, spec.base_dir)(fit, dataset)
            values = _scalar_metrics(values, f"metric {reference!r}")
            clash = sorted(set(values) & set(record))
            if clash:
                raise ValueError(f"metric {reference!r} returned {clash}, which another column already has.")
            record.update(values)
        if fit.losses is not None and len(fit.losses):
            tail = np.asarray(fit.losses)[-max(1, len(fit.losses) // 10):]
            record["final_loss"] = float(np.mean(tail))
        record["num_warnings"] = len(fit.warnings)
        record["first_warning"] = fit.warnings[0] if fit.warnings else ""
        record.update({k: float(v) for k, v in fit.timings.items()})
        record["metrics_s"] = time.perf_counter() - scoring
        if spec.output.get("datatree", True):
            tree = fit.to_arviz(predictive_draws=spec.output["predictive_draws"], prior_draws=spec.output["prior_draws"])
            # Compressed, every draw kept (a sweep's runs are read back for any statistic).
            _write_atomic(folder / "fit.nc", lambda p: write_datatree(tree, p, store_draws="all"))
    record.update({
        "status": "ok",
        "attempts": attempt,
        "error": "",
        "seconds": time.perf_counter() - start,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    })
    _write_json(record_path, record)
    return record


def _guarded(spec: RunSpec, runs_dir: str, attempt: int) -> tuple[str, Any]:
    """``execute_run`` with its exception turned into a message (what workers send back)."""
    try:
        return "ok", execute_run(spec, runs_dir, attempt)
    except Exception as error:  # noqa: BLE001 - every failure is recorded, never raised in the worker
        return "error", (f"{type(error).__name__}: {error}", traceback.format_exc())


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
        outcome = _guarded(spec, runs_dir, attempt)
        try:
            connection.send(outcome)
        except (BrokenPipeError, OSError):
            return


# --------------------------------------------------------------------------------------------------
# Backends


@dataclasses.dataclass
class _Outcome:
    spec: RunSpec
    attempt: int
    ok: bool
    record: dict[str, Any] | None = None
    error: str = ""
    detail: str = ""


class _LocalBackend:
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

    def poll(self, timeout: float) -> list[_Outcome]:
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
                outcomes.append(_Outcome(spec, attempt, False, error=f"worker process {process.pid} died ({how})"))
                self._retire(worker, kill=True)
                continue
            status, payload = message
            if status == "ok":
                outcomes.append(_Outcome(spec, attempt, True, record=payload))
            else:
                outcomes.append(_Outcome(spec, attempt, False, error=payload[0], detail=payload[1]))
            self.idle.append(worker)
        if self.timeout_s is not None:
            now = time.monotonic()
            for worker, (spec, attempt, started) in list(self.busy.items()):
                if now - started > self.timeout_s:
                    del self.busy[worker]
                    self._retire(worker, kill=True)
                    outcomes.append(_Outcome(spec, attempt, False, error=f"timed out after {self.timeout_s:g} s (worker stopped)"))
        return outcomes

    def close(self) -> None:
        for worker in self.idle:
            with _suppress():
                worker[1].send(None)
        for worker in self.idle:
            self._retire(worker, kill=False)
        for worker in list(self.busy):
            self._retire(worker, kill=True)
        self.idle, self.busy = [], {}


def _import_ray() -> Any:
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
    return _guarded(spec, runs_dir, attempt)


class _RayBackend:
    """Each run a Ray task (``num_cpus``, ``num_gpus``); Ray's own retries are off, ours are recorded."""

    def __init__(self, address: str | None, workers: int | None, runs_dir: str, study: Study) -> None:
        ray = _import_ray()
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

    def poll(self, timeout: float) -> list[_Outcome]:
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
                outcomes.append(_Outcome(spec, attempt, False, error=f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"))
                continue
            if status == "ok":
                outcomes.append(_Outcome(spec, attempt, True, record=payload))
            else:
                outcomes.append(_Outcome(spec, attempt, False, error=payload[0], detail=payload[1]))
        if self.timeout_s is not None:
            now = time.monotonic()
            for ref, (spec, attempt, started) in list(self.busy.items()):
                if now - started > self.timeout_s:
                    del self.busy[ref]
                    with _suppress():
                        ray.cancel(ref, force=True)
                    outcomes.append(_Outcome(spec, attempt, False, error=f"timed out after {self.timeout_s:g} s (task cancelled)"))
        return outcomes

    def close(self) -> None:
        for ref in list(self.busy):
            with _suppress():
                self.ray.cancel(ref, force=True)
        self.busy = {}
        if self.started:
            self.ray.shutdown()


# --------------------------------------------------------------------------------------------------
# The sweep


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


def _fmt_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


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
            left = _fmt_seconds(math.ceil(remaining / max(self.capacity, 1)) * mean if remaining else 0)
        else:
            left = "?"
        return (
            f"[sweep {self.name}] {self.done}/{self.total} done, {running} running, {self.failed} failed, "
            f"~{left} left ({_fmt_seconds(time.monotonic() - self.start)} elapsed)"
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
        _import_ray()
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
                runner = _LocalBackend(count, str(runs_dir), study.timeout_s)
            else:
                runner = _RayBackend(address, workers, str(runs_dir), study)
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("written by ppzoo sweep\n")
        _write_atomic(out / "study.toml", lambda p: p.write_text(study.source, encoding="utf-8"))
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
        _write_report(study, table, out, backend=runner.description if runner else backend, seconds=seconds)
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
                _write_json(failure_dir / f"{key}.json", {"run": key, "params": outcome.spec.params,
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
    _write_atomic(out / "results.csv", lambda p: table.to_csv(p, index=False))
    return table


# --------------------------------------------------------------------------------------------------
# Report


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


def _write_report(study: Study, table: Any, out: Path, *, backend: str, seconds: float) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import pandas as pd

    from ppzoo.report import Section, _page

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
        "wall time of the last call": _fmt_seconds(seconds),
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
    page = _page(f"ppzoo sweep: {study.name}", f"<p>Written {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC}.</p>", blocks)
    path = folder / "index.html"
    _write_atomic(path, lambda p: p.write_text(page, encoding="utf-8"))
    return path
