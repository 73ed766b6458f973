"""Study files: reading and validating a study (TOML) and expanding its grid into runs.

Everything is checked here, before any run starts or anything compiles; a bad key, name or value raises
:class:`StudyError` naming it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import itertools
import json
import os
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from ppzoo.case_study_registry import available_case_studies, case_study_module
from ppzoo.sweep.metrics import DEFAULT_METRICS, METRICS

__all__ = [
    "Study",
    "RunSpec",
    "StudyError",
    "load_study",
    "parse_study",
    "expand",
    "load_function",
    "resolve_metric",
    "case_study_args",
]

_TOP_KEYS = ("study", "data", "model", "engine", "args", "grid", "output")
_STUDY_KEYS = ("name", "model", "case_study", "task", "engine", "metrics", "max_retries", "num_cpus", "num_gpus", "timeout_s")
_OUTPUT_KEYS = ("datatree", "predictive_draws", "prior_draws")
_GRID_SECTIONS = ("data", "model", "engine", "args")
_KINDS = ("model", "case_study", "task")


class StudyError(ValueError):
    """A study file or a sweep setting that cannot run; raised before any run starts."""


def load_function(reference: str, base_dir: str | None, what: str) -> Callable[..., Any]:
    """The function a study names as ``"package.module:function"`` or ``"path/file.py:function"``.

    A file path is relative to ``base_dir`` (the study file's folder); the file is imported once per process.
    ``what`` ("metric", "task") names the reference in the :class:`StudyError` raised when it cannot be
    loaded or is not a function.
    """
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


def resolve_metric(reference: str, base_dir: str | None) -> Callable[[Any, Any], Mapping[str, float]]:
    if reference in METRICS:
        return METRICS[reference]
    if ":" not in reference:
        raise StudyError(
            f"Unknown metric {reference!r}. Built in: {', '.join(METRICS)}; or name your own as "
            "'package.module:function' or 'file.py:function' (a function(fit, dataset) -> dict)."
        )
    return load_function(reference, base_dir, "metric")

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
    import ppzoo.inference

    if study.kind == "task":
        load_function(study.target, study.base_dir, "task")
        return
    if study.kind == "case_study":
        valid = available_case_studies()
        if study.target not in valid:
            raise StudyError(f"Unknown case study {study.target!r} in [study]. Valid: {', '.join(valid)}.")
        module = case_study_module(study.target)
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
    if study.engine not in ppzoo.inference.names():
        raise StudyError(
            f"Unknown engine {study.engine!r} in [study]. Valid engines: {', '.join(ppzoo.inference.names())}."
        )
    for metric in study.metrics:
        resolve_metric(metric, study.base_dir)
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
    options_class = ppzoo.inference.get(study.engine).options
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
            case_study_args(study.target, args, seed, "case-study-check", params)
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


def case_study_args(name: str, args: Mapping[str, Any], seed: int, out: str, params: Mapping) -> Any:
    """The case study's parsed arguments for one run: [args] as --options, plus --seed and --out."""
    import contextlib
    import io

    argv = ["--out", out, "--seed", str(seed)]
    for option, value in args.items():
        flag = "--" + option.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        elif isinstance(value, list):
            argv += [flag, ",".join(map(str, value))]
        else:
            argv += [flag, str(value)]
    module = case_study_module(name)
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


def _check_run(study: Study, model: dict, options: dict, params: dict) -> None:
    import ppzoo.inference
    import ppzoo.models

    where = f" (grid point {params})" if params else ""
    try:
        ppzoo.models.get(study.target, **model)
    except (TypeError, ValueError) as error:
        raise StudyError(f"Model {study.target!r} rejects its config{where}: {error}") from error
    try:
        ppzoo.inference.get(study.engine).options.from_kwargs(study.engine, dict(options))
    except (TypeError, ValueError) as error:
        raise StudyError(f"Engine {study.engine!r} rejects its options{where}: {error}") from error
