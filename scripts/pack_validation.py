"""Pack the raw validation material into ppzoo's package data (``ppzoo/data/validation/``).

ppzoo ships its real data sets and reference posteriors inside the package, so that a clone or an installed
wheel finds them without any folder beside the repository. This script makes that packed copy from the raw
material (the layout that posteriordb, cdt and the CausalVAE recipe were collected in) and is the only
way the packed files are meant to change::

    python scripts/pack_validation.py /path/to/raw/validation            # writes ppzoo/data/validation
    python scripts/pack_validation.py /path/to/raw/validation --out DIR   # writes DIR instead

The raw folder holds ``posteriordb/<posterior>/{data.json, meta.json, model.md, reference_draws.json,
reference_summary.csv}`` and ``posteriordb/README.md``, ``sachs/{README.md, *.csv}`` and
``pendulum/RECIPE.md``. What changes on the way (everything else is copied byte for byte):

* ``data.json`` -> ``data.json.gz``: gzip (level 9, no time stamp or file name); it decompresses to the
  same bytes.
* ``reference_draws.json`` (a list of chains, each mapping a Stan scalar name such as ``theta[1]`` to its
  draws) -> ``reference_draws.npz``: ``draws``, float32 of shape ``(chain, draw, parameter)``, and
  ``parameter_names``, the Stan names in the JSON's order. float32 keeps 7 significant digits, far below
  the Monte Carlo error of 10,000 draws; ``ppzoo.reference.load_reference`` casts back to float64.
* ``posteriordb/README.md`` gets a note at the top that names these two changes.

The output is deterministic (fixed zip and gzip time stamps), so running the script again on the same
input leaves ``git status`` clean. The subfolders ``posteriordb/``, ``sachs/`` and ``pendulum/`` of the
output are replaced; the output's ``README.md`` (sources and licences, maintained by hand) is left alone.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["pack", "pack_case", "write_npz", "DRAWS_FILE", "DATA_FILE", "CASE_FILES", "DEFAULT_OUT"]

#: Where the packed data live in the repository.
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "ppzoo" / "data" / "validation"
#: Packed names of the two converted files of a posteriordb case.
DRAWS_FILE = "reference_draws.npz"
DATA_FILE = "data.json.gz"
#: Files of a raw posteriordb case that are copied unchanged.
CASE_FILES = ("meta.json", "model.md", "reference_summary.csv")
_RAW_CASE_FILES = ("data.json", "reference_draws.json", *CASE_FILES)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

_POSTERIORDB_NOTE = f"""\
> **Packed copy.** In ppzoo's package data each case folder stores `data.json` gzip-compressed as
> `{DATA_FILE}` (the same bytes once decompressed) and `reference_draws.json` as `{DRAWS_FILE}`:
> the array `draws`, float32 of shape (chain, draw, parameter) = (10, 1000, P), with the Stan scalar
> names in `parameter_names`, in the JSON's order. Made by `scripts/pack_validation.py`; sources and
> licences in `../README.md`. The rest of this file is the README of the raw material, unchanged.

"""


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as a compressed ``.npz`` whose bytes depend only on the arrays.

    ``numpy.savez_compressed`` stamps each member with the current time; this writer uses a fixed time
    stamp so that packing the same input twice gives identical files. ``numpy.load`` reads the result.

    Parameters
    ----------
    path : pathlib.Path
        File to write.
    arrays : dict[str, numpy.ndarray]
        Member name (without ``.npy``) -> array; object arrays are refused (no pickles).
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue(), compresslevel=9)


def _draws_array(chains: object, source: Path) -> tuple[np.ndarray, np.ndarray]:
    """posteriordb's list of chains -> (float32 draws (chain, draw, parameter), parameter names)."""
    if not (isinstance(chains, list) and chains and all(isinstance(c, dict) for c in chains)):
        raise ValueError(
            f"{source} must hold a non-empty list of chains, each an object mapping a Stan scalar name to its "
            "draws (posteriordb's reference_draws format); got something else."
        )
    names = list(chains[0])
    for index, chain in enumerate(chains):
        if list(chain) != names:
            raise ValueError(
                f"{source}: chain {index} names the parameters {list(chain)[:4]}..., chain 0 {names[:4]}...; "
                "every chain must list the same parameters in the same order."
            )
    lengths = {len(values) if isinstance(values, list) else -1 for chain in chains for values in chain.values()}
    if len(lengths) != 1 or lengths == {-1}:
        raise ValueError(
            f"{source}: every parameter of every chain must be a list with the same number of draws; "
            f"found lengths {sorted(lengths)} (-1: not a list)."
        )
    draws = np.array([[chain[name] for name in names] for chain in chains], dtype=np.float64)
    with np.errstate(over="ignore"):  # overflow is reported below, naming the file
        packed = np.moveaxis(draws, 1, 2).astype(np.float32)  # (chain, parameter, draw) -> (chain, draw, parameter)
    if not np.array_equal(np.isfinite(packed), np.isfinite(np.moveaxis(draws, 1, 2))):
        raise ValueError(f"{source}: a draw overflows float32; keep this case in float64.")
    return packed, np.array(names, dtype=str)


def pack_case(source: Path, out: Path) -> None:
    """Pack one raw posteriordb case folder into ``out`` (created if missing).

    Parameters
    ----------
    source : pathlib.Path
        A folder with ``data.json``, ``meta.json``, ``model.md``, ``reference_draws.json`` and
        ``reference_summary.csv``.
    out : pathlib.Path
        The packed case folder.

    Raises
    ------
    FileNotFoundError
        If one of the raw files is missing (the message lists them).
    ValueError
        If the reference draws are not a list of chains with the same parameters and lengths.
    """
    missing = [name for name in _RAW_CASE_FILES if not (source / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{source} lacks {', '.join(missing)}; a raw posteriordb case folder holds {', '.join(_RAW_CASE_FILES)}."
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / DATA_FILE).write_bytes(gzip.compress((source / "data.json").read_bytes(), compresslevel=9, mtime=0))
    with open(source / "reference_draws.json") as handle:
        draws, names = _draws_array(json.load(handle), source / "reference_draws.json")
    write_npz(out / DRAWS_FILE, {"draws": draws, "parameter_names": names})
    for name in CASE_FILES:
        shutil.copyfile(source / name, out / name)


def pack(source: Path, out: Path = DEFAULT_OUT) -> list[Path]:
    """Pack a raw validation folder into ``out`` and return the files written.

    Parameters
    ----------
    source : pathlib.Path
        The raw folder with ``posteriordb/``, ``sachs/`` and ``pendulum/`` (see the module docstring).
    out : pathlib.Path, default ``ppzoo/data/validation`` of this repository
        The packed folder. Its ``posteriordb/``, ``sachs/`` and ``pendulum/`` are replaced; other files
        (the hand-written ``README.md``) are kept.

    Returns
    -------
    list of pathlib.Path
        Every file written, sorted.

    Raises
    ------
    FileNotFoundError
        If ``source`` lacks one of the expected folders or files.
    """
    source, out = Path(source), Path(out)
    expected = [source / "posteriordb" / "README.md", source / "sachs" / "README.md", source / "pendulum" / "RECIPE.md"]
    missing = [str(path) for path in expected if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{source} is not a raw validation folder: {', '.join(missing)} not found. Pass the folder that "
            "holds posteriordb/, sachs/ and pendulum/, e.g. python scripts/pack_validation.py /path/to/validation."
        )
    cases = sorted(path for path in (source / "posteriordb").iterdir() if path.is_dir())
    if not cases:
        raise FileNotFoundError(f"{source / 'posteriordb'} holds no case folders.")
    for folder in ("posteriordb", "sachs", "pendulum"):
        if (out / folder).exists():
            shutil.rmtree(out / folder)
    for case in cases:
        pack_case(case, out / "posteriordb" / case.name)
    readme = (source / "posteriordb" / "README.md").read_text(encoding="utf-8")
    (out / "posteriordb" / "README.md").write_text(_POSTERIORDB_NOTE + readme, encoding="utf-8")
    (out / "sachs").mkdir(parents=True)
    for path in sorted((source / "sachs").iterdir()):
        if path.is_file() and path.suffix in {".csv", ".md"}:
            shutil.copyfile(path, out / "sachs" / path.name)
    (out / "pendulum").mkdir(parents=True)
    shutil.copyfile(source / "pendulum" / "RECIPE.md", out / "pendulum" / "RECIPE.md")
    written = [path for folder in ("posteriordb", "sachs", "pendulum") for path in (out / folder).rglob("*")]
    return sorted(path for path in written if path.is_file())


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="raw validation folder (holds posteriordb/, sachs/, pendulum/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"packed folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    files = pack(args.source, args.out)
    total = sum(path.stat().st_size for path in files)
    print(f"wrote {len(files)} files, {total / 1e6:.2f} MB, under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
