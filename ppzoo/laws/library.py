"""Candidate-term libraries for law discovery: polynomials, sines and cosines, and their products.

A library is a symbolic list of candidate terms ``theta_j(x)`` of the state ``x`` (the columns of the
SINDy design matrix, Brunton et al. 2016). Libraries compose: ``lib_a + lib_b`` concatenates the terms
(two equal terms are an error that names them), ``lib_a * lib_b`` takes every product of a term of each.
A library is written without knowing the number of states; it is bound to one when it first sees data
(:meth:`Library.evaluate`, :func:`ppzoo.laws.discover`), or explicitly with ``state_dim=`` or
:meth:`Library.bind`.

Terms have canonical readable names: ``"1"``, ``"x0"``, ``"x0^2 x1"``, ``"sin(x0)"``, ``"cos(2 x1)"``,
``"x1 sin(x0)"``. Two terms with the same name are the same function of the state.

Examples
--------
>>> lib = polynomial(degree=2) + trig(frequencies=(1,))
>>> lib.bind(2).names
['1', 'x0', 'x1', 'x0^2', 'x0 x1', 'x1^2', 'sin(x0)', 'cos(x0)', 'sin(x1)', 'cos(x1)']
>>> (polynomial(degree=1, include_bias=False) * trig()).bind(1).names
['x0 sin(x0)', 'x0 cos(x0)']
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Factor", "Term", "Library", "polynomial", "trig", "product"]

_KIND_ORDER = {"x": 0, "sin": 1, "cos": 2}


def _format_number(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True, order=True)
class Factor:
    """One factor of a term: ``x_i``, ``sin(f x_i)`` or ``cos(f x_i)``, raised to an integer power.

    Attributes
    ----------
    kind : {"x", "sin", "cos"}
        The function applied to the state.
    state : int
        Index ``i`` of the state it acts on.
    frequency : float
        ``f`` inside a sine or cosine; 1 for ``"x"``.
    power : int
        Positive integer power.
    """

    kind: Literal["x", "sin", "cos"]
    state: int
    frequency: float = 1.0
    power: int = 1

    @property
    def base(self) -> tuple[int, int, float]:
        """Sort and merge key: the factor without its power."""
        return (_KIND_ORDER[self.kind], self.state, self.frequency)

    @property
    def name(self) -> str:
        """Readable name, e.g. ``"x0^2"``, ``"sin(2 x1)"``, ``"cos(x0)^2"``."""
        if self.kind == "x":
            core = f"x{self.state}"
        else:
            freq = "" if self.frequency == 1 else f"{_format_number(self.frequency)} "
            core = f"{self.kind}({freq}x{self.state})"
        return core if self.power == 1 else f"{core}^{self.power}"

    def evaluate(self, states, xp):
        column = states[:, self.state]
        if self.kind == "x":
            value = column
        elif self.kind == "sin":
            value = xp.sin(self.frequency * column)
        else:
            value = xp.cos(self.frequency * column)
        return value if self.power == 1 else value**self.power


@dataclass(frozen=True)
class Term:
    """A candidate term: a product of :class:`Factor` (the empty product is the constant ``"1"``).

    Build terms with :meth:`Term.of`, which puts the factors in canonical order and merges repeated
    factors into powers, so equal functions get equal terms and equal names.
    """

    factors: tuple[Factor, ...] = ()

    @classmethod
    def of(cls, *factors: Factor) -> "Term":
        """The canonical product of ``factors``."""
        powers: dict[tuple, int] = {}
        by_base: dict[tuple, Factor] = {}
        for factor in factors:
            powers[factor.base] = powers.get(factor.base, 0) + factor.power
            by_base[factor.base] = factor
        merged = [
            Factor(by_base[b].kind, by_base[b].state, by_base[b].frequency, powers[b]) for b in sorted(powers)
        ]
        return cls(tuple(merged))

    def __mul__(self, other: "Term") -> "Term":
        return Term.of(*self.factors, *other.factors)

    @property
    def name(self) -> str:
        """Readable name, e.g. ``"1"``, ``"x0 x1^2"``, ``"x1 sin(x0)"``."""
        return " ".join(f.name for f in self.factors) if self.factors else "1"

    @property
    def degree(self) -> int:
        """Total number of factors counted with their powers."""
        return sum(f.power for f in self.factors)

    @property
    def max_state(self) -> int:
        """Largest state index the term uses (-1 for the constant)."""
        return max((f.state for f in self.factors), default=-1)

    def evaluate(self, states, xp):
        if not self.factors:
            return xp.ones(states.shape[0], dtype=states.dtype)
        value = self.factors[0].evaluate(states, xp)
        for factor in self.factors[1:]:
            value = value * factor.evaluate(states, xp)
        return value


# ---------------------------------------------------------------------------------------------------
# Blocks: symbolic generators of terms for a given number of states.


@dataclass(frozen=True)
class _Polynomial:
    degree: int
    include_bias: bool

    def terms(self, state_dim: int) -> tuple[Term, ...]:
        out = [Term()] if self.include_bias else []
        for d in range(1, self.degree + 1):
            for combo in itertools.combinations_with_replacement(range(state_dim), d):
                out.append(Term.of(*(Factor("x", i) for i in combo)))
        return tuple(out)


@dataclass(frozen=True)
class _Trig:
    frequencies: tuple[float, ...]

    def terms(self, state_dim: int) -> tuple[Term, ...]:
        return tuple(
            Term.of(Factor(kind, i, float(f)))
            for i in range(state_dim)
            for f in self.frequencies
            for kind in ("sin", "cos")
        )


@dataclass(frozen=True)
class _Product:
    left: "Library"
    right: "Library"

    def terms(self, state_dim: int) -> tuple[Term, ...]:
        # A product is a set of functions: x0*x1 and x1*x0 are one term, kept once, in first-seen order.
        seen: dict[Term, None] = {}
        for a in self.left.terms(state_dim):
            for b in self.right.terms(state_dim):
                seen.setdefault(a * b, None)
        return tuple(seen)


def _duplicates(terms: tuple[Term, ...]) -> list[str]:
    counts = Counter(terms)
    return [t.name for t, n in counts.items() if n > 1]


@dataclass(frozen=True)
class Library:
    """A library of candidate terms, optionally bound to a number of states.

    Build libraries with :func:`polynomial`, :func:`trig`, ``+`` (concatenation) and ``*`` (products);
    do not call the constructor directly.

    Attributes
    ----------
    blocks : tuple
        The symbolic term generators, in order.
    state_dim : int or None
        Number of states the library is bound to, or ``None`` if not bound yet.
    """

    blocks: tuple = ()
    state_dim: int | None = None

    def __post_init__(self) -> None:
        if self.state_dim is not None:
            if isinstance(self.state_dim, bool) or not isinstance(self.state_dim, (int, np.integer)):
                raise TypeError(f"`state_dim` must be a positive int; got {self.state_dim!r}.")
            if self.state_dim < 1:
                raise ValueError(f"`state_dim` must be a positive int; got {self.state_dim}.")
            dups = _duplicates(self.terms(int(self.state_dim)))
            if dups:
                raise ValueError(
                    f"The library has duplicate terms {dups} for state_dim={self.state_dim}: the design "
                    "matrix would have equal columns. Remove the overlap, e.g. "
                    "`polynomial(degree=2) + trig()` instead of `polynomial(degree=2) + polynomial(degree=1)`, "
                    "or `include_bias=False` in one of the parts."
                )

    # -- composition ----------------------------------------------------------------------------------
    def _joint_dim(self, other: "Library") -> int | None:
        if not isinstance(other, Library):
            raise TypeError(
                f"Libraries compose only with libraries; got {type(other).__name__}. "
                "Example: `polynomial(degree=2) + trig()`."
            )
        if self.state_dim is not None and other.state_dim is not None and self.state_dim != other.state_dim:
            raise ValueError(
                f"Cannot combine a library bound to state_dim={self.state_dim} with one bound to "
                f"state_dim={other.state_dim}; bind both to the same number of states."
            )
        return self.state_dim if self.state_dim is not None else other.state_dim

    def __add__(self, other: "Library") -> "Library":
        state_dim = self._joint_dim(other)
        return Library(self.blocks + other.blocks, state_dim)

    def __mul__(self, other: "Library") -> "Library":
        state_dim = self._joint_dim(other)
        return Library((_Product(self, other),), state_dim)

    # -- binding and terms ----------------------------------------------------------------------------
    def bind(self, state_dim: int) -> "Library":
        """The same library bound to ``state_dim`` states (checks for duplicate terms).

        Raises
        ------
        ValueError
            If the library is already bound to another number of states, or if it has duplicate terms.
        """
        if self.state_dim is not None and self.state_dim != state_dim:
            raise ValueError(
                f"The library is bound to state_dim={self.state_dim} but the data have {state_dim} states. "
                "Build the library without `state_dim` or with the data's number of states."
            )
        return Library(self.blocks, state_dim)

    def terms(self, state_dim: int | None = None) -> tuple[Term, ...]:
        """The terms for ``state_dim`` states (default: the bound number)."""
        dim = self._require_dim(state_dim)
        return tuple(t for block in self.blocks for t in block.terms(dim))

    def _require_dim(self, state_dim: int | None) -> int:
        dim = self.state_dim if state_dim is None else state_dim
        if dim is None:
            raise ValueError(
                "The library is not bound to a number of states yet, so its terms are unknown. "
                "Call `library.bind(state_dim)` or build it with `state_dim=`, e.g. "
                "`polynomial(degree=2, state_dim=3)`."
            )
        return int(dim)

    @property
    def names(self) -> list[str]:
        """Readable names of the terms of the bound library, in column order."""
        return [t.name for t in self.terms()]

    @property
    def num_terms(self) -> int:
        """Number of terms of the bound library."""
        return len(self.terms())

    def __len__(self) -> int:
        return self.num_terms

    def evaluate(self, states: ArrayLike):
        """Evaluate every term on every time point: the design matrix.

        Parameters
        ----------
        states : ArrayLike
            Shape ``(num_times, state_dim)``. A JAX array gives a JAX array (usable under ``jit`` and
            ``grad``); anything else gives a NumPy array.

        Returns
        -------
        Array
            Shape ``(num_times, num_terms)``, columns in the order of :attr:`names`.

        Raises
        ------
        ValueError
            If ``states`` is not 2-D, or has a different number of states than the library is bound to,
            or the library has duplicate terms.
        """
        try:
            import jax

            is_jax = isinstance(states, jax.Array)
        except ImportError:  # pragma: no cover - jax is a dependency
            is_jax = False
        if is_jax:
            import jax.numpy as xp
        else:
            xp = np
            states = np.asarray(states, dtype=np.float64)
        if states.ndim != 2:
            raise ValueError(
                f"`states` must have shape (num_times, state_dim); got shape {tuple(states.shape)}. "
                "For one state use `states.reshape(-1, 1)`."
            )
        bound = self.bind(states.shape[1])
        terms = bound.terms()
        return xp.stack([t.evaluate(states, xp) for t in terms], axis=1)

    def __repr__(self) -> str:
        if self.state_dim is None:
            return f"Library(unbound, {len(self.blocks)} block(s))"
        return f"Library(state_dim={self.state_dim}, terms={self.names})"


def polynomial(degree: int = 3, include_bias: bool = True, *, state_dim: int | None = None) -> Library:
    """All monomials of the states up to total degree ``degree``.

    Parameters
    ----------
    degree : int, default 3
        Largest total degree (>= 1).
    include_bias : bool, default True
        Include the constant term ``"1"``.
    state_dim : int, optional
        Bind to this number of states now (otherwise bound when data arrive).

    Returns
    -------
    Library
        Terms in order of degree, then lexicographic: ``1, x0, x1, x0^2, x0 x1, x1^2, ...``.

    Raises
    ------
    ValueError
        If ``degree`` is not a positive integer.
    """
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 1:
        raise ValueError(
            f"`degree` must be a positive integer; got {degree!r}. Example: polynomial(degree=2)."
        )
    return Library((_Polynomial(int(degree), bool(include_bias)),), state_dim)


def trig(frequencies: tuple[float, ...] = (1,), *, state_dim: int | None = None) -> Library:
    """Sine and cosine of each state at each frequency: ``sin(f x_i)``, ``cos(f x_i)``.

    Parameters
    ----------
    frequencies : tuple of float, default (1,)
        Positive, distinct frequencies ``f``.
    state_dim : int, optional
        Bind to this number of states now.

    Returns
    -------
    Library
        Terms ordered by state, then frequency, sine before cosine.

    Raises
    ------
    ValueError
        If a frequency is not positive and finite, or frequencies repeat.
    """
    freqs = tuple(float(f) for f in np.atleast_1d(np.asarray(frequencies, dtype=float)))
    if not freqs or not all(np.isfinite(f) and f > 0 for f in freqs):
        raise ValueError(
            f"`frequencies` must be positive finite numbers; got {frequencies!r}. Example: trig(frequencies=(1, 2))."
        )
    if len(set(freqs)) != len(freqs):
        raise ValueError(f"`frequencies` must be distinct; got {frequencies!r}.")
    return Library((_Trig(freqs),), state_dim)


def product(left: Library, right: Library) -> Library:
    """Every product of a term of ``left`` with a term of ``right`` (same as ``left * right``).

    Equal products (``x0 x1`` and ``x1 x0``) are kept once. A constant ``"1"`` in one factor keeps the
    other factor's terms in the product.
    """
    if not isinstance(left, Library):
        raise TypeError(f"`left` must be a Library; got {type(left).__name__}.")
    return left * right
