"""Law discovery over noise levels and data sizes: regularized-horseshoe NUTS against PySINDy's STLSQ.

For each system (damped pendulum, Lotka-Volterra, Lorenz), noise level (fraction of each state's sd)
and record size (number of equally spaced times over the simulator's default time span; factors of the
default 400 / 400 / 800 times), the script simulates a
trajectory, runs :func:`ppzoo.laws.discover` (selected terms: inclusion probability > 0.5) and
:func:`ppzoo.laws.stlsq_baseline` on the same smoothed derivatives and library, and scores both with
:func:`ppzoo.laws.support_metrics`: exact support recovery, false positives and negatives, and the
relative coefficient error ``||C - C_true||_F / ||C_true||_F``.

It prints one row per run and a summary (exact-support rate and median coefficient error per system,
noise and size), writes both as CSV, and saves plots (``support.png``, ``coefficient_error.png``) to
``--out``.

Usage::

    python benchmarks/laws_noise_sweep.py --out reports/laws_sweep            # small: ~15 min on 2 cores
    python benchmarks/laws_noise_sweep.py --out reports/laws_sweep --full     # 3 seeds, more noise levels and sizes
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ppzoo  # noqa: F401  (sets up CPU host devices before JAX starts)
from ppzoo import laws

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

__all__ = ["SYSTEMS", "run", "summarize", "plot", "main"]

#: name -> (simulator, library, base number of times = the simulator's default, over its default span)
SYSTEMS = {
    "damped_pendulum": (laws.damped_pendulum, laws.polynomial(degree=1) + laws.trig(), 400),
    "lotka_volterra": (laws.lotka_volterra, laws.polynomial(degree=2), 400),
    "lorenz": (laws.lorenz, laws.polynomial(degree=2), 800),
}


def run(
    *,
    systems: list[str],
    noises: list[float],
    size_factors: list[float],
    seeds: list[int],
    nuts: dict,
    stlsq_threshold: float,
) -> pd.DataFrame:
    """One row per (system, noise, size, seed, method) with the support metrics and the run time."""
    rows = []
    for name in systems:
        simulate, library, base = SYSTEMS[name]
        for factor in size_factors:
            num_times = int(round(base * factor))
            for noise in noises:
                for seed in seeds:
                    ds = simulate(noise=noise, num_times=num_times, seed=seed)
                    truth = ds.truth["coefficients"]
                    start = time.perf_counter()
                    law = laws.discover(**ds.data, library=library, seed=seed, **nuts)
                    bayes_s = time.perf_counter() - start
                    start = time.perf_counter()
                    stlsq = laws.stlsq_baseline(**ds.data, library=library, threshold=stlsq_threshold)
                    stlsq_s = time.perf_counter() - start
                    divergences = int(np.sum(law.fit.sample_stats["diverging"])) if law.fit is not None else 0
                    for method, table, seconds in (
                        ("horseshoe_nuts", law.coefficient_table, bayes_s),
                        ("stlsq", stlsq, stlsq_s),
                    ):
                        metrics = laws.support_metrics(table, truth)
                        rows.append(
                            {
                                "system": name,
                                "noise": noise,
                                "num_times": num_times,
                                "seed": seed,
                                "method": method,
                                **metrics._asdict(),
                                "seconds": seconds,
                                "divergences": divergences if method == "horseshoe_nuts" else 0,
                            }
                        )
                    last = rows[-2:]
                    print(
                        f"{name:16s} noise={noise:<6g} n={num_times:<5d} seed={seed}  "
                        + "  ".join(
                            f"{r['method']}: support={'yes' if r['exact_support'] else 'no '} "
                            f"FP={r['false_positives']} FN={r['false_negatives']} err={r['coefficient_error']:.3f}"
                            for r in last
                        ),
                        flush=True,
                    )
    return pd.DataFrame(rows)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Exact-support rate, mean false positives/negatives and median coefficient error per setting."""
    grouped = results.groupby(["system", "noise", "num_times", "method"])
    summary = grouped.agg(
        exact_support=("exact_support", "mean"),
        false_positives=("false_positives", "mean"),
        false_negatives=("false_negatives", "mean"),
        coefficient_error=("coefficient_error", "median"),
        seconds=("seconds", "median"),
    )
    return summary.unstack("method")


def plot(results: pd.DataFrame, out: Path) -> list[Path]:
    """Exact-support rate and coefficient error against noise, one panel per system."""
    paths = []
    systems = list(dict.fromkeys(results["system"]))
    for metric, label, fname, logy in (
        ("exact_support", "exact support recovery (rate over seeds)", "support.png", False),
        ("coefficient_error", "relative coefficient error", "coefficient_error.png", True),
    ):
        fig, axes = plt.subplots(1, len(systems), figsize=(4.5 * len(systems), 3.6), squeeze=False)
        for ax, system in zip(axes[0], systems):
            sub = results[results["system"] == system]
            for (method, num_times), group in sub.groupby(["method", "num_times"]):
                by_noise = group.groupby("noise")[metric]
                curve = by_noise.mean() if metric == "exact_support" else by_noise.median()
                ax.plot(
                    curve.index,
                    curve.to_numpy(),
                    marker="o" if method == "horseshoe_nuts" else "s",
                    linestyle="-" if method == "horseshoe_nuts" else "--",
                    label=f"{method}, n={num_times}",
                )
            ax.set_xscale("log")
            if logy:
                ax.set_yscale("log")
            else:
                ax.set_ylim(-0.05, 1.05)
            ax.set_xlabel("noise (fraction of state sd)")
            ax.set_title(system)
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel(label)
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the CSV files and plots")
    parser.add_argument("--full", action="store_true", help="3 seeds, 6 noise levels, 3 sizes, longer chains")
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument("--noises", nargs="+", type=float, help="noise levels (default: 0.001 0.01 0.03 0.1)")
    parser.add_argument("--size-factors", nargs="+", type=float, help="record sizes relative to each system's base")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: 0)")
    parser.add_argument("--stlsq-threshold", type=float, default=0.1, help="STLSQ threshold (PySINDy default 0.1)")
    args = parser.parse_args(argv)

    if args.full:
        noises, factors, seeds = [0.001, 0.003, 0.01, 0.03, 0.05, 0.1], [0.5, 1.0, 2.0], [0, 1, 2]
        nuts = {"num_warmup": 500, "num_samples": 500, "num_chains": 4}
    else:
        noises, factors, seeds = [0.001, 0.01, 0.03, 0.1], [0.5, 1.0], [0]
        nuts = {"num_warmup": 300, "num_samples": 300, "num_chains": 2}
    noises = args.noises or noises
    factors = args.size_factors or factors
    seeds = args.seeds or seeds
    if not all(0 < n < 1 for n in noises):
        parser.error(f"--noises must be fractions in (0, 1); got {noises}")
    if not all(f > 0 for f in factors):
        parser.error(f"--size-factors must be positive; got {factors}")

    args.out.mkdir(parents=True, exist_ok=True)
    results = run(
        systems=args.systems,
        noises=noises,
        size_factors=factors,
        seeds=seeds,
        nuts=nuts,
        stlsq_threshold=args.stlsq_threshold,
    )
    summary = summarize(results)
    results.to_csv(args.out / "runs.csv", index=False)
    summary.to_csv(args.out / "summary.csv")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print("\nSummary (exact_support: rate over seeds; coefficient_error: median)\n")
        print(summary[["exact_support", "false_positives", "false_negatives", "coefficient_error"]])
    for path in plot(results, args.out):
        print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
