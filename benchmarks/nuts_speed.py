"""NUTS speed: minimum bulk ESS per second of ppzoo's engines against PyMC + nutpie, side by side.

For each case the same posterior is sampled by

* ``nuts``     -- ``ppzoo.fit(..., engine="nuts")`` (NumPyro NUTS, chains in parallel on XLA host devices),
* ``blackjax`` -- ``ppzoo.fit(..., engine="blackjax")`` (BlackJAX NUTS with window adaptation, ``pmap``),
* ``nutpie``   -- a hand-written PyMC model of the same density, compiled by ``nutpie.compile_pymc_model``
  (numba backend) and sampled by ``nutpie.sample`` with its default settings,

all with the same chains, warmup and draws (4 x 1000 + 1000 by default) and target acceptance 0.8 (nutpie's
default, and ppzoo's). PyMC and nutpie live in their own virtual environment; this file is also the worker
run in that interpreter (``--pymc-worker``: one request as JSON on stdin, draws as JSON on stdout), so the
project's environment never imports PyMC.

Cases: five posteriordb ports from :mod:`ppzoo.reference` (their data and NumPyro model as they are; diamonds
has 26 strongly correlated parameters) and a simulated hierarchical logistic regression (:func:`hier_logistic`:
20 groups x 50 observations, 3 covariates, non-centred group intercepts, 24 parameters; ``hier_logistic_200``
is the same model at 10x the groups, 204 parameters), the two last cases being where sampling, not
compiling, takes the time. The PyMC models copy the ports site by site: same priors, same
parameterisation (``theta_trans`` for eight schools, a flat ``beta`` for kidiq), same data, same names. Before
sampling, each PyMC model's log density (with Jacobians) is evaluated at a random unconstrained point and
compared with NumPyro's ``-potential_energy`` there (in float64): column ``logp_diff``.

Timing. ``compile_s``: ppzoo's ``fit.timings["compile_s"]`` (JAX tracing, lowering, compiling, summed from
``jax.monitoring`` events); for nutpie, the wall time of ``compile_pymc_model``. ``sample_s``: ppzoo's
``fit.timings["run_s"]`` (warmup + draws, the rest of the call); for nutpie, the wall time of
``nutpie.sample`` (tuning + draws). ``min_ess_bulk``: the smallest ``arviz_stats.ess(method="bulk")`` over
every scalar of the named variables (latent sites and deterministic ones like eight schools' ``theta``),
computed here in the same way for every engine. ``ess_per_s`` divides it by ``sample_s`` only;
``ess_per_s_total`` by compile + sample. ``ratio`` is ``ess_per_s`` over that of ppzoo ``nuts`` on the same
case. ``steps`` is the mean number of leapfrog steps per draw (gradient evaluations) after warmup;
``warmup_grads`` the gradient evaluations of all chains' warmups and ``ess_per_1000_grads`` the minimum
bulk ESS per 1000 gradient evaluations, warmup included (``min_ess_bulk / (warmup_grads + draws x steps)``).
nutpie reports its warmup's ``n_steps`` itself; for ppzoo's engines the warmup is run again with the same
engine, settings and adaptation (:func:`warmup_gradients`, another key: the count is a measurement of the same
warmup, not of the very same trajectories). ``adaptation`` is the mass-matrix adaptation that ran: ppzoo's
``adaptation="auto"`` choice (``--adaptation`` sets another), nutpie's default (diagonal, fitted to draws and
gradients).

Precision: JAX runs in float32 unless ``--x64``; PyMC/nutpie run in float64.

Caveats: each nutpie run is a fresh process, but PyTensor keeps compiled code in ``~/.pytensor`` between
runs, so its compile time after the first run is partly cached; ppzoo does not enable JAX's persistent
cache here, so its compile is cold every run. On a shared machine the seconds move with the load, which is
printed at the start and at the end.

Usage::

    python benchmarks/nuts_speed.py                                        # ppzoo engines only
    python benchmarks/nuts_speed.py --pymc-python /tmp/pymcvenv/bin/python # + PyMC/nutpie
    python benchmarks/nuts_speed.py --num-warmup 300 --num-samples 300 --cases eight_schools hier_logistic \
        --pymc-python /tmp/pymcvenv/bin/python --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

#: Short names -> posteriordb names (or ``hier_logistic`` for the simulated regression).
CASES = {
    "eight_schools": "eight_schools-eight_schools_noncentered",
    "blr": "sblrc-blr",
    "arK": "arK-arK",
    "kidiq": "kidiq-kidscore_interaction",
    "hier_logistic": "hier_logistic",
    "diamonds": "diamonds-diamonds",
    "hier_logistic_200": "hier_logistic (200 groups)",
}

#: Variables whose scalars enter the minimum bulk ESS (the same names in NumPyro and PyMC).
ESS_VARS = {
    "eight_schools": ["theta_trans", "mu", "tau", "theta"],
    "blr": ["beta", "sigma"],
    "arK": ["alpha", "beta", "sigma"],
    "kidiq": ["beta", "sigma"],
    "hier_logistic": ["alpha_mu", "alpha_sigma", "alpha_raw", "beta", "alpha"],
    "diamonds": ["b", "Intercept", "sigma"],
    "hier_logistic_200": ["alpha_mu", "alpha_sigma", "alpha_raw", "beta", "alpha"],
}

#: Groups of the simulated hierarchical logistic regressions (50 observations each).
HIER_GROUPS = {"hier_logistic": 20, "hier_logistic_200": 200}

ENGINES = ("nuts", "blackjax", "nutpie")
JSON_TAG = "NUTS_SPEED_JSON "


# --------------------------------------------------------------------------------------------------------
# Data (numpy only: shared by both interpreters)
# --------------------------------------------------------------------------------------------------------


def simulate_hier_logistic(num_groups: int = 20, per_group: int = 50, num_covariates: int = 3, seed: int = 0):
    """Simulated data for :func:`hier_logistic`: ``X`` (N, 3), ``group`` (N,) ints, ``y`` (N,) 0/1."""
    rng = np.random.default_rng(seed)
    n = num_groups * per_group
    group = np.repeat(np.arange(num_groups), per_group)
    X = rng.normal(size=(n, num_covariates))
    alpha = -0.5 + 0.8 * rng.normal(size=num_groups)
    beta = np.array([1.0, -0.7, 0.4])[:num_covariates]
    logits = alpha[group] + X @ beta
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-logits))).astype(np.int64)
    return {"X": X, "group": group, "y": y, "num_groups": num_groups}


# --------------------------------------------------------------------------------------------------------
# PyMC side (runs in the PyMC interpreter; imports PyMC lazily)
# --------------------------------------------------------------------------------------------------------


def pymc_model(case: str, data: dict):
    """The PyMC twin of the NumPyro model of ``case``: same priors, parameterisation, data and names."""
    import pymc as pm

    with pm.Model() as model:
        if case == "eight_schools":  # ppzoo.reference.eight_schools_noncentered
            y, sigma = np.asarray(data["y"], float), np.asarray(data["sigma"], float)
            theta_trans = pm.Normal("theta_trans", 0.0, 1.0, shape=len(sigma))
            mu = pm.Normal("mu", 0.0, 5.0)
            tau = pm.HalfCauchy("tau", 5.0)
            theta = pm.Deterministic("theta", mu + tau * theta_trans)
            pm.Normal("y", theta, sigma, observed=y)
        elif case == "blr":  # ppzoo.reference.blr
            X, y = np.asarray(data["X"], float), np.asarray(data["y"], float)
            beta = pm.Normal("beta", 0.0, 10.0, shape=X.shape[1])
            sigma = pm.HalfNormal("sigma", 10.0)
            pm.Normal("y", pm.math.dot(X, beta), sigma, observed=y)
        elif case == "arK":  # ppzoo.reference.ark
            K, y = int(data["K"]), np.asarray(data["y"], float)
            T = len(y)
            lags = np.stack([y[K - 1 - k : T - 1 - k] for k in range(K)], axis=-1)
            alpha = pm.Normal("alpha", 0.0, 10.0)
            beta = pm.Normal("beta", 0.0, 10.0, shape=K)
            sigma = pm.HalfCauchy("sigma", 2.5)
            pm.Normal("y", alpha + pm.math.dot(lags, beta), sigma, observed=y[K:])
        elif case == "kidiq":  # ppzoo.reference.kidscore_interaction
            hs, iq = np.asarray(data["mom_hs"], float), np.asarray(data["mom_iq"], float)
            design = np.stack([np.ones_like(hs), hs, iq, hs * iq], axis=-1)
            beta = pm.Flat("beta", shape=4)
            sigma = pm.HalfCauchy("sigma", 2.5)
            pm.Normal("kid_score", pm.math.dot(design, beta), sigma, observed=np.asarray(data["kid_score"], float))
        elif case == "diamonds":  # ppzoo.reference.diamonds
            X, Y = np.asarray(data["X"], float), np.asarray(data["Y"], float)
            Xc = X[:, 1:] - X[:, 1:].mean(axis=0)
            b = pm.Normal("b", 0.0, 1.0, shape=Xc.shape[1])
            intercept = pm.StudentT("Intercept", nu=3.0, mu=8.0, sigma=10.0)
            sigma = pm.HalfStudentT("sigma", nu=3.0, sigma=10.0)
            pm.Normal("Y", intercept + pm.math.dot(Xc, b), sigma, observed=Y)
        elif case in HIER_GROUPS:  # hier_logistic below
            X, group, y = np.asarray(data["X"], float), np.asarray(data["group"], int), np.asarray(data["y"], int)
            alpha_mu = pm.Normal("alpha_mu", 0.0, 2.5)
            alpha_sigma = pm.HalfNormal("alpha_sigma", 1.0)
            alpha_raw = pm.Normal("alpha_raw", 0.0, 1.0, shape=int(data["num_groups"]))
            alpha = pm.Deterministic("alpha", alpha_mu + alpha_sigma * alpha_raw)
            beta = pm.Normal("beta", 0.0, 1.0, shape=X.shape[1])
            pm.Bernoulli("y", logit_p=alpha[group] + pm.math.dot(X, beta), observed=y)
        else:
            raise ValueError(f"no PyMC model for case {case!r}")
    return model


def pymc_logp_at(model, point: dict) -> float:
    """PyMC's joint log density (Jacobians included) at unconstrained values keyed by random-variable name."""
    values = {}
    for rv in model.free_RVs:
        value_var = model.rvs_to_values[rv]
        shape = np.shape(model.initial_point()[value_var.name])
        values[value_var.name] = np.asarray(point[rv.name], dtype=float).reshape(shape)
    return float(model.compile_logp(jacobian=True)(values))


def pymc_worker() -> None:
    """Read one request (JSON) on stdin, compile and sample with nutpie, print draws as tagged JSON."""
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # anything the libraries print must not corrupt the reply
    request = json.load(sys.stdin)
    import nutpie
    import pymc as pm

    case = request["case"]
    model = pymc_model(case, request["data"])
    logp = pymc_logp_at(model, request["check_point"]) if request.get("check_point") else None
    start = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    trace = nutpie.sample(
        compiled, draws=request["num_samples"], tune=request["num_warmup"], chains=request["num_chains"],
        seed=request["seed"], progress_bar=False,
    )
    sample_s = time.perf_counter() - start
    posterior = trace["posterior"]
    stats = trace["sample_stats"]
    reply = {
        "compile_s": compile_s,
        "sample_s": sample_s,
        "draws": {name: np.asarray(posterior[name].values).tolist() for name in request["var_names"]},
        "divergences": int(np.asarray(stats["diverging"].values).sum()),
        "steps": float(np.asarray(stats["n_steps"].values).mean()),
        "warmup_grads": int(np.asarray(trace["warmup_sample_stats"]["n_steps"].values).sum()),
        "adaptation": "diag (nutpie default)",
        "logp": logp,
        "versions": {"pymc": pm.__version__, "nutpie": nutpie.__version__},
    }
    real_stdout.write(JSON_TAG + json.dumps(reply) + "\n")
    real_stdout.flush()


# --------------------------------------------------------------------------------------------------------
# ppzoo side
# --------------------------------------------------------------------------------------------------------


def hier_logistic(*, X, group, y, num_groups: int) -> None:
    r"""Hierarchical logistic regression with non-centred group intercepts.

    .. math::
        \mu_\alpha \sim N(0, 2.5),\ \sigma_\alpha \sim \text{half-Normal}(1),\ \tilde\alpha_g \sim N(0, 1),\
        \alpha_g = \mu_\alpha + \sigma_\alpha \tilde\alpha_g,\ \beta_j \sim N(0, 1),\
        y_n \sim \text{Bernoulli}(\text{logit}^{-1}(\alpha_{g[n]} + x_n^\top \beta)).
    """
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    X = jnp.asarray(X, dtype=jnp.result_type(float))
    alpha_mu = numpyro.sample("alpha_mu", dist.Normal(0.0, 2.5))
    alpha_sigma = numpyro.sample("alpha_sigma", dist.HalfNormal(1.0))
    alpha_raw = numpyro.sample("alpha_raw", dist.Normal(0.0, 1.0).expand([num_groups]).to_event(1))
    alpha = numpyro.deterministic("alpha", alpha_mu + alpha_sigma * alpha_raw)
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    numpyro.sample("y", dist.Bernoulli(logits=alpha[group] + X @ beta).to_event(1), obs=y)


def load_case(short: str):
    """(NumPyro model, data dict) of a case."""
    if short in HIER_GROUPS:
        return hier_logistic, simulate_hier_logistic(num_groups=HIER_GROUPS[short])
    from ppzoo.reference import load_reference

    ref = load_reference(CASES[short])
    return ref.model, dict(ref.data)


def check_point(model, data, seed: int) -> tuple[dict, float]:
    """A random unconstrained point (normal draws, keyed by site) and NumPyro's log density there, float64."""
    import jax
    from numpyro.infer.util import potential_energy

    from ppzoo.fit import inspect_model

    sites = inspect_model(model, data)
    rng = np.random.default_rng(seed)
    point = {name: rng.normal(size=np.shape(sites.values[name])) for name in sites.latent}
    with jax.enable_x64(True):
        logp = -float(potential_energy(model, (), data, {k: jax.numpy.asarray(v) for k, v in point.items()}))
    return point, logp


def min_ess_bulk(draws: dict, var_names: list[str]) -> float:
    """Smallest bulk ESS over every scalar of ``var_names``; draws are (chain, draw, ...)."""
    import arviz_stats as azs

    columns = [np.asarray(draws[v], dtype=float).reshape(np.shape(draws[v])[:2] + (-1,)) for v in var_names]
    x = np.concatenate(columns, axis=-1)
    return float(np.min(azs.ess(x, method="bulk", chain_axis=0, draw_axis=1)))


def to_jsonable(data: dict) -> dict:
    """Arrays as nested lists, everything else as it is."""
    return {k: (np.asarray(v).tolist() if hasattr(v, "shape") or isinstance(v, list) else v) for k, v in data.items()}


def warmup_gradients(engine: str, model, data, options, seed: int) -> tuple[str, int]:
    """The adaptation ``options`` run on ``model`` and the gradient evaluations of all chains' warmups.

    The warmup is run again, alone, with the engine's own pieces: NumPyro's ``MCMC.warmup`` with the
    engine's kernel for "diag" and "dense" on ``nuts``; :func:`ppzoo.inference.nuts.blackjax_warmup` from
    the engine's start otherwise (``blackjax``, and ``nuts`` with "low_rank", whose warmup is BlackJAX's).
    """
    import jax
    from numpyro.infer import MCMC
    from numpyro.infer.util import initialize_model

    from ppzoo.inference.nuts import (blackjax_warmup, choose_adaptation, map_chains, nuts_kernel,
                                      unconstrained_size)

    adaptation = choose_adaptation(options.adaptation, unconstrained_size(model, data, options.init_strategy))
    key = jax.random.key(seed + 1)
    if engine == "nuts" and adaptation != "low_rank":
        mcmc = MCMC(nuts_kernel(model, options, adaptation), num_warmup=options.num_warmup, num_samples=1,
                    num_chains=options.num_chains, progress_bar=False,
                    chain_method="parallel" if jax.local_device_count() >= options.num_chains else "sequential")
        mcmc.warmup(key, collect_warmup=True, extra_fields=("num_steps",), **data)
        return adaptation, int(np.asarray(mcmc.get_extra_fields()["num_steps"]).sum())

    def chain(key, data):
        init_key, warm_key = jax.random.split(key)
        info = initialize_model(init_key, model, model_kwargs=dict(data), dynamic_args=False,
                                init_strategy=options.init_strategy)
        potential = info.potential_fn
        _, _, grads = blackjax_warmup(lambda z: -potential(z), info.param_info.z, options, adaptation, warm_key)
        return {"grads": grads}, {}

    counts, _, _ = map_chains(chain, data, jax.random.split(key, options.num_chains))
    return adaptation, int(np.asarray(counts["grads"]).sum())


def run_ppzoo(engine: str, model, data, args, var_names) -> dict:
    import ppzoo
    from ppzoo.inference import get

    settings = dict(num_warmup=args.num_warmup, num_samples=args.num_samples, num_chains=args.num_chains,
                    target_accept_prob=0.8, adaptation=args.adaptation)
    fit = ppzoo.fit(model, data, engine=engine, seed=args.seed, **settings)
    adaptation, warmup_grads = warmup_gradients(engine, model, data, get(engine).options(**settings), args.seed)
    return {
        "compile_s": fit.timings["compile_s"],
        "sample_s": fit.timings["run_s"],
        "min_ess_bulk": min_ess_bulk(fit.samples, var_names),
        "divergences": int(np.asarray(fit.sample_stats["diverging"]).sum()),
        "steps": float(np.asarray(fit.sample_stats["n_steps"]).mean()),
        "warmup_grads": warmup_grads,
        "adaptation": adaptation,
        "warnings": [w for w in fit.warnings if "stuck" in w],
    }


def run_nutpie(short: str, data, args, var_names, point) -> dict:
    request = {
        "case": short, "data": to_jsonable(data), "var_names": var_names, "num_warmup": args.num_warmup,
        "num_samples": args.num_samples, "num_chains": args.num_chains, "seed": args.seed, "check_point": point,
    }
    proc = subprocess.run(
        [args.pymc_python, os.path.abspath(__file__), "--pymc-worker"],
        input=json.dumps(request, default=lambda a: np.asarray(a).tolist()), capture_output=True, text=True,
        timeout=args.timeout,
    )
    replies = [line[len(JSON_TAG):] for line in proc.stdout.splitlines() if line.startswith(JSON_TAG)]
    if proc.returncode != 0 or not replies:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"PyMC worker failed (rc {proc.returncode}): {' | '.join(tail)}")
    reply = json.loads(replies[-1])
    reply["min_ess_bulk"] = min_ess_bulk({k: np.asarray(v) for k, v in reply.pop("draws").items()}, var_names)
    return reply


def machine() -> str:
    import platform

    load = os.getloadavg()
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--num-warmup", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--adaptation", default="auto", choices=("auto", "diag", "dense", "low_rank"),
                        help="ppzoo engines' mass-matrix adaptation (nutpie keeps its default)")
    parser.add_argument("--x64", action="store_true", help="run JAX in float64 (PyMC always is)")
    parser.add_argument(
        "--pymc-python", help="interpreter with pymc and nutpie installed (nutpie is skipped without it)"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per PyMC worker run")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument(
        "--results", metavar="DIR",
        help="also write DIR/results.json (ppzoo.results): every cell of the table, for the README's "
        "results:nuts_speed block (scripts/readme_results.py collect DIR, then write)",
    )
    args = parser.parse_args(argv)

    import ppzoo  # noqa: F401  (before JAX starts: one XLA host device per chain)
    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    engines = [e for e in args.engines if e != "nutpie" or args.pymc_python]
    versions = {"jax": jax.__version__}
    for name in ("numpyro", "blackjax", "arviz_stats"):
        versions[name] = __import__(name).__version__
    print(f"machine: {machine()} (start); JAX devices: {jax.local_device_count()}", flush=True)
    print(f"runs: {args.num_chains} chains x ({args.num_warmup} warmup + {args.num_samples} draws), seed {args.seed}, "
          f"JAX {'float64' if args.x64 else 'float32'}", flush=True)
    if "nutpie" in args.engines and not args.pymc_python:
        print("nutpie skipped: no --pymc-python given", flush=True)

    rows = []
    for short in args.cases:
        model, data = load_case(short)
        var_names = ESS_VARS[short]
        point, logp = check_point(model, data, args.seed)
        for engine in engines:
            row = {"case": short, "engine": engine}
            try:
                if engine == "nutpie":
                    result = run_nutpie(short, data, args, var_names, point)
                    versions.update(result.pop("versions"))
                    pymc_logp = result.pop("logp")
                    result["logp_diff"] = pymc_logp - logp if pymc_logp is not None else float("nan")
                else:
                    result = run_ppzoo(engine, model, data, args, var_names)
                row.update(result)
                row["grads"] = row["warmup_grads"] + row["steps"] * args.num_samples * args.num_chains
                row["ess_per_1000_grads"] = 1000.0 * row["min_ess_bulk"] / row["grads"]
                row["ess_per_s"] = row["min_ess_bulk"] / row["sample_s"]
                row["ess_per_s_total"] = row["min_ess_bulk"] / (row["compile_s"] + row["sample_s"])
            except Exception as error:  # one failure must not hide the rest of the table
                row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            rows.append(row)
            print(f"  {short:14s} {engine:9s} " + (
                row["error"] if "error" in row else
                f"compile {row['compile_s']:.1f}s sample {row['sample_s']:.1f}s min ESS {row['min_ess_bulk']:.0f} "
                f"steps {row['steps']:.1f} ESS/1000 grads {row['ess_per_1000_grads']:.1f} ({row['adaptation']})"
            ), flush=True)
        base = next((r for r in rows if r["case"] == short and r["engine"] == "nuts" and "ess_per_s" in r), None)
        for r in rows:
            if r["case"] == short and "ess_per_s" in r:
                r["ratio"] = r["ess_per_s"] / base["ess_per_s"] if base else float("nan")

    print()
    print(f"{'case':14s} {'engine':9s} {'compile_s':>9s} {'sample_s':>8s} {'min_ess_bulk':>12s} {'ess_per_s':>9s} "
          f"{'ratio':>6s} {'ess/s total':>11s} {'steps':>6s} {'ESS/kgrad':>9s} {'div':>4s} {'logp_diff':>9s} adaptation")
    for r in rows:
        if "error" in r:
            print(f"{r['case']:14s} {r['engine']:9s} ERROR {r['error']}")
            continue
        logp_diff = f"{r['logp_diff']:9.1e}" if "logp_diff" in r else f"{'':9s}"
        print(f"{r['case']:14s} {r['engine']:9s} {r['compile_s']:9.2f} {r['sample_s']:8.2f} {r['min_ess_bulk']:12.0f} "
              f"{r['ess_per_s']:9.1f} {r['ratio']:6.2f} {r['ess_per_s_total']:11.1f} {r['steps']:6.1f} "
              f"{r['ess_per_1000_grads']:9.1f} {r['divergences']:4d} {logp_diff} {r['adaptation']}")
    print()
    print(f"machine: {machine()} (end)")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "versions": versions, "args": vars(args)}, fh, indent=1, default=str)
    if args.results:
        write_table_results(args.results, rows, versions, args, load=os.getloadavg())
    return rows


def _cell(rows: dict, engine: str, field: str, fmt: str) -> str:
    row = rows.get(engine)
    if row is None:
        return "not run"
    if "error" in row:
        return "error"
    return format(row[field], fmt)


def _cells(runs: dict, field: str, fmt: str) -> str:
    return " / ".join(_cell(runs, e, field, fmt) for e in ENGINES)


def write_table_results(folder: str, rows: list[dict], versions: dict, args: argparse.Namespace,
                        load: tuple[float, float, float]) -> None:
    """``folder/results.json``: each row's numbers under ``<case>_<engine>_<field>``, and the markdown table the
    README shows: per case the adaptation that ran, gradient evaluations per draw, minimum bulk ESS per 1000
    gradients (warmup included), minimum bulk ESS per second of sampling and per second counting compilation,
    and compile seconds, each as nuts / blackjax / nutpie."""
    from pathlib import Path

    from ppzoo.results import key, write_results

    Path(folder).mkdir(parents=True, exist_ok=True)
    values: dict = {}
    for row in rows:
        for field in ("compile_s", "sample_s", "min_ess_bulk", "ess_per_s", "ess_per_s_total", "ratio", "steps",
                      "divergences", "warmup_grads", "ess_per_1000_grads", "adaptation"):
            if field in row:
                values[key(row["case"], row["engine"], field)] = row[field]
    by_case: dict = {}
    for row in rows:
        by_case.setdefault(row["case"], {})[row["engine"]] = row
    lines = ["| case | adaptation (nuts / blackjax / nutpie) | gradients per draw | min ESS per 1000 gradients, "
             "warmup included | min ESS/s sampling | min ESS/s incl. compile | compile s |",
             "| --- |" + " --- |" * 6]
    for case, runs in by_case.items():
        lines.append(" | ".join([
            f"| {CASES[case]}", _cells(runs, "adaptation", "s"), _cells(runs, "steps", ".1f"),
            _cells(runs, "ess_per_1000_grads", ".1f"), _cells(runs, "ess_per_s", ".0f"),
            _cells(runs, "ess_per_s_total", ".0f"), _cells(runs, "compile_s", ".1f"),
        ]) + " |")
    values["table"] = "\n".join(lines)
    values["load_average_end"] = round(load[0], 1)
    values["versions"] = ", ".join(f"{k} {v}" for k, v in versions.items())
    settings = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool)) and k not in
                ("json", "results", "pymc_python")}
    settings["precision"] = "float64" if args.x64 else "float32"
    write_results(folder, "nuts_speed", values, settings=settings)
    print(f"results: {Path(folder) / 'results.json'}", flush=True)


if __name__ == "__main__":
    if "--pymc-worker" in sys.argv[1:]:
        pymc_worker()
    else:
        main()
