"""The zoo's ODE models against posteriordb: NumPyro NUTS, BlackJAX NUTS and SVI through ``ppzoo.fit``.

``ppzoo.models.get("lotka_volterra")`` on the Hudson Bay lynx-hare pelts and
``ppzoo.models.get("one_compartment", dose=30, volume=2, t0=0)`` on posteriordb's concentrations define
the posteriors ``hudson_lynx_hare-lotka_volterra`` and ``one_comp_mm_elim_abs-one_comp_mm_elim_abs``
(tests/test_ode.py checks the log densities against the ports). Each engine's draws are compared with
Stan's 10,000 reference draws by :func:`ppzoo.reference.compare_to_reference` with its default tolerances.
Lotka-Volterra chains start near the main mode (random starts can stay in local modes); the
pharmacokinetic chains start at the prior median. SVI fits a multivariate normal on the unconstrained
scale; its deviations from the reference are the point of including it.

Measured (seed 0, 2 chains x 500 warmup + 500 draws, 3000 SVI steps, 2 CPU cores shared with other jobs,
load average ~6-9, so seconds are inflated)::

    posterior             engine    s     max|z_mean| max|z_sd| worst sd ratio  passed
    one_comp_mm_elim_abs  nuts      24.5  2.12        1.72      1.086           4 / 4
    one_comp_mm_elim_abs  blackjax  34.6  0.96        0.96      1.061           4 / 4
    one_comp_mm_elim_abs  svi       49.6  12.7        23.4      0.589           0 / 4
    hudson_lynx_hare      nuts      41.4  1.33        2.47      1.172           8 / 8
    hudson_lynx_hare      blackjax  44.9  1.92        0.98      1.020           8 / 8

Usage::

    python benchmarks/ode_inverse.py                                  # both posteriors, three engines
    python benchmarks/ode_inverse.py --engines nuts --num-samples 1000 --num-chains 4
"""

from __future__ import annotations

import argparse
import time

import ppzoo  # noqa: F401  (sets up CPU host devices before JAX starts)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from numpyro.infer import init_to_median, init_to_value  # noqa: E402

from ppzoo.reference import compare_to_reference, load_reference, reference_table  # noqa: E402

__all__ = ["CASES", "fit_case", "main"]

CASES = ("hudson_lynx_hare-lotka_volterra", "one_comp_mm_elim_abs-one_comp_mm_elim_abs")
#: Near the main mode of the lynx-hare posterior (posteriordb's reference means, rounded).
LV_START = {"theta": np.array([0.55, 0.028, 0.80, 0.024]), "z_init": np.array([33.0, 6.0]),
            "sigma": np.array([0.25, 0.25])}


def fit_case(name: str, engine: str, *, num_warmup: int, num_samples: int, num_chains: int, svi_steps: int,
             seed: int = 0):
    """Fit the zoo model of posteriordb case ``name`` with ``engine``; return (fit, comparison table)."""
    ref = load_reference(name)
    if name.startswith("hudson"):
        model, data, init = ppzoo.models.get("lotka_volterra"), ref.data, init_to_value(values=LV_START)
    else:
        d = ref.data
        model = ppzoo.models.get("one_compartment", dose=d["D"], volume=d["V"], t0=d["t0"])
        data, init = {"times": d["times"], "y": d["C_hat"]}, init_to_median
    if engine == "svi":
        from numpyro.infer import autoguide

        guide = autoguide.AutoMultivariateNormal(model, init_loc_fn=init)
        fit = ppzoo.fit(model, data, engine="svi", seed=seed, steps=svi_steps, guide=guide, learning_rate=0.01,
                        num_draws=4000)
    else:
        fit = ppzoo.fit(model, data, engine=engine, seed=seed, num_warmup=num_warmup, num_samples=num_samples,
                        num_chains=num_chains, target_accept_prob=ref.target_accept_prob, init_strategy=init)
    return fit, compare_to_reference(fit, ref)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--engines", nargs="+", choices=["nuts", "blackjax", "svi"], default=["nuts", "blackjax", "svi"])
    parser.add_argument("--num-warmup", type=int, default=500)
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--num-chains", type=int, default=2)
    parser.add_argument("--svi-steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, pd.DataFrame]] = {}
    seconds = {}
    for name in args.cases:
        for engine in args.engines:
            start = time.perf_counter()
            _, table = fit_case(name, engine, num_warmup=args.num_warmup, num_samples=args.num_samples,
                                num_chains=args.num_chains, svi_steps=args.svi_steps, seed=args.seed)
            seconds[(name, engine)] = time.perf_counter() - start
            results.setdefault(engine, {})[name] = table
            print(f"{name} {engine}: {seconds[(name, engine)]:.1f} s, {int(table['passed'].sum())} / {len(table)} passed",
                  flush=True)
    summary = reference_table(results)
    summary.insert(0, "seconds", [seconds[key] for key in summary.index])
    with pd.option_context("display.width", 220, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(summary)
    return summary


if __name__ == "__main__":
    main()
