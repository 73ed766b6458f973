"""Wall time of one 24-run study under the local backend (1 and 2 workers) and under Ray.

Default: beta-VAE at 4 betas x 6 seeds on small shapes data (32 x 32, ``--num-data`` images, MLP networks,
``--steps`` SVI steps), scored by MIG, DCI, SAP and the Gaussian total correlation. ``--model ica``: Bayesian
linear ICA at 4 noise levels x 6 seeds. Each configuration runs the same study into a fresh folder with a
fresh JAX compilation cache shared by its workers (as ``ppzoo sweep`` does), and the tables are compared:
the same seeds must give the same metrics under every backend.

Run: ``python benchmarks/sweep_scaling.py [--model ica] [--steps 300] [--num-data 1000] [--no-ray]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from ppzoo.sweep import RUN_COLUMNS, StudyError, parse_study, run_study

BETA_VAE = """
[study]
name = "beta_vae_scaling"
model = "beta_vae"
engine = "svi"
metrics = ["disentanglement"]
max_retries = 0
[data]
name = "shapes"
image_size = 32
num_data = {num_data}
seed = 0
[model]
network = "mlp"
mlp_hidden = [128, 128]
latent_dim = 6
batch_size = 64
[engine]
steps = {steps}
learning_rate = 1e-3
num_draws = 10
[grid]
"model.beta" = [1.0, 2.0, 4.0, 8.0]
[[grid.zip]]
seed = [0, 1, 2, 3, 4, 5]
"model.init_seed" = [0, 1, 2, 3, 4, 5]
[output]
datatree = false
"""

ICA = """
[study]
name = "ica_scaling"
model = "ica"
engine = "svi"
metrics = ["identifiability"]
max_retries = 0
[data]
name = "linear_ica"
num_data = {num_data}
num_sources = 3
[engine]
steps = {steps}
learning_rate = 0.02
num_draws = 200
[grid]
"data.noise_scale" = [0.05, 0.1, 0.2, 0.4]
seed = [0, 1, 2, 3, 4, 5]
[output]
datatree = true
predictive_draws = 50
prior_draws = 50
"""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("beta_vae", "ica"), default="beta_vae")
    parser.add_argument("--steps", type=int, default=None, help="SVI steps per run (beta_vae 300, ica 1000)")
    parser.add_argument("--num-data", type=int, default=None, help="data points (beta_vae 1000 images, ica 500)")
    parser.add_argument("--workers", default="1,2", help="local worker counts to time (default 1,2)")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray instance (default 2)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray backend")
    parser.add_argument("--out", default=None, help="keep the study folders here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.model == "beta_vae":
        args.steps, args.num_data = args.steps or 300, args.num_data or 1000
    else:
        args.steps, args.num_data = args.steps or 1000, args.num_data or 500
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    return args


def main(argv=None) -> pd.DataFrame:
    args = parse_args(argv)
    template = BETA_VAE if args.model == "beta_vae" else ICA
    study = parse_study(template.format(steps=args.steps, num_data=args.num_data), name=f"{args.model}_scaling")
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ppzoo-sweep-scaling-"))
    configurations = [("local", w) for w in args.workers] + ([] if args.no_ray else [("ray", args.ray_cpus)])
    rows, tables = [], {}
    print(f"{args.model}: 24 runs, {args.steps} SVI steps, {args.num_data} data points; {os.cpu_count()} CPU cores",
          flush=True)
    for backend, workers in configurations:
        label = f"{backend} x{workers}"
        out = root / label.replace(" ", "_")
        cache = root / f"cache_{label.replace(' ', '_')}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        if backend == "ray":
            try:
                import ray
            except ImportError:
                print('ray is not installed (pip install "ppzoo[ray]"); skipping', flush=True)
                continue
            with warnings.catch_warnings():  # Ray's fork + exec of its own processes is safe
                warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            try:
                result = run_study(study, out=out, backend="ray", cache_dir=cache, progress=None)
            finally:
                ray.shutdown()
        else:
            result = run_study(study, out=out, backend="local", workers=workers, cache_dir=cache, progress=None)
        wall = time.perf_counter() - start
        table = result.table
        tables[label] = table.drop(columns=[c for c in RUN_COLUMNS if c in table.columns])
        ok = table[table["status"] == "ok"]
        rows.append({
            "backend": label,
            "wall_s": round(wall, 1),
            "runs_ok": len(ok),
            "failed": int((table["status"] == "failed").sum()),
            "mean_run_s": round(float(ok["seconds"].mean()), 1) if len(ok) else float("nan"),
            "mean_compile_s": round(float(ok["compile_s"].mean()), 1) if len(ok) else float("nan"),
        })
        print(f"  {label}: {wall:.1f} s", flush=True)
    frame = pd.DataFrame(rows).set_index("backend")
    if len(frame):
        frame["speedup"] = (frame["wall_s"].iloc[0] / frame["wall_s"]).round(2)
        reference = next(iter(tables.values()))
        frame["same_table"] = [tables[label].equals(reference) for label in frame.index]
    print(frame.to_string())
    if not args.out:
        shutil.rmtree(root, ignore_errors=True)
    return frame


if __name__ == "__main__":
    try:
        main()
    except StudyError as error:
        sys.exit(f"sweep_scaling: {error}")
