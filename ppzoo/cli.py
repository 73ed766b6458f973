"""The ``ppzoo`` command: ``ppzoo models``, ``ppzoo run CASE [options]``, ``ppzoo sweep STUDY.toml``.

``ppzoo run NAME`` runs the case study ``ppzoo.case_studies.NAME`` (its options follow the name; see
``ppzoo run NAME --help``) with JAX's persistent compilation cache on, and prints the report's path last.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ppzoo.case_study_registry import CASE_STUDIES, available_case_studies, case_study_module, case_study_summary

__all__ = ["main", "CASE_STUDIES"]


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ppzoo`` command."""
    parser = argparse.ArgumentParser(prog="ppzoo", description="Interpretable generative models as probabilistic programs.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the zoo's models")
    run = sub.add_parser(
        "run", help="run a case study and write its report", add_help=False,
        description="Run a case study; options after the name go to the case study (ppzoo run ica --help).",
    )
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
        from ppzoo import checks

        ppzoo.enable_compilation_cache(None)
        try:
            return checks.main(([args.name] if args.name else []) + rest)
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
