"""Training speed of the beta-VAE and the iVAE: ppzoo's SVI vs the same network in plain JAX + optax vs PyTorch (CPU).

All three train the same architecture on the same minibatch stream settings (batch 64 drawn at random from
the same images every step, Adam, a one-sample Monte Carlo ELBO with beta = 4) for a fixed number of steps
and report steps per second after compiling / warming up. ppzoo draws each batch without replacement
(NumPyro's plate subsampling); the hand-written versions draw indices with replacement (``randint``), the
cheapest choice (``jax.random.choice(..., replace=False)`` sorts the whole index range every step: 7x
slower for the iVAE's 40,000 points):

* **ppzoo**: ``ppzoo.models.get("beta_vae", network=...)`` through ppzoo's SVI engine
  (``ppzoo.inference.svi.train``, the training loop ``ppzoo.fit(..., engine="svi")`` runs): NumPyro's
  ``Trace_ELBO``, compiled ``lax.scan`` chunks with donated state, timed between chunk ends (compile excluded).
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
times XLA's own lowering). The conv trainers call one compiled step from Python (XLA's CPU convolutions
are far slower inside a ``lax.scan``, jax-ml/jax#12868); the MLP and iVAE trainers scan compiled chunks.

``ivae`` is the zoo's iVAE (``ppzoo.models.get("ivae", encoder_covariance="diagonal")``: the reference code's
mean-field encoder on ``[x, one_hot(u)]``, decoder, prior network on the one-hot segments, hidden widths and
activation from ``IVAEConfig``) on the
paper's default data (5 sources, 40 segments x 1000 points, 3 mixing layers), batch 64, Adam 1e-3,
Gaussian likelihood with the config's fixed noise.

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
IVAE_SOURCES, IVAE_SEGMENTS, IVAE_POINTS = 5, 40, 1000


# ------------------------------------------------------------------------------------------------ PyTorch


def _steps_per_second(step, steps: int) -> float:
    """Time ``steps`` calls of a PyTorch training step after 10 warm-up calls (the last loss read back)."""
    for _ in range(min(10, steps)):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    float(loss)
    return steps / (time.perf_counter() - start)


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
    if "ivae" in args.networks:
        results.update(_torch_ivae(args, torch, nn))
    for network in [n for n in args.networks if n != "ivae"]:
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

            results[f"{network}/{variant}"] = _steps_per_second(step, args.steps[network])
    print(json.dumps(results))


def _torch_ivae(args, torch, nn) -> dict[str, float]:
    """The iVAE step in PyTorch, the same networks and loss as :func:`make_ivae_trainer`."""
    spec = json.loads(args.ivae_spec)
    data = np.load(args.ivae_data)
    x_all, u_all = torch.from_numpy(data["x"]).float(), torch.from_numpy(data["u"]).long()
    n, d = x_all.shape
    k, m, hidden, noise = spec["num_sources"], spec["num_segments"], spec["hidden"], spec["noise"]
    act = {"leaky_relu": lambda: nn.LeakyReLU(0.1), "relu": nn.ReLU, "tanh": nn.Tanh}[spec["activation"]]

    def mlp(i, sizes):
        layers, width = [], i
        for j, size in enumerate(sizes):
            layers.append(nn.Linear(width, size))
            if j < len(sizes) - 1:
                layers.append(act())
            width = size
        return nn.Sequential(*layers)

    eye = torch.eye(m)
    results = {}
    for variant in ("fused", "foreach"):
        enc, dec, prior = mlp(d + m, (*hidden, 2 * k)), mlp(k, (*hidden, d)), mlp(m, (*hidden, k))
        params = [*enc.parameters(), *dec.parameters(), *prior.parameters()]
        opt = torch.optim.Adam(params, lr=1e-3, **{variant: True})

        def step():
            idx = torch.randint(0, n, (BATCH,))
            x, u = x_all[idx], u_all[idx]
            out = enc(torch.cat([x, eye[u]], 1))
            loc, log_scale = out[:, :k], out[:, k:].clamp(-9.0, 5.0)
            eps = torch.randn_like(loc)
            z = loc + torch.exp(log_scale) * eps
            log_var = prior(eye).clamp(-18.0, 10.0)[u]
            log_p = (-0.5 * z**2 * torch.exp(-log_var) - 0.5 * log_var).sum(1)
            log_q = (-0.5 * eps**2 - log_scale).sum(1)
            log_lik = (-0.5 * ((x - dec(z)) / noise) ** 2).sum(1)
            loss = -(log_lik + log_p - log_q).mean() * n
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        results[f"ivae/{variant}"] = _steps_per_second(step, args.steps["ivae"])
    return results


def run_torch(python: str, data_path: str, networks, steps, threads: int, ivae_data: str, ivae_spec: dict) -> dict[str, float]:
    command = [
        python, os.path.abspath(__file__), "--torch-worker", "--data", data_path, "--threads", str(threads),
        "--networks", ",".join(networks), "--mlp-steps", str(steps["mlp"]), "--conv-steps", str(steps["conv"]),
        "--ivae-steps", str(steps["ivae"]), "--ivae-data", ivae_data, "--ivae-spec", json.dumps(ivae_spec),
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
        idx = jax.random.randint(index_key, (BATCH,), 0, num_data)  # as torch.randint
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


def ivae_spec() -> dict:
    """The zoo iVAE's default networks and noise, for the hand-written versions."""
    from ppzoo.models.ivae import IVAEConfig

    config = IVAEConfig()
    return {"num_sources": IVAE_SOURCES, "num_segments": IVAE_SEGMENTS, "hidden": list(config.hidden),
            "activation": config.activation, "noise": config.observation_noise}


def make_ivae_trainer(x_all, u_all, chunk: int):
    """The iVAE's SVI step in plain JAX + optax (no NumPyro): the same networks and ELBO as the zoo's model."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from ppzoo import nn as pnn

    spec = ivae_spec()
    n, d = x_all.shape
    k, m, hidden = spec["num_sources"], spec["num_segments"], tuple(spec["hidden"])
    nets = {
        "encoder": pnn.MLP(d + m, (*hidden, 2 * k), activation=spec["activation"], rngs=nnx.Rngs(0)),
        "decoder": pnn.MLP(k, (*hidden, d), activation=spec["activation"], rngs=nnx.Rngs(1)),
        "prior": pnn.MLP(m, (*hidden, k), activation=spec["activation"], rngs=nnx.Rngs(2)),
    }
    split = {name: nnx.split(net) for name, net in nets.items()}
    params = {name: nnx.to_pure_dict(state) for name, (_, state) in split.items()}
    optimizer = optax.adam(1e-3)
    eye = jnp.eye(m)

    def apply(name, weights, inputs):
        graphdef, template = split[name]
        state = jax.tree.map(lambda a: a, template)
        nnx.replace_by_pure_dict(state, weights)
        return nnx.merge(graphdef, state)(inputs)

    def loss_fn(params, x, u, key):
        out = apply("encoder", params["encoder"], jnp.concatenate([x, eye[u]], 1))
        loc, log_scale = out[:, :k], jnp.clip(out[:, k:], -9.0, 5.0)
        eps = jax.random.normal(key, loc.shape)
        z = loc + jnp.exp(log_scale) * eps
        log_var = jnp.clip(apply("prior", params["prior"], eye), -18.0, 10.0)[u]
        log_p = (-0.5 * z**2 * jnp.exp(-log_var) - 0.5 * log_var).sum(1)
        log_q = (-0.5 * eps**2 - log_scale).sum(1)
        log_lik = (-0.5 * ((x - apply("decoder", params["decoder"], z)) / spec["noise"]) ** 2).sum(1)
        return -jnp.mean(log_lik + log_p - log_q) * n

    def step(state, key):
        params, opt_state = state
        index_key, noise_key = jax.random.split(key)
        idx = jax.random.randint(index_key, (BATCH,), 0, n)  # as torch.randint
        loss, grads = jax.value_and_grad(loss_fn)(params, x_all[idx], u_all[idx], noise_key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    def run_chunk(state, _x_all, key):
        return jax.lax.scan(step, state, jax.random.split(key, chunk))

    params = jax.tree.map(jnp.array, params)
    return (params, optimizer.init(params)), jax.jit(run_chunk, donate_argnums=0)


def time_interleaved(network, data, steps, rounds, decoder_lowering, encoder_lowering) -> dict[str, list[float]]:
    """Steps/s of ppzoo's engine, plain JAX + optax, and JAX + optax with ppzoo's NaN guard, interleaved.

    ppzoo's SVI engine (``ppzoo.inference.svi.train``, the training loop ``ppzoo.fit(..., engine="svi")``
    runs, on the zoo's beta-VAE) trains ``rounds + 1`` chunks of ``steps`` steps and reports each finished
    chunk (its losses copied to the host, so the chunk has run) to an ``on_chunk`` callback. The callback times the
    chunk that just ended, then runs one chunk of each plain-JAX trainer (compiled beforehand) and times
    it. The first ppzoo chunk, which includes compiling, is not counted. Load from other processes thus
    hits the three alike.
    """
    import jax
    import jax.numpy as jnp

    import ppzoo
    from ppzoo.buffers import fresh_buffers
    from ppzoo.inference import svi as engine

    x = data["x"]
    x_all = jnp.asarray(x)
    trainers = {}
    for name, guard in (("jax", False), ("jax_guarded", True)):
        if network == "ivae":
            if guard:
                continue
            state, run_chunk = make_ivae_trainer(x_all, jnp.asarray(data["u"]), steps)
        else:
            state, run_chunk = make_jax_trainer(network, x.shape[1:], len(x), steps, decoder_lowering, encoder_lowering, guard)
        state, losses = run_chunk(state, x_all, jax.random.key(0))  # compile + warm up
        losses.block_until_ready()
        trainers[name] = [state, run_chunk]
    times = {"ppzoo": [], **{name: [] for name in trainers}}
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

    if network == "ivae":
        # The reference code's mean-field encoder, which the hand-written versions implement.
        model = ppzoo.models.get("ivae", num_segments=IVAE_SEGMENTS, batch_size=BATCH, encoder_covariance="diagonal")
        learning_rate = 1e-3
    else:
        model = ppzoo.models.get(
            "beta_vae", beta=BETA, network=network, mlp_hidden=HIDDEN, batch_size=BATCH, latent_dim=LATENT,
            decoder_lowering=decoder_lowering, encoder_lowering=encoder_lowering,
        )
        learning_rate = 1e-4
    options = engine.SVIOptions(steps=(rounds + 1) * steps, learning_rate=learning_rate, num_draws=1,
                                chunk_size=steps)
    # The engine's own pieces, as run_svi calls them (the draws after training are not timed).
    guide = engine.make_guide(model, options.guide)
    extension = engine.extension_of(options, guide)
    svi = engine.make_svi(model, guide, options)
    state, extension_key = engine.init_state(svi, extension, jax.random.key(0), dict(data))
    engine.train(svi, extension, fresh_buffers(state), extension_key, dict(data), options, on_chunk=progress)
    for name in trainers:
        times[name] = times[name][1:]  # pair with ppzoo's chunks
    return times


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", default=None, help="a Python with PyTorch (omit to skip PyTorch)")
    parser.add_argument("--networks", default="mlp,conv,ivae")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-data", type=int, default=2000)
    parser.add_argument("--mlp-steps", type=int, default=400)
    parser.add_argument("--conv-steps", type=int, default=40)
    parser.add_argument("--ivae-steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--decoder-lowering", choices=("subpixel", "xla"), default="subpixel")
    parser.add_argument("--encoder-lowering", choices=("xla", "space_to_depth"), default="space_to_depth")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ivae-data", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ivae-spec", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    args.steps = {"mlp": args.mlp_steps, "conv": args.conv_steps, "ivae": args.ivae_steps}
    unknown = set(args.networks) - set(args.steps)
    if unknown:
        parser.error(f"--networks: unknown {sorted(unknown)}; choose from {sorted(args.steps)}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.torch_worker:
        _torch_worker(args)
        return {}
    import ppzoo  # noqa: F401  (before JAX starts)

    ds = ppzoo.data.load("shapes", image_size=args.image_size, num_data=args.num_data, seed=0)
    x = ds.data["x"]
    ica = ppzoo.data.load("nonlinear_ica", num_sources=IVAE_SOURCES, num_segments=IVAE_SEGMENTS,
                          points_per_segment=IVAE_POINTS, num_layers=3, seed=0)
    ivae_data = {"x": np.asarray(ica.data["x"], np.float32), "u": np.asarray(ica.data["u"], np.int32)}
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "x.npy")
        np.save(data_path, x)
        ivae_path = os.path.join(tmp, "ivae.npz")
        np.savez(ivae_path, **ivae_data)
        for network in args.networks:
            data = ivae_data if network == "ivae" else {"x": x}
            times = time_interleaved(network, data, args.steps[network], args.rounds, args.decoder_lowering, args.encoder_lowering)
            for name, values in times.items():
                results[f"{network}/{name}"] = values
            print(f"{network}: " + "; ".join(f"{k} " + ", ".join(f"{v:.1f}" for v in vals) for k, vals in times.items()), flush=True)
        if args.torch_python:
            for round_ in range(args.rounds):
                torch = run_torch(args.torch_python, data_path, args.networks, args.steps, args.threads, ivae_path, ivae_spec())
                for key, value in torch.items():
                    results.setdefault(f"{key.split('/')[0]}/torch_{key.split('/')[1]}", []).append(value)
                print(f"torch round {round_}: " + ", ".join(f"{k} {v:.1f}" for k, v in torch.items()), flush=True)
    medians = {k: statistics.median(v) for k, v in results.items()}
    print()
    print(f"training steps/s, batch {BATCH}, beta-VAE on {args.image_size}x{args.image_size} images, iVAE on 40 x 1000 points, median of {args.rounds} rounds "
          f"(encoder lowering: {args.encoder_lowering}, decoder lowering: {args.decoder_lowering}; {args.threads} threads)")
    print(f"{'network':8} {'ppzoo':>8} {'jax+optax':>10} {'torch':>8} {'ppzoo/jax':>10} {'ppzoo/torch':>12}  torch Adam; jax with NaN guard")
    for network in args.networks:
        zoo, jx = medians[f"{network}/ppzoo"], medians[f"{network}/jax"]
        guarded = medians.get(f"{network}/jax_guarded", float("nan"))
        torch_variants = {k.split("_")[-1]: v for k, v in medians.items() if k.startswith(f"{network}/torch_")}
        best = max(torch_variants, key=torch_variants.get) if torch_variants else None
        tv = torch_variants.get(best, float("nan"))
        print(f"{network:8} {zoo:8.1f} {jx:10.1f} {tv:8.1f} {zoo / jx:10.2f} {zoo / tv:12.2f}  {best or '-'} "
              + " ".join(f"({k} {v:.1f})" for k, v in torch_variants.items()) + f"; {guarded:.1f}")
    return {"medians": medians, "rounds": results}


if __name__ == "__main__":
    main(sys.argv[1:])
