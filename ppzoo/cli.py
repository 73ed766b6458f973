"""The ``ppzoo`` command: ``ppzoo models``, ``ppzoo run CASE [options]``, ``ppzoo sweep STUDY.toml``,
``ppzoo check NAME``.

``ppzoo run NAME`` runs the case study ``ppzoo.case_studies.NAME`` (its options follow the name; see
``ppzoo run NAME --help``) with JAX's persistent compilation cache on, and prints the report's path last.
``ppzoo check NAME`` runs the closed-loop checks of :mod:`ppzoo.checks` (SBC, predictive checks, LOO,
reference posterior) on a zoo model (:data:`CHECK_SETUPS`) or a posteriordb reference and writes its report.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ppzoo.case_study_registry import CASE_STUDIES, available_case_studies, case_study_module, case_study_summary

__all__ = ["main", "CASE_STUDIES", "CHECK_SETUPS", "CHECK_OPTIONS", "CheckSetup", "engine_options", "run_check",
           "check_main"]


def _models(_: argparse.Namespace) -> int:
    import ppzoo

    rows = []
    for name in ppzoo.models.names():
        try:
            entry = ppzoo.models.get(name)
            rows.append((name, entry.description))
        except ImportError:
            continue
    width = max(len(n) for n, _ in rows)
    for name, description in rows:
        print(f"{name:<{width}}  {description}")
    return 0


def case_study_help() -> str:
    """``ppzoo run --help``: the usage and one line per case study."""
    valid = available_case_studies()
    width = max(len(n) for n in valid)
    lines = [
        "usage: ppzoo run CASE [--cache-dir DIR] [case-study options]",
        "",
        "Run a case study and write its report; the report's path is printed last.",
        "Options after the name go to the case study: ppzoo run CASE --help lists them.",
        "",
        "case studies:",
        *(f"  {name:<{width}}  {case_study_summary(name)}" for name in valid),
        "",
        "options:",
        "  --cache-dir DIR  JAX compilation cache folder (default ~/.cache/ppzoo/jax)",
    ]
    return "\n".join(lines)


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    if args.case is None or args.case in ("-h", "--help"):
        asked = args.case is not None or "-h" in rest or "--help" in rest
        print(case_study_help(), file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    valid = available_case_studies()
    if args.case not in valid:
        print(f"ppzoo run: unknown case study {args.case!r}. Valid: {', '.join(valid)} "
              "(ppzoo run --help describes them).", file=sys.stderr)
        return 2
    import ppzoo

    module = case_study_module(args.case)
    if "-h" in rest or "--help" in rest:
        module.main(rest)  # argparse prints the case study's options and exits
        return 0
    cache = ppzoo.enable_compilation_cache(args.cache_dir)
    print(f"JAX compilation cache: {cache}", flush=True)
    import matplotlib

    # A case study keeps every figure of its page open until ppzoo.report embeds and closes it (dozens on the
    # VAE pages), which is intended, so matplotlib's more-than-20-open-figures warning says nothing here.
    matplotlib.rcParams["figure.max_open_warning"] = 0
    try:
        module.main(rest)
    except FileNotFoundError as error:
        print(f"ppzoo run {args.case}: {error}", file=sys.stderr)
        return 1
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from ppzoo.sweep import StudyError, run_study

    cache = None if args.no_cache else (args.cache_dir or os.environ.get("PPZOO_CACHE_DIR")
                                        or os.path.join(os.path.expanduser("~"), ".cache", "ppzoo", "jax"))
    try:
        result = run_study(args.study, out=args.out, backend=args.backend, workers=args.workers,
                           address=args.address, cache_dir=cache)
    except StudyError as error:
        print(f"ppzoo sweep: {error}", file=sys.stderr)
        return 2
    return 1 if result.failed else 0


# --------------------------------------------------------------------------------------------- ppzoo check


#: Engine settings of a check, for every engine: each engine takes the ones its options class has (MCMC
#: engines the warmup and draws, SVI the steps and learning rate). Long enough for the small check data.
CHECK_OPTIONS: Mapping[str, Any] = {"num_warmup": 300, "num_samples": 300, "steps": 2000, "learning_rate": 1e-2}


def engine_options(engine: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The settings in ``options`` that ``engine``'s options class has (its :class:`ppzoo.inference.Options`
    fields), so that one mapping can set up every engine of a check.

    Raises
    ------
    ValueError
        An unknown engine (listing the valid ones), or a setting that no registered engine has (a misspelling
        would otherwise be dropped silently).
    """
    from ppzoo import inference

    record = inference.get(engine)
    known = {name for n in inference.names() for name in inference.get(n).options.valid_names()}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"Check setting(s) {', '.join(map(repr, unknown))} are options of no engine. "
            f"Engine options: {', '.join(sorted(known))}."
        )
    fields = set(record.options.valid_names())
    return {k: v for k, v in options.items() if k in fields}


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckSetup:
    """How ``ppzoo check`` exercises a zoo model: data to fit, SBC's settings, engine options.

    Attributes
    ----------
    data : callable
        ``data(seed) -> (model_kwargs, truth or None)``: the data set the model is fitted to.
    sbc_data : callable
        ``sbc_data(seed) -> model_kwargs`` for SBC: a smaller data set whose observed arrays give only the
        shapes (SBC simulates their values).
    config : mapping
        Model config overrides for the check (small sizes).
    sbc_var_names : tuple of str or None
        Sites to rank (symmetry-invariant ones for models with symmetric modes).
    options : mapping
        Engine settings for the fit and for every SBC simulation, over :data:`CHECK_OPTIONS`; each engine
        takes those its options class has (:func:`engine_options`).
    """

    data: Callable[[int], tuple[dict[str, Any], dict[str, Any] | None]]
    sbc_data: Callable[[int], dict[str, Any]]
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sbc_var_names: tuple[str, ...] | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def options_for(self, engine: str) -> dict[str, Any]:
        """The settings ``engine`` runs with in this check (:data:`CHECK_OPTIONS` updated by ``options``)."""
        return engine_options(engine, {**CHECK_OPTIONS, **self.options})


def _ica_data(seed: int, num_data: int = 200):
    import ppzoo

    # 3 observed dimensions for 2 sources: with as many observations as sources the noise scale is identified
    # only through the sources' non-Gaussianity and the posterior is a funnel (noise -> 0 pins every source)
    # whose neck neither NUTS nor BlackJAX enters in 300 warmup steps. SBC catches that: 200 simulations of
    # the square model give noise-scale ranks piled at 0 (p ~ 1e-28 for both engines), wherever the true noise
    # is below ~0.2. One residual dimension identifies the noise and both engines pass (p = 0.44, 0.20).
    ds = ppzoo.data.load("linear_ica", num_data=num_data, num_sources=2, num_observed=3, seed=seed)
    return dict(ds.data), dict(ds.truth)


#: Zoo model name -> how ``ppzoo check`` exercises it. Models not listed are checked by the predictive
#: checks on their own case study's data only (``ppzoo run``), not by ``ppzoo check``.
CHECK_SETUPS: dict[str, CheckSetup] = {
    "ica": CheckSetup(
        data=_ica_data,
        sbc_data=lambda seed: _ica_data(seed, num_data=50)[0],
        config={"num_sources": 2},
        sbc_var_names=("noise_scale",),
        options={"steps": 1500, "learning_rate": 2e-2},
    ),
}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    from ppzoo import inference

    parser = argparse.ArgumentParser(
        prog="ppzoo check",
        description="Run the closed-loop checks (SBC, predictive checks, LOO, reference posterior) on a zoo model "
        "or a posteriordb reference, and write its report with a 'Closed loop' section.",
    )
    parser.add_argument("name", help="zoo model with a check setup, or a posteriordb reference name")
    parser.add_argument("--engines", default=",".join(inference.names(posterior=True)),
                        help="comma-separated engines (default every registered engine whose draws stand for a "
                             f"posterior: {','.join(inference.names(posterior=True))})")
    parser.add_argument("--num-simulations", type=int, default=100, help="SBC simulations per engine (0: skip SBC)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="report folder (default reports/check-NAME)")
    parser.add_argument("--num-warmup", type=int, default=None, help="warmup per chain (engines with num_warmup)")
    parser.add_argument("--num-samples", type=int, default=None, help="draws per chain (engines with num_samples)")
    parser.add_argument("--steps", type=int, default=None, help="optimisation steps (engines with steps)")
    args = parser.parse_args(argv)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(args.engines) - set(inference.names()))
    if unknown:
        parser.error(f"unknown engine(s) {unknown}; valid: {', '.join(inference.names())}")
    if args.num_simulations < 0:
        parser.error(f"--num-simulations must be >= 0; got {args.num_simulations}")
    return args


def run_check(args: argparse.Namespace) -> Path:
    """Fit, check and report; returns the report folder."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    import ppzoo
    from ppzoo.checks import Check, closed_loop_section, reference_check, sbc_check
    from ppzoo.reference import compare_to_reference, load_reference, reference_names

    references = reference_names()
    if args.name not in CHECK_SETUPS and args.name not in references:
        raise SystemExit(
            f"ppzoo check: no check setup for {args.name!r}. Zoo models: {', '.join(sorted(CHECK_SETUPS))}; "
            f"posteriordb references: {', '.join(references)}."
        )
    out = Path(args.out or f"reports/check-{args.name}")
    checks: list[Any] = []  # SBC and reference checks: this page's own section
    fits: dict[str, Any] = {}
    start = time.perf_counter()
    if args.name in CHECK_SETUPS:
        setup = CHECK_SETUPS[args.name]
        model = ppzoo.models.get(args.name, **setup.config)
        data, truth = setup.data(args.seed)
        sbc_data, var_names, reference = setup.sbc_data(args.seed), setup.sbc_var_names, None
        settings = {**CHECK_OPTIONS, **setup.options}
    else:
        reference = load_reference(args.name)
        model, data, truth = reference.model, reference.data, None
        sbc_data, var_names = data, None
        # Stan's reference posteriors: MCMC at their adapt_delta, optimisation with a full-rank guide.
        settings = {"num_warmup": 500, "num_samples": 500, "target_accept_prob": reference.target_accept_prob,
                    "steps": 5000, "learning_rate": 1e-2, "guide": "auto_mvn"}
    overrides = {"num_warmup": args.num_warmup, "num_samples": args.num_samples, "steps": args.steps}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    options = {engine: engine_options(engine, settings) for engine in args.engines}
    for engine in args.engines:
        print(f"[check {args.name}] fit with {engine} ...", flush=True)
        fit = ppzoo.fit(model, data, engine=engine, seed=args.seed, **options[engine])
        fits[engine] = fit
        # The predictive checks are the report's own (one run per fit, on the fit's one DataTree).
        if reference is not None:
            checks.append(reference_check(compare_to_reference(fit, reference), engine))
        if args.num_simulations:
            print(f"[check {args.name}] SBC with {engine}, {args.num_simulations} simulations ...", flush=True)
            try:
                result = ppzoo.sbc(model, sbc_data, engine=engine, num_simulations=args.num_simulations,
                                   seed=args.seed, var_names=list(var_names) if var_names else None, **options[engine])
            except ValueError as error:  # e.g. an improper prior: nothing to simulate from
                checks.append(Check(f"SBC ({engine})", None, f"not run: {error}"))
            else:
                checks.append(sbc_check(result))
    elapsed = time.perf_counter() - start
    kinds = [k for k, there in (("SBC", args.num_simulations), ("reference posterior", reference is not None)) if there]
    summary = sum(c.passed is True for c in checks), sum(c.passed is False for c in checks), sum(c.passed is None for c in checks)
    section = closed_loop_section(
        checks, title=f"Closed loop, {' and '.join(kinds)}: {summary[0]} passed, {summary[1]} failed, "
                      f"{summary[2]} not applicable"
    )
    folder = ppzoo.report(
        fits, out, truth=truth, title=f"ppzoo check: {args.name}",
        description=f"<p>Closed-loop checks of <code>{html.escape(args.name)}</code> with "
        f"{html.escape(', '.join(args.engines))}; {args.num_simulations} SBC simulations per engine; "
        f"{elapsed / 60:.1f} min.</p>",
        sections=[section] if checks else [],
    )
    # Every check on the page (predictive checks, convergence, engines agree, SBC, reference), as the page's
    # verdict strip has them: read back, not run again.
    strip = pd.read_csv(folder / "verdicts.csv", keep_default_na=False)  # "n/a" is a verdict, not a missing value
    strip = strip[strip["kind"] == "check"]
    verdicts = pd.DataFrame({
        "check": [f"{n} ({e})" if e else n for n, e in zip(strip["name"], strip["engine"])],
        "passed": [{"PASS": True, "FAIL": False, "n/a": None}[v] for v in strip["verdict"]],
        "verdict": list(strip["detail"]),
    })
    verdicts.to_csv(folder / "checks.csv", index=False)
    for row in verdicts.itertuples():
        word = "PASS" if row.passed else ("n/a " if row.passed is None else "FAIL")
        print(f"  {word}  {row.check}: {row.verdict}")
    return folder


def check_main(argv: Sequence[str] | None = None) -> int:
    """``ppzoo check NAME``: prints one verdict line per check and the report's path last."""
    args = _parse(argv)
    folder = run_check(args)
    print(f"Report: {(folder / 'index.html').resolve()}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ppzoo`` command."""
    parser = argparse.ArgumentParser(prog="ppzoo", description="Interpretable generative models as probabilistic programs.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the zoo's models")
    run = sub.add_parser(
        "run", help="run a case study and write its report", add_help=False, allow_abbrev=False,
        description="Run a case study; options after the name go to the case study (ppzoo run ica --help).",
    )  # allow_abbrev=False: a case study's own --cache must not be taken for --cache-dir
    run.add_argument("case", nargs="?", help="case study name")
    run.add_argument("--cache-dir", default=None, help="JAX compilation cache folder (default ~/.cache/ppzoo/jax)")
    sweep = sub.add_parser(
        "sweep", help="run a study (a grid of fits over hyperparameters and seeds) and write its table and report",
        description="Run every unfinished run of a study file (see ppzoo.sweep), locally or on Ray. Rerunning resumes.",
    )
    sweep.add_argument("study", help="study file (TOML), e.g. studies/ica_small.toml")
    sweep.add_argument("--backend", choices=("local", "ray"), default="local", help="local processes (default) or Ray")
    sweep.add_argument("--address", default=None, help="Ray cluster address (host:port, ray://host:port or auto); "
                       "none starts a local Ray instance")
    sweep.add_argument("--workers", type=int, default=None, help="runs at once (default: cores // num_cpus)")
    sweep.add_argument("--out", default=None, help="study folder (default sweeps/<study name>)")
    sweep.add_argument("--cache-dir", default=None, help="JAX compilation cache shared by the workers "
                       "(default ~/.cache/ppzoo/jax)")
    sweep.add_argument("--no-cache", action="store_true", help="do not use JAX's persistent compilation cache")
    sub.add_parser(
        "check", add_help=False, help="closed-loop checks (SBC, PPC, LOO, reference) of a model, into its report",
        description="Options after the name go to the check (ppzoo check ica --help).",
    ).add_argument("name", nargs="?", help="zoo model or posteriordb reference name")
    args, rest = parser.parse_known_args(argv)
    if args.command == "check":
        import ppzoo

        ppzoo.enable_compilation_cache(None)
        try:
            return check_main(([args.name] if args.name else []) + rest)
        except FileNotFoundError as error:
            print(f"ppzoo check: {error}", file=sys.stderr)
            return 1
    if args.command == "sweep":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return _sweep(args)
    if args.command == "models":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return _models(args)
    return _run(args, rest)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
