"""The command-line entry every case study shares: parse the arguments, run, print the report's path last.

Each case study defines ``parse_args(argv) -> argparse.Namespace`` and ``run(args) -> Path`` (the report
folder) and gets its ``main`` from :func:`main_for`::

    main = main_for(parse_args, run)

    if __name__ == "__main__":
        main()

``ppzoo run NAME`` calls that ``main`` with the arguments after the name.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main_for", "parse_seeds"]


def main_for(
    parse_args: Callable[[Sequence[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], Path],
) -> Callable[[Sequence[str] | None], Path]:
    """A case study's ``main(argv=None) -> Path`` from its ``parse_args`` and ``run``.

    The returned ``main`` parses ``argv`` (``None``: the process's arguments), runs the study, prints
    ``Report: <absolute path of index.html>`` as the last line and returns the report folder.
    """

    def main(argv: Sequence[str] | None = None) -> Path:
        """Run the case study from the command line; prints the report's path last."""
        out = run(parse_args(argv))
        print(f"Report: {(Path(out) / 'index.html').resolve()}", flush=True)
        return out

    # Shown as the case study's own function (help(), tracebacks, documentation).
    main.__module__ = getattr(run, "__module__", main.__module__)
    return main


def parse_seeds(text: str) -> list[int]:
    """``--seeds`` as an argparse ``type``: comma-separated, distinct, non-negative integers (``"0,1,2"``)."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds must be comma-separated integers, e.g. 0,1,2; got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"--seeds must be distinct non-negative integers, e.g. 0,1,2; got {text!r}")
    return seeds
