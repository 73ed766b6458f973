"""Simulation-based calibration (Talts et al. 2018) for any NumPyro program and any ppzoo engine.

For each simulation, parameters and data are drawn from the model's prior predictive, the chosen engine
fits the simulated data, and each true scalar parameter is ranked among thinned posterior draws. If the
engine samples the exact posterior, every rank is uniform on {0, ..., L}. Each engine is compiled once for
all simulations: SBC runs the engine's own single-run core (:attr:`ppzoo.inference.Engine.core`, the program
``ppzoo.fit`` runs per chain or per fit, with the same options), mapped over simulations as the engine asks:
MCMC runs in parallel across devices (``pmap``), SVI vectorized (``vmap`` over whole optimisations).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
import pandas as pd
from numpyro.infer import Predictive
from scipy import stats

from ppzoo import inference
from ppzoo.arviz import unobserve
from ppzoo.fit import as_key, check_data, inspect_model, model_arguments
from ppzoo.inference import split_data
from ppzoo.models import ZooModel

__all__ = ["sbc", "SBCResult", "SIGNIFICANCE"]

#: A parameter fails calibration when the chi-square test of its binned ranks has p below this.
SIGNIFICANCE = 0.01


@dataclasses.dataclass
class SBCResult:
    """Ranks of the true parameters among posterior draws, and a uniformity test per scalar parameter.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per scalar parameter: the chi-square test of its binned ranks (``chi2``, ``dof``,
        ``p_value``), the mean and sd of the normalised ranks (0.5 and 0.289 under calibration), and
        ``passed``: p >= 0.01 / (number of scalar parameters), so that the whole table is a test at the 1%
        level (Bonferroni).
    ranks : dict of numpy.ndarray
        Site -> ``(num_simulations, *site_shape)`` integer ranks in ``0..num_rank_draws``.
    num_rank_draws : int
        L, the number of thinned draws each true value is ranked among.
    engine, options
        What was run.
    """

    table: pd.DataFrame
    ranks: dict[str, np.ndarray]
    num_rank_draws: int
    engine: str
    options: dict[str, Any]
    seed: int | None
    key: jax.Array = dataclasses.field(repr=False, default=None)

    @property
    def passed(self) -> bool:
        return bool(self.table["passed"].all())

    def to_arviz(self) -> Any:
        """A DataTree with the group ``prior_sbc`` laid out as simuk's, holding PIT values in (0, 1).

        Ranks are turned into randomised PIT values ``(rank + U) / (L + 1)`` (uniform under calibration),
        which is what ``arviz_plots.plot_ecdf_pit`` expects.
        """
        import arviz_base

        key = self.key if self.key is not None else jax.random.key(0)
        pit = {}
        for i, (name, ranks) in enumerate(self.ranks.items()):
            u = np.asarray(jax.random.uniform(jax.random.fold_in(key, i), ranks.shape))
            pit[name] = ((ranks + u) / (self.num_rank_draws + 1))[None]
        tree = arviz_base.from_dict({"prior_sbc": pit})
        tree.attrs.update({"inference_library": inference.get(self.engine).library, "ppzoo_engine": self.engine,
                           "modeling_interface": "ppzoo"})
        return tree


def _scalar_names(name: str, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    if not shape:
        return [(name, ())]
    return [(f"{name}[{', '.join(map(str, idx))}]", idx) for idx in np.ndindex(*shape)]


def _uniformity_table(ranks: Mapping[str, np.ndarray], num_rank_draws: int) -> pd.DataFrame:
    rows = []
    for name, values in ranks.items():
        num_sims = values.shape[0]
        # Chi-square on binned ranks: as many bins as keep >= 5 expected counts, at most 20.
        bins = int(max(2, min(20, num_sims // 5, num_rank_draws + 1)))
        for label, idx in _scalar_names(name, values.shape[1:]):
            r = values[(slice(None),) + idx]
            counts = np.bincount((r * bins) // (num_rank_draws + 1), minlength=bins)
            chi2, p = stats.chisquare(counts)
            normalised = (r + 0.5) / (num_rank_draws + 1)
            rows.append({"parameter": label, "chi2": chi2, "dof": bins - 1, "p_value": p,
                         "rank_mean": normalised.mean(), "rank_sd": normalised.std()})
    table = pd.DataFrame(rows).set_index("parameter")
    # Bonferroni: the whole table passes at the 1% level when every p >= 0.01 / (number of parameters).
    table["threshold"] = SIGNIFICANCE / len(table)
    table["passed"] = table["p_value"] >= table["threshold"]
    return table


def _ranks(draws: np.ndarray, truth: np.ndarray, num_rank_draws: int) -> np.ndarray:
    """draws: (sims, total_draws, *shape); thinned evenly to L draws, then counted below the truth."""
    total = draws.shape[1]
    index = np.linspace(0, total - 1, num_rank_draws).round().astype(int)
    return (draws[:, index] < truth[:, None]).sum(1)


def sbc(
    model: Callable[..., Any] | ZooModel,
    data: Mapping[str, Any] | None = None,
    *,
    engine: str = "nuts",
    num_simulations: int = 100,
    num_rank_draws: int = 100,
    seed: int | jax.Array = 0,
    var_names: list[str] | None = None,
    progress_bar: bool = False,
    **engine_options: Any,
) -> SBCResult:
    """Simulation-based calibration of ``engine`` on ``model``.

    Parameters
    ----------
    model : callable or ZooModel
        A NumPyro program whose observed sites are keyword arguments named after them (``y=None`` means
        "generate").
    data : mapping, optional
        The other arguments (sizes, covariates). Observed arrays given here are ignored: SBC simulates them.
    engine : str
        The engine under test (a name in ``ppzoo.inference.names()``: ``"nuts"``, ``"blackjax"``, ``"svi"``),
        with the options of :func:`ppzoo.fit`, which mean the same here (``num_warmup``, ``init_strategy``,
        ``steps``, ``guide``, ``optimizer``, ``extension``...): each simulation runs the engine's core once,
        i.e. one chain of an MCMC engine (``num_chains`` is not used) or one whole SVI fit.
    num_simulations : int
        Number of prior-predictive simulations.
    num_rank_draws : int
        L: posterior draws (thinned evenly from all draws) each true value is ranked among.
    seed : int or jax key
        Start of the randomness.
    var_names : list of str, optional
        Latent sites to rank (default: all). Rank only symmetry-invariant quantities of models whose
        posterior has symmetric modes (ICA's ``noise_scale``, not its permutable ``mixing``).
    progress_bar : bool
        Show progress over simulations.

    Returns
    -------
    SBCResult
        ``table`` (chi-square uniformity test per scalar parameter, pass at p >= 0.01), ``ranks``,
        ``to_arviz()`` for ``arviz_plots.plot_ecdf_pit``.

    Raises
    ------
    ValueError
        Zero or negative simulations; a model without random sites; an observed site that is not a keyword
        argument of the model; more rank draws than posterior draws; an unknown engine.

    References
    ----------
    Talts, Betancourt, Simpson, Vehtari & Gelman (2018), *Validating Bayesian inference algorithms with
    simulation-based calibration*, arXiv:1804.06788, Algorithm 2.
    """
    data = dict(data or {})
    if isinstance(num_simulations, bool) or not isinstance(num_simulations, (int, np.integer)) or num_simulations < 1:
        raise ValueError(f"`num_simulations` must be a positive integer; got {num_simulations!r}. Typical: 100-200.")
    engine_record = inference.get(engine)
    opts = engine_record.options.from_kwargs(engine, engine_options)
    data = check_data(model, data)
    accepted, _ = model_arguments(model)
    key, seed_int = as_key(seed)
    key_check, key_prior, key_fit, key_pit = jax.random.split(key, 4)
    traced = inspect_model(model, data, key_check)
    generated, latent = list(traced.observed), list(traced.latent)
    if not generated:
        raise ValueError(
            "The model has no observed site with these data: pass the observed arrays as in ppzoo.fit "
            "(e.g. {'y': y}); SBC replaces their values by simulations and keeps their shapes."
        )
    if not latent:
        raise ValueError("The model has no latent (unobserved) random site: there is nothing to calibrate.")
    if traced.improper:
        raise ValueError(
            f"Site(s) {', '.join(traced.improper)} have an improper (flat) prior: SBC draws parameters from the "
            "prior, so it needs a proper one. Give them a proper prior for the check."
        )
    if var_names is not None:
        unknown = sorted(set(var_names) - set(latent))
        if unknown:
            raise ValueError(f"`var_names` {unknown} are not latent sites of the model; latent sites: {latent}.")
    ranked = list(var_names) if var_names is not None else latent
    if accepted is not None:
        missing = [n for n in generated if n not in accepted]
        if missing:
            raise ValueError(
                f"Observed site(s) {', '.join(map(repr, missing))} are not keyword arguments of the model, so SBC "
                "cannot condition on simulated values: name the argument after the site (y=None -> obs=y)."
            )
    total_draws = engine_record.draws_per_run(opts)
    if num_rank_draws > total_draws:
        raise ValueError(
            f"`num_rank_draws` ({num_rank_draws}) exceeds the posterior draws per simulation ({total_draws}); "
            "draw more or rank among fewer."
        )
    base = {k: v for k, v in data.items() if k not in generated}
    prior = Predictive(unobserve(model, sites=set(generated)), num_samples=num_simulations,
                       return_sites=latent + generated)(key_prior, **data)
    prior = {k: np.asarray(v) for k, v in prior.items()}
    sim_data = {k: prior[k] for k in generated}
    keys = jax.random.split(key_fit, num_simulations)
    run = engine_record.core(model, opts, dataclasses.replace(traced, latent=ranked))
    draws = _map_runs(run, base, sim_data, keys, engine_record.batch_runs, progress_bar)
    ranks = {k: _ranks(draws[k], prior[k], num_rank_draws) for k in ranked}
    table = _uniformity_table(ranks, num_rank_draws)
    return SBCResult(table, ranks, num_rank_draws, engine, opts.as_dict(), seed_int, key_pit)


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="SBC", unit="sim", disable=not enabled)


def _map_runs(run, base, sim_data, keys, batch_runs, progress_bar):
    """``run(key, {**base, **sim})`` for every simulation, in groups through one compiled program.

    ``batch_runs == "devices"``: groups of ``jax.local_device_count()`` runs, one per device (``pmap``);
    ``"vectorized"``: groups of up to 50 runs in one ``vmap``. The last group is padded by repeating
    simulations (same shapes, no recompilation); the padding is dropped.
    """
    arrays, static = split_data(base)
    impl = jax.random.key_impl(keys)

    def one(key_data, sim, arrays):
        return run(jax.random.wrap_key_data(key_data, impl=impl), {**arrays, **static, **sim})

    n = len(keys)
    group = jax.local_device_count() if batch_runs == "devices" else min(n, 50)
    if batch_runs == "devices" and group > 1:
        mapped = jax.pmap(one, in_axes=(0, 0, None))
    else:
        mapped = jax.jit(jax.vmap(one, in_axes=(0, 0, None)))
    pad = (-n) % group
    # Sliced on the host (numpy), so that no group compiles a slice of its own.
    key_data = np.asarray(jax.random.key_data(keys))
    key_data = np.concatenate([key_data, key_data[:pad]]) if pad else key_data
    sims_padded = {k: np.concatenate([v, v[:pad]]) if pad else v for k, v in sim_data.items()}
    parts = []
    with _progress(n, progress_bar) as bar:
        for start in range(0, n + pad, group):
            sl = slice(start, start + group)
            parts.append(jax.device_get(mapped(key_data[sl], {k: v[sl] for k, v in sims_padded.items()}, arrays)))
            bar.update(min(group, n - start))
    return {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}
