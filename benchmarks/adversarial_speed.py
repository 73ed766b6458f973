"""Training speed of the adversarial engine: ppzoo's compiled GAN step against the same GAN in plain JAX + optax (CPU).

Both train the same networks on the same settings: a generator MLP 16-256-256-64 (ReLU; ``ppzoo.nn.mlp``
inside a NumPyro program whose observed site is ``Delta(decoder(z))``), a discriminator MLP 64-256-256-1
(leaky ReLU, ``ppzoo.nn.MLP``), batch 64 real rows drawn without replacement from 10,000 and 64 generated
ones, non-saturating loss, Adam(2e-4, b1 = 0.5) for both, ``n_critic`` = 1, chunks of 200 steps:

* **ppzoo**: the engine's own step (:func:`ppzoo.inference.adversarial.make_step`: the model run with its
  observed site unobserved, NumPyro's handlers, Floyd minibatches) in the engine's fast chunk (a ``lax.scan``
  of :func:`ppzoo.inference.svi.unguarded_step`, compiled once; not donated, because the engine keeps a
  chunk's start for a guarded rerun);
* **JAX + optax**: the same Flax NNX modules called directly, a hand-written loss, ``jax.jit`` over a
  ``lax.scan`` of the same chunk with the state donated: what one would write without NumPyro.

Chunks of the two alternate within one process, so that load from other processes hits them alike; the
table gives the median steps per second over rounds (compile excluded) and the ratio. PyTorch is not timed:
the side environment (``--torch-python``, as in ``benchmarks/vae_speed.py``) is used only if given and has
torch. Usage::

    python benchmarks/adversarial_speed.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from flax import nnx

import ppzoo
from ppzoo.fit import inspect_model
from ppzoo.inference import adversarial
from ppzoo.inference.svi import unguarded_step

LATENT, HIDDEN, WIDTH, BATCH, ROWS, CHUNK = 16, (256, 256), 64, 64, 10_000, 200


def generator_program(x=None):
    """The GAN's generator as a NumPyro program: x = decoder(z), z ~ N(0, I)."""
    decoder = ppzoo.nn.mlp("decoder", LATENT, (*HIDDEN, WIDTH))
    with numpyro.plate("data", x.shape[0]):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([LATENT]).to_event(1))
        numpyro.sample("x", dist.Delta(decoder(z), event_dim=1), obs=x)


def ppzoo_chunk(x: np.ndarray):
    """The engine's compiled fast chunk and its initial state."""
    options = adversarial.AdversarialOptions(batch_size=BATCH, chunk_size=CHUNK, discriminator_hidden=HIDDEN)
    data = {"x": x}
    sites = inspect_model(generator_program, data)
    s = adversarial.setup(generator_program, data, jax.random.key(0), options, sites)
    step, init = adversarial.make_step(generator_program, s, options, {}, jax.random.key(1))
    unguarded = unguarded_step(step)

    def chunk(state, start, arrays):
        (state, _), losses = jax.lax.scan(lambda c, i: unguarded(c, i, arrays), (state, jnp.array(True)),
                                          start + jnp.arange(CHUNK))
        return state, losses

    return jax.jit(chunk), init(), {"x": jnp.asarray(x)}


def plain_chunk(x: np.ndarray):
    """The same GAN by hand: NNX modules, optax, one jitted scan with the state donated."""
    gen = ppzoo.nn.MLP(LATENT, (*HIDDEN, WIDTH), rngs=nnx.Rngs(0))
    disc = ppzoo.nn.MLP(WIDTH, (*HIDDEN, 1), activation="leaky_relu", rngs=nnx.Rngs(1))
    g_graph, g_params = nnx.split(gen)
    d_graph, d_params = nnx.split(disc)
    opt = optax.adam(2e-4, b1=0.5)
    data = jnp.asarray(x)

    def step(state, key):
        g, gs, d, ds = state
        k1, k2, k3, k4 = jax.random.split(key, 4)

        def fake(g, k):
            return nnx.merge(g_graph, g)(jax.random.normal(k, (BATCH, LATENT)))

        def logit(d, v):
            return nnx.merge(d_graph, d)(v)[:, 0]

        real = data[jax.random.randint(k1, (BATCH,), 0, ROWS)]
        generated = jax.lax.stop_gradient(fake(g, k2))
        d_loss, d_grad = jax.value_and_grad(
            lambda d: jnp.mean(jax.nn.softplus(-logit(d, real))) + jnp.mean(jax.nn.softplus(logit(d, generated))))(d)
        updates, ds = opt.update(d_grad, ds, d)
        d = optax.apply_updates(d, updates)
        g_loss, g_grad = jax.value_and_grad(lambda g: jnp.mean(jax.nn.softplus(-logit(d, fake(g, k3)))))(g)
        updates, gs = opt.update(g_grad, gs, g)
        return (optax.apply_updates(g, updates), gs, d, ds), jnp.stack([g_loss, d_loss])

    def chunk(state, key):
        return jax.lax.scan(step, state, jax.random.split(key, CHUNK))

    chunk = jax.jit(chunk, donate_argnums=0)
    return chunk, (g_params, opt.init(g_params), d_params, opt.init(d_params))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    x = np.random.default_rng(0).standard_normal((ROWS, WIDTH)).astype(np.float32)
    p_chunk, p_state, arrays = ppzoo_chunk(x)
    h_chunk, h_state = plain_chunk(x)
    compile_s = {}
    start = time.perf_counter()
    p_state, losses = p_chunk(p_state, jnp.asarray(0), arrays)
    losses.block_until_ready()
    compile_s["ppzoo"] = time.perf_counter() - start
    start = time.perf_counter()
    h_state, losses = h_chunk(h_state, jax.random.key(0))
    losses.block_until_ready()
    compile_s["jax"] = time.perf_counter() - start
    rates = {"ppzoo": [], "jax": []}
    for r in range(args.rounds):
        start = time.perf_counter()
        p_state, losses = p_chunk(p_state, jnp.asarray((r + 1) * CHUNK), arrays)
        losses.block_until_ready()
        rates["ppzoo"].append(CHUNK / (time.perf_counter() - start))
        start = time.perf_counter()
        h_state, losses = h_chunk(h_state, jax.random.key(r + 1))
        losses.block_until_ready()
        rates["jax"].append(CHUNK / (time.perf_counter() - start))
    p, h = statistics.median(rates["ppzoo"]), statistics.median(rates["jax"])
    print(f"| | steps/s (median of {args.rounds} rounds of {CHUNK}) | range | first chunk s (compile + run) |")
    print("|---|---|---|---|")
    print(f"| ppzoo adversarial engine | {p:.0f} | {min(rates['ppzoo']):.0f}-{max(rates['ppzoo']):.0f} | {compile_s['ppzoo']:.1f} |")
    print(f"| plain JAX + optax (donated) | {h:.0f} | {min(rates['jax']):.0f}-{max(rates['jax']):.0f} | {compile_s['jax']:.1f} |")
    print(f"ratio ppzoo / plain JAX: {p / h:.2f}; PyTorch: not timed (no torch in the side environment).")


if __name__ == "__main__":
    main()
