"""Training speed of the beta-VAE: ppzoo's SVI vs the same network in plain JAX + optax vs PyTorch (CPU).

All three train the same architecture on the same minibatch stream settings (batch 64 drawn at random from
the same images every step, Adam, a one-sample Monte Carlo ELBO with beta = 4) for a fixed number of steps
and report steps per second after compiling / warming up:

* **ppzoo**: ``ppzoo.models.get("beta_vae", network=...)`` through ppzoo's SVI engine
  (``ppzoo.inference.run_svi``, what ``ppzoo.fit(..., engine="svi")`` runs): NumPyro's ``Trace_ELBO``,
  compiled ``lax.scan`` chunks with donated state, timed between chunk ends (compile excluded).
* **JAX + optax**: the same Flax NNX modules (``ppzoo.nn``), a hand-written loss, ``jax.jit`` over a
  ``lax.scan`` of the same chunk size with donated state: what one would write without NumPyro. A second
  variant adds ppzoo's per-step guard (finite loss and parameters, else keep the old state) to show its cost.
* **PyTorch**: the same layers in ``torch.nn`` (NCHW), eager, Adam with the fastest of its CPU
  implementations (``fused=True`` and ``foreach=True`` are both timed), ``torch.set_num_threads`` = the
  number of cores. Runs in a separate interpreter (``--torch-python``), because the project's environment
  has no PyTorch: e.g. ``~/.pyenv/versions/3.11.7/bin/python -m venv /tmp/torchvenv &&
  /tmp/torchvenv/bin/pip install torch numpy``.

Networks: the MLP is 4096-256-256-2x10 / 10-256-256-4096 (ReLU) on 64 x 64 images; the conv networks are
disentanglement_lib's (``ppzoo.nn.ConvEncoder`` / ``ConvDecoder``). For the conv decoder ppzoo computes the
transposed convolutions as sub-pixel convolutions (same weights, same function; ``--decoder-lowering xla``
times XLA's own lowering).

ppzoo's chunks and the plain-JAX chunks alternate within one process (:func:`time_interleaved`) so that load
from other processes on a shared machine hits them alike; PyTorch runs in rounds after them. The table
gives the medians over rounds and their ratios. Usage::

    python benchmarks/vae_speed.py --torch-python /tmp/torchvenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

LATENT = 10
BATCH = 64
BETA = 4.0
HIDDEN = (256, 256)


# ------------------------------------------------------------------------------------------------ PyTorch


def _torch_worker(args: argparse.Namespace) -> None:
    """Run in the PyTorch interpreter: time each (network, Adam variant) and print JSON."""
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x_all = torch.from_numpy(np.load(args.data)).float()
    n, h, w = x_all.shape
    size = h * w

    class MLPVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(nn.Linear(size, HIDDEN[0]), nn.ReLU(), nn.Linear(HIDDEN[0], HIDDEN[1]), nn.ReLU(), nn.Linear(HIDDEN[1], 2 * LATENT))
            self.dec = nn.Sequential(nn.Linear(LATENT, HIDDEN[1]), nn.ReLU(), nn.Linear(HIDDEN[1], HIDDEN[0]), nn.ReLU(), nn.Linear(HIDDEN[0], size))

        def encode(self, x):
            return self.enc(x.reshape(x.shape[0], -1))

        def decode(self, z):
            return self.dec(z).reshape(z.shape[0], h, w)

    class ConvVAE(nn.Module):
        def __init__(self):
            super().__init__()
            f = (h // 16) * (w // 16) * 64
            self.enc = nn.Sequential(
                nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
                nn.Conv2d(32, 64, 2, 2), nn.ReLU(), nn.Conv2d(64, 64, 2, 2), nn.ReLU(),
                nn.Flatten(), nn.Linear(f, 256), nn.ReLU(), nn.Linear(256, 2 * LATENT),
            )
            self.dec_dense = nn.Sequential(nn.Linear(LATENT, 256), nn.ReLU(), nn.Linear(256, f), nn.ReLU())
            self.dec_conv = nn.Sequential(
                nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1),
            )

        def encode(self, x):
            return self.enc(x[:, None])

        def decode(self, z):
            return self.dec_conv(self.dec_dense(z).reshape(z.shape[0], 64, h // 16, w // 16))[:, 0]

    results = {}
    for network in args.networks:
        for variant in ("fused", "foreach"):
            model = (MLPVAE if network == "mlp" else ConvVAE)()
            opt = torch.optim.Adam(model.parameters(), lr=1e-4, **{variant: True})

            def step():
                idx = torch.randint(0, n, (BATCH,))
                x = x_all[idx]
                out = model.encode(x)
                loc, log_var = out[:, :LATENT], out[:, LATENT:]
                scale = torch.exp(0.5 * log_var)
                eps = torch.randn_like(loc)
                z = loc + scale * eps
                logits = model.decode(z)
                recon = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2))
                # One-sample KL estimate, log q(z|x) - log p(z), as NumPyro's Trace_ELBO.
                log_q = (-0.5 * eps**2 - torch.log(scale)).sum(1)
                log_p = (-0.5 * z**2).sum(1)
                loss = (recon + BETA * (log_q - log_p)).mean() * n
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                return loss

            steps = args.steps[network]
            for _ in range(min(10, steps)):
                step()
            start = time.perf_counter()
            for _ in range(steps):
                loss = step()
            float(loss)
            results[f"{network}/{variant}"] = steps / (time.perf_counter() - start)
    print(json.dumps(results))


def run_torch(python: str, data_path: str, networks, steps, threads: int) -> dict[str, float]:
    command = [
        python, os.path.abspath(__file__), "--torch-worker", "--data", data_path, "--threads", str(threads),
        "--networks", ",".join(networks), "--mlp-steps", str(steps["mlp"]), "--conv-steps", str(steps["conv"]),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the PyTorch worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ JAX


def make_jax_trainer(
    network: str, image_shape, num_data: int, chunk: int, decoder_lowering: str, encoder_lowering: str, guard: bool = False
):
    """The same beta-VAE step in plain JAX + optax (no NumPyro): returns ``(init_state, run_chunk)``.

    ``guard=True`` adds what ppzoo's engine does every step on top of the update: check that the loss and
    every new parameter are finite and keep the old state otherwise (``lax.cond``), to measure its cost.
    """
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from ppzoo import nn as pnn

    h, w = image_shape
    if network == "mlp":
        encoder = pnn.MLP(h * w, (*HIDDEN, 2 * LATENT), rngs=nnx.Rngs(0))
        decoder = pnn.MLP(LATENT, (*HIDDEN[::-1], h * w), rngs=nnx.Rngs(1))
    else:
        encoder = pnn.ConvEncoder((h, w), 2 * LATENT, lowering=encoder_lowering, rngs=nnx.Rngs(0))
        decoder = pnn.ConvDecoder(LATENT, (h, w), lowering=decoder_lowering, rngs=nnx.Rngs(1))
    enc_def, enc_state = nnx.split(encoder)
    dec_def, dec_state = nnx.split(decoder)
    params = {"encoder": nnx.to_pure_dict(enc_state), "decoder": nnx.to_pure_dict(dec_state)}
    optimizer = optax.adam(1e-4)

    def apply(graphdef, template, weights, inputs):
        state = jax.tree.map(lambda a: a, template)
        nnx.replace_by_pure_dict(state, weights)
        return nnx.merge(graphdef, state)(inputs)

    def loss_fn(params, x, key):
        flat = x.reshape(x.shape[0], -1) if network == "mlp" else x
        out = apply(enc_def, enc_state, params["encoder"], flat)
        loc, scale = out[:, :LATENT], jnp.exp(0.5 * out[:, LATENT:])
        eps = jax.random.normal(key, loc.shape)
        z = loc + scale * eps
        logits = apply(dec_def, dec_state, params["decoder"], z).reshape(x.shape)
        recon = optax.sigmoid_binary_cross_entropy(logits, x).sum((1, 2))
        log_q = (-0.5 * eps**2 - jnp.log(scale)).sum(1)
        log_p = (-0.5 * z**2).sum(1)
        return jnp.mean(recon + BETA * (log_q - log_p)) * num_data

    def step(state, x_all, key):
        params, opt_state = state
        index_key, noise_key = jax.random.split(key)
        idx = jax.random.choice(index_key, num_data, (BATCH,), replace=False)
        loss, grads = jax.value_and_grad(loss_fn)(params, x_all[idx], noise_key)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_state = (optax.apply_updates(params, updates), new_opt_state)
        if guard:
            finite = jnp.isfinite(loss)
            for leaf in jax.tree.leaves(new_state[0]):
                finite = finite & jnp.all(jnp.isfinite(leaf))
            new_state = jax.lax.cond(finite, lambda: new_state, lambda: state)
        return new_state, loss

    def run_chunk(state, x_all, key):
        return jax.lax.scan(lambda state, key: step(state, x_all, key), state, jax.random.split(key, chunk))

    params = jax.tree.map(jnp.array, params)
    if network == "mlp":
        return (params, optimizer.init(params)), jax.jit(run_chunk, donate_argnums=0)
    # XLA's CPU convolutions are ~25x slower inside a loop body (jax-ml/jax#12868): the way to write the
    # conv trainer in JAX is one jitted step called from Python, which is what ppzoo's engine does too.
    one_step = jax.jit(step, donate_argnums=0)

    def python_loop(state, x_all, key):
        losses = []
        for step_key in jax.random.split(key, chunk):
            state, loss = one_step(state, x_all, step_key)
            losses.append(loss)
        return state, jnp.stack(losses)

    return (params, optimizer.init(params)), python_loop


def time_interleaved(network, x, steps, rounds, decoder_lowering, encoder_lowering) -> dict[str, list[float]]:
    """Steps/s of ppzoo's engine, plain JAX + optax, and JAX + optax with ppzoo's NaN guard, interleaved.

    ppzoo's SVI engine (``ppzoo.inference.run_svi``, what ``ppzoo.fit(..., engine="svi")`` runs, on the
    zoo's beta-VAE) trains ``rounds + 1`` chunks of ``steps`` steps and reports each finished chunk (its
    losses copied to the host, so the chunk has run) to a ``progress`` callback. The callback times the
    chunk that just ended, then runs one chunk of each plain-JAX trainer (compiled beforehand) and times
    it. The first ppzoo chunk, which includes compiling, is not counted. Load from other processes thus
    hits the three alike.
    """
    import jax
    import jax.numpy as jnp

    import ppzoo
    from ppzoo.inference import SVIOptions, run_svi

    x_all = jnp.asarray(x)
    trainers = {}
    for name, guard in (("jax", False), ("jax_guarded", True)):
        state, run_chunk = make_jax_trainer(network, x.shape[1:], len(x), steps, decoder_lowering, encoder_lowering, guard)
        state, losses = run_chunk(state, x_all, jax.random.key(0))  # compile + warm up
        losses.block_until_ready()
        trainers[name] = [state, run_chunk]
    times = {"ppzoo": [], "jax": [], "jax_guarded": []}
    last = [None]

    def progress(_):
        now = time.perf_counter()
        if last[0] is not None:
            times["ppzoo"].append(steps / (now - last[0]))
        for name, trainer in trainers.items():
            begin = time.perf_counter()
            trainer[0], losses = trainer[1](trainer[0], x_all, jax.random.key(len(times[name]) + 1))
            losses.block_until_ready()
            times[name].append(steps / (time.perf_counter() - begin))
        last[0] = time.perf_counter()

    model = ppzoo.models.get(
        "beta_vae", beta=BETA, network=network, mlp_hidden=HIDDEN, batch_size=BATCH, latent_dim=LATENT,
        decoder_lowering=decoder_lowering, encoder_lowering=encoder_lowering,
    )
    options = SVIOptions(steps=(rounds + 1) * steps, learning_rate=1e-4, num_draws=1, chunk_size=steps)
    try:
        run_svi(
            model, {"x": x}, jax.random.key(0), options, default_guide=model.make_guide(), latent_sites=["z"],
            deterministic_sites=[], progress=progress,
        )
    except ValueError as error:
        # An engine whose post-training log density does not seed the model cannot evaluate a model that
        # subsamples its plate ("Missing random key"); training, which is what is timed here, has finished.
        if "Missing random key" not in str(error) or len(times["ppzoo"]) < rounds:
            raise
    times["jax"], times["jax_guarded"] = times["jax"][1:], times["jax_guarded"][1:]  # pair with ppzoo's chunks
    return times


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", default=None, help="a Python with PyTorch (omit to skip PyTorch)")
    parser.add_argument("--networks", default="mlp,conv")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-data", type=int, default=2000)
    parser.add_argument("--mlp-steps", type=int, default=400)
    parser.add_argument("--conv-steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--decoder-lowering", choices=("subpixel", "xla"), default="subpixel")
    parser.add_argument("--encoder-lowering", choices=("xla", "space_to_depth"), default="xla")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    args.steps = {"mlp": args.mlp_steps, "conv": args.conv_steps}
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.torch_worker:
        _torch_worker(args)
        return {}
    import ppzoo  # noqa: F401  (before JAX starts)

    ds = ppzoo.data.load("shapes", image_size=args.image_size, num_data=args.num_data, seed=0)
    x = ds.data["x"]
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "x.npy")
        np.save(data_path, x)
        for network in args.networks:
            times = time_interleaved(network, x, args.steps[network], args.rounds, args.decoder_lowering, args.encoder_lowering)
            for name, values in times.items():
                results[f"{network}/{name}"] = values
            print(f"{network}: " + "; ".join(f"{k} " + ", ".join(f"{v:.1f}" for v in vals) for k, vals in times.items()), flush=True)
        if args.torch_python:
            for round_ in range(args.rounds):
                torch = run_torch(args.torch_python, data_path, args.networks, args.steps, args.threads)
                for key, value in torch.items():
                    results.setdefault(f"{key.split('/')[0]}/torch_{key.split('/')[1]}", []).append(value)
                print(f"torch round {round_}: " + ", ".join(f"{k} {v:.1f}" for k, v in torch.items()), flush=True)
    medians = {k: statistics.median(v) for k, v in results.items()}
    print()
    print(f"beta-VAE training steps/s, batch {BATCH}, {args.image_size}x{args.image_size}, median of {args.rounds} rounds "
          f"(decoder lowering: {args.decoder_lowering}; {args.threads} threads)")
    print(f"{'network':8} {'ppzoo':>8} {'jax+optax':>10} {'torch':>8} {'ppzoo/jax':>10} {'ppzoo/torch':>12}  torch Adam; jax with NaN guard")
    for network in args.networks:
        zoo, jx = medians[f"{network}/ppzoo"], medians[f"{network}/jax"]
        guarded = medians[f"{network}/jax_guarded"]
        torch_variants = {k.split("_")[-1]: v for k, v in medians.items() if k.startswith(f"{network}/torch_")}
        best = max(torch_variants, key=torch_variants.get) if torch_variants else None
        tv = torch_variants.get(best, float("nan"))
        print(f"{network:8} {zoo:8.1f} {jx:10.1f} {tv:8.1f} {zoo / jx:10.2f} {zoo / tv:12.2f}  {best or '-'} "
              + " ".join(f"({k} {v:.1f})" for k, v in torch_variants.items()) + f"; {guarded:.1f}")
    return {"medians": medians, "rounds": results}


if __name__ == "__main__":
    main(sys.argv[1:])
