"""Validate NUTS engines against the 15 posteriordb reference posteriors and print the table.

Each case is the NumPyro port in :mod:`ppzoo.reference`, sampled with Stan's ``adapt_delta`` as the target
acceptance probability (4 chains x 1000 warmup x 1000 draws by default, chains in parallel on 4 XLA host
devices), then compared with the 10,000 Stan reference draws by :func:`ppzoo.reference.compare_to_reference`
(|z| of mean and sd < 4, W1 / sd < 5 sqrt(1/ESS + 1/ESS_ref)).

Engines: ``numpyro`` runs ``numpyro.infer.MCMC(NUTS(...))`` directly; ``nuts``, ``blackjax`` and ``svi`` go
through ``ppzoo.fit`` (available once ``ppzoo/fit.py`` exists). Cases flagged ``x64`` (the GP, whose
covariance is singular in float32) run under ``jax.enable_x64``; ``--x64`` runs every case in float64.

Usage::

    python benchmarks/reference_posteriors.py                      # all cases, default engine
    python benchmarks/reference_posteriors.py --engines numpyro blackjax --cases sblrc-blr arK-arK
    python benchmarks/reference_posteriors.py --num-samples 500 --num-chains 2 --csv out.csv
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# XLA reads the host device count once, when its CPU backend starts: set it before JAX is imported.
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ppzoo.reference import (  # noqa: E402
    compare_to_reference,
    load_reference,
    reference_names,
    reference_table,
)

__all__ = ["run_numpyro", "run_ppzoo_fit", "main"]

ENGINES = ("numpyro", "nuts", "blackjax", "svi")


def _has_ppzoo_fit() -> bool:
    try:
        from ppzoo import fit  # noqa: F401
    except ImportError:
        return False
    return callable(fit)


def run_numpyro(ref, *, seed: int, num_warmup: int, num_samples: int, num_chains: int, dense_mass: bool = False):
    """NumPyro NUTS on ``ref.model(**ref.data)``; returns (samples dict (chain, draw, ...), extra dict)."""
    from numpyro.infer import MCMC, NUTS

    kernel = NUTS(ref.model, target_accept_prob=ref.adapt_delta, dense_mass=dense_mass)
    chain_method = "parallel" if jax.local_device_count() >= num_chains else "sequential"
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(seed), **ref.data, extra_fields=("diverging", "num_steps"))
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = mcmc.get_extra_fields(group_by_chain=True)
    return samples, {
        "divergences": int(np.asarray(extra["diverging"]).sum()),
        "mean_steps": float(np.asarray(extra["num_steps"]).mean()),
    }


def run_ppzoo_fit(ref, engine: str, *, seed: int, num_warmup: int, num_samples: int, num_chains: int):
    """``ppzoo.fit`` with the given engine; returns (samples dict, extra dict)."""
    from ppzoo import fit

    if engine == "svi":
        result = fit(ref.model, ref.data, engine="svi", seed=seed)
    else:
        result = fit(
            ref.model,
            ref.data,
            engine=engine,
            seed=seed,
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
            target_accept_prob=ref.adapt_delta,
        )
    samples = {k: np.asarray(v) for k, v in result.samples.items()}
    extra: dict = {}
    try:
        stats = result.to_arviz()["sample_stats"]
        extra["divergences"] = int(np.asarray(stats["diverging"]).sum())
        extra["mean_steps"] = float(np.asarray(stats["n_steps"]).mean())
    except Exception:  # SVI has no sample stats
        pass
    return samples, extra


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_engine = "nuts" if _has_ppzoo_fit() else "numpyro"
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=[default_engine])
    parser.add_argument("--cases", nargs="+", choices=reference_names(), default=reference_names())
    parser.add_argument("--num-warmup", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--x64", action="store_true", help="run every case in float64 (default: only x64 cases)")
    parser.add_argument("--csv", help="also write the per-parameter comparison to this CSV file")
    args = parser.parse_args(argv)
    if any(e != "numpyro" for e in args.engines) and not _has_ppzoo_fit():
        parser.error("engines nuts/blackjax/svi need ppzoo.fit, which is not available; use --engines numpyro")

    results: dict[str, dict[str, pd.DataFrame]] = {engine: {} for engine in args.engines}
    timing = []
    for name in args.cases:
        ref = load_reference(name)
        for engine in args.engines:
            with jax.enable_x64(args.x64 or ref.x64):
                start = time.perf_counter()
                if engine == "numpyro":
                    samples, extra = run_numpyro(
                        ref, seed=args.seed, num_warmup=args.num_warmup, num_samples=args.num_samples,
                        num_chains=args.num_chains,
                    )
                else:
                    samples, extra = run_ppzoo_fit(
                        ref, engine, seed=args.seed, num_warmup=args.num_warmup, num_samples=args.num_samples,
                        num_chains=args.num_chains,
                    )
                seconds = time.perf_counter() - start
            table = compare_to_reference(samples, ref)
            results[engine][name] = table
            timing.append({"posterior": name, "engine": engine, "seconds": seconds, "x64": args.x64 or ref.x64, **extra})
            row = reference_table({engine: table}).iloc[0]
            print(
                f"{name:45s} {engine:8s} {seconds:7.1f}s  max|z_mean| {row.max_abs_z_mean:5.2f}  "
                f"max|z_sd| {row.max_abs_z_sd:5.2f}  sd ratio {row.worst_sd_ratio:5.3f}  "
                f"W1/sd {row.max_w1:5.3f}  {'pass' if row.passed else 'FAIL ' + row.failed}",
                flush=True,
            )
    summary = reference_table(results).join(pd.DataFrame(timing).set_index(["posterior", "engine"]))
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 40):
        print()
        print(summary.drop(columns=["failed"]).round(3).to_string())
    if args.csv:
        pd.concat({e: pd.concat(t.values()) for e, t in results.items()}, names=["engine"]).to_csv(args.csv)
    return summary


if __name__ == "__main__":
    summary = main()
    sys.exit(0 if bool(summary["passed"].all()) else 1)
