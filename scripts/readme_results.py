"""Keep the README's results paragraphs equal to the case studies' results files.

    python scripts/readme_results.py collect reports/ica reports/nonlinear_ica   # copy each run's results.json
    python scripts/readme_results.py write                                        # re-render the README blocks
    python scripts/readme_results.py check                                        # exit 1 if the README differs

``collect`` copies ``<report>/results.json`` (written by the case study's default run) to
``results/<case>.json``; ``write`` fills each ``<!-- results:CASE -->`` block of README.md from
``results/templates/CASE.md`` and ``results/CASE.json`` (see :mod:`ppzoo.results`).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ppzoo.results import read_results, render_readme

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def load(root: Path = ROOT) -> tuple[str, dict[str, str], dict[str, dict]]:
    """The README text, the templates and the results files of the repository at ``root``."""
    folder = root / "results"
    templates = {p.stem: p.read_text() for p in sorted((folder / "templates").glob("*.md"))}
    results = {p.stem: read_results(p) for p in sorted(folder.glob("*.json"))}
    return (root / "README.md").read_text(), templates, results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    collect = sub.add_parser("collect", help="copy report folders' results.json into results/")
    collect.add_argument("reports", nargs="+", type=Path)
    sub.add_parser("write", help="re-render the README's results blocks")
    sub.add_parser("check", help="exit 1 if the README's results blocks differ from the results files")
    args = parser.parse_args(argv)
    if args.command == "collect":
        for report in args.reports:
            payload = read_results(report)
            target = RESULTS / f"{payload['case']}.json"
            shutil.copyfile(report / "results.json" if report.is_dir() else report, target)
            print(f"{target.relative_to(ROOT)} <- {report}")
        return 0
    readme, templates, results = load()
    rendered = render_readme(readme, templates, results)
    if args.command == "check":
        if rendered != readme:
            print("README.md's results blocks differ from results/*.json: run scripts/readme_results.py write",
                  file=sys.stderr)
            return 1
        return 0
    (ROOT / "README.md").write_text(rendered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
