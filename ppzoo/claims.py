"""A case study's own claims, judged from the numbers of its run: orderings of methods, coverage of a truth.

Each function returns a :class:`ppzoo.report.Claim` for the verdict strip of ``ppzoo.report(..., claims=...)``.
The verdict comes from the numbers passed in, never from what the study hopes: an ordering of methods over
fewer seeds than it needs is n/a with the reason, and a claim that rests on several parts fails when any part
fails.

Examples
--------
>>> from ppzoo.claims import ordering_claim
>>> claim = ordering_claim({"iVAE": [0.97, 0.95, 0.93], "VAE": [0.72, 0.70, 0.75]}, winner="iVAE",
...                        metric="held-out MCC")
>>> claim.passed, claim.name
(True, 'iVAE held-out MCC 0.950 > VAE 0.723 (mean over 3 seeds; and on every seed)')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ppzoo.page import Claim

__all__ = ["MIN_SEEDS", "ordering_claim", "interval_claim", "all_of"]

#: Seeds an ordering of trained models needs before it is judged (the issue on honest pages: "over at least
#: three seeds where the claim is an ordering of models").
MIN_SEEDS = 3


def ordering_claim(
    scores: Mapping[str, Sequence[float]],
    *,
    winner: str,
    metric: str,
    others: Sequence[str] | None = None,
    higher_is_better: bool = True,
    min_seeds: int = MIN_SEEDS,
    more_seeds: str = "run --seeds 3",
    section: str | None = None,
    fmt: str = ".3f",
) -> Claim:
    """The claim "``winner`` beats ``others`` on ``metric``": on the mean over seeds and on every seed.

    Parameters
    ----------
    scores : mapping method -> sequence of float
        One value per seed for each method, the seeds in the same order for every method.
    winner : str
        The method the study says is best.
    metric : str
        The metric's name as the page shows it ("held-out MCC").
    others : sequence of str, optional
        The methods it should beat (default: every other method in ``scores``).
    higher_is_better : bool
        Whether a higher value is better (MCC) or a lower one (an error).
    min_seeds : int
        Seeds needed to judge; with fewer the claim is n/a and says so (1 judges a comparison on one data set).
    more_seeds : str
        How to get more seeds, quoted in the n/a reason ("run --seeds 3").
    section : str, optional
        Title of the page section with the evidence.
    fmt : str
        Format of the numbers in the claim's name.

    Returns
    -------
    Claim
        PASS when ``winner`` is better than each of ``others`` on the mean and on every seed; FAIL naming whom it
        loses to, and where; n/a with the reason when there are fewer than ``min_seeds`` seeds or a value is not
        finite.

    Raises
    ------
    ValueError
        If ``winner`` or one of ``others`` has no scores, or the methods have different numbers of seeds.
    """
    others = [m for m in scores if m != winner] if others is None else list(others)
    missing = [m for m in [winner, *others] if m not in scores]
    if missing:
        raise ValueError(f"ordering_claim: no scores for {missing}; `scores` has {sorted(scores)}.")
    if not others:
        raise ValueError(f"ordering_claim: nothing to compare {winner!r} with; pass `others` or more methods.")
    values = {m: np.asarray(scores[m], dtype=float).reshape(-1) for m in [winner, *others]}
    lengths = {m: len(v) for m, v in values.items()}
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ValueError(f"ordering_claim: every method needs one value per seed, the same seeds; got {lengths}.")
    seeds = lengths[winner]
    means = {m: float(np.mean(v)) for m, v in values.items()}
    sign = ">" if higher_is_better else "<"
    against = ", ".join(f"{m} {means[m]:{fmt}}" for m in others)
    over = "one value" if seeds == 1 else f"mean over {seeds} seeds; and on every seed"
    name = f"{winner} {metric} {means[winner]:{fmt}} {sign} {against} ({over})"
    if seeds < min_seeds:
        seed_word = "one seed" if seeds == 1 else f"{seeds} seeds"
        return Claim(name, None, f"{seed_word}: an ordering needs at least {min_seeds} ({more_seeds}).", section)
    if any(np.isnan(v).any() for v in values.values()):  # inf (a simulated law that blew up) still orders
        bad = [m for m, v in values.items() if np.isnan(v).any()]
        return Claim(name, None, f"not a number for {', '.join(bad)}: nothing to order.", section)

    def beats(a: np.ndarray | float, b: np.ndarray | float):
        return np.greater(a, b) if higher_is_better else np.less(a, b)

    losses = []
    for m in others:
        if not beats(means[winner], means[m]):
            losses.append(f"{m} on the mean ({means[m]:{fmt}} against {means[winner]:{fmt}})")
        lost = np.flatnonzero(~beats(values[winner], values[m]))
        if seeds > 1 and len(lost):
            losses.append(f"{m} on seed {', '.join(str(int(i)) for i in lost)} (of {seeds})")
    better = "higher" if higher_is_better else "lower"
    if losses:
        return Claim(name, False, f"{better} is better; {winner} loses to " + "; ".join(losses) + ".", section)
    where = "on the mean and on every seed" if seeds > 1 else "on this run"
    return Claim(name, True, f"{better} is better; {winner} beats {', '.join(others)} {where}.", section)


def interval_claim(
    label: str,
    draws: np.ndarray,
    truth: float,
    *,
    prob: float = 0.99,
    section: str | None = None,
    fmt: str = ".3g",
) -> Claim:
    """The claim "the posterior of ``label`` covers the truth": PASS when ``truth`` lies inside the central
    ``prob`` interval of ``draws`` (any shape; flattened), FAIL otherwise, with the mean, sd and the truth's
    distance from the mean in posterior sds.

    Raises
    ------
    ValueError
        If ``prob`` is not in (0, 1) or there are no finite draws.
    """
    if not 0 < prob < 1:
        raise ValueError(f"interval_claim: `prob` must be in (0, 1), e.g. 0.99; got {prob!r}.")
    d = np.asarray(draws, dtype=float).reshape(-1)
    d = d[np.isfinite(d)]
    if d.size == 0:
        raise ValueError(f"interval_claim: no finite draws of {label!r}.")
    low, high = np.quantile(d, [(1 - prob) / 2, (1 + prob) / 2])
    mean, sd = float(d.mean()), float(d.std())
    inside = bool(low <= truth <= high)
    z = (truth - mean) / sd if sd > 0 else np.inf * np.sign(truth - mean)
    name = f"{label} {mean:{fmt}} ± {sd:{fmt}} covers the truth {truth:{fmt}} ({prob:.0%} interval)"
    detail = (f"{prob:.0%} interval [{low:{fmt}}, {high:{fmt}}]; the truth is {'inside' if inside else 'outside'}, "
              f"{abs(z):.1f} posterior sds from the mean ({d.size} draws).")
    return Claim(name, inside, detail, section)


def all_of(name: str, claims: Sequence[Claim], *, section: str | None = None) -> Claim:
    """One claim made of several parts: FAIL when any part fails, n/a when none fails and one is n/a, PASS
    when every part passes; the detail lists each part with its verdict."""
    if not claims:
        raise ValueError(f"all_of: claim {name!r} has no parts.")
    verdicts = [c.passed for c in claims]
    passed = False if False in verdicts else None if None in verdicts else True
    word = {True: "PASS", False: "FAIL", None: "n/a"}
    detail = " | ".join(f"{word[c.passed]}: {c.name}: {c.detail}" for c in claims)
    return Claim(name, passed, detail, section if section is not None else claims[0].section)
