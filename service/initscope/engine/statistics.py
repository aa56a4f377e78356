"""Per-array statistics: moments, histograms, duplicate units, effective rank.

Everything is vectorised NumPy: reductions that accumulate in float64 without float64 copies,
and a histogram processed in cache-sized blocks. NaN and inf are counted, never dropped
silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from initscope.engine.floating import applies_policy
from initscope.results import Histogram

FloatArray = NDArray[np.floating[Any]]


@dataclass(frozen=True)
class Summary:
    """The finite values of one array: how many, their moments and extremes; NaN when none."""

    size: int
    finite: int
    zeros: int
    mean: float
    mean_square: float
    std: float
    min: float
    max: float

    @property
    def non_finite(self) -> int:
        return self.size - self.finite

    @property
    def rms(self) -> float:
        return float(np.sqrt(self.mean_square))


@applies_policy
def summarise(x: FloatArray) -> Summary:
    """Moments of the finite values of ``x``: NumPy's vectorised reductions, float64 sums.

    ``Var = E[x^2] - E[x]^2`` in float64 is exact enough unless the spread is below ~1e-6 of
    the mean; there the two-pass formula is used instead. The all-finite check is the min/max
    reduction itself (NaN and inf propagate into it), not a boolean mask.
    """
    flat = x.reshape(-1)
    low, high = flat.min(initial=np.inf), flat.max(initial=-np.inf)
    if not (np.isfinite(low) and np.isfinite(high)):
        flat = flat[np.isfinite(flat)]
        low, high = flat.min(initial=np.inf), flat.max(initial=-np.inf)
    finite = flat.size
    if finite == 0:
        nan = float("nan")
        return Summary(x.size, 0, 0, nan, nan, nan, nan, nan)
    total, square = _sums(flat)
    mean, mean_square = total / finite, square / finite
    variance = mean_square - mean * mean
    if variance < 1e-12 * mean_square:
        variance = float(flat.var(dtype=np.float64))
    std = float(np.sqrt(max(variance, 0.0)))
    zeros = int(np.count_nonzero(flat == 0))
    return Summary(x.size, finite, zeros, mean, mean_square, std, float(low), float(high))


_BLOCK = 1 << 14  # values per histogram block: the block's temporaries stay in cache


def data_range(out: Summary) -> tuple[float, float]:
    """The layer's own [min, max]; [0, 1] when no value is finite.

    A range too narrow to bin (flat, or so narrow that 1 / width overflows) is widened like
    NumPy widens a flat one, by 0.5 each side, or by 1e-6 of the magnitude where 0.5 would
    vanish in rounding; never past the largest float.
    """
    if out.finite == 0:
        return (0.0, 1.0)
    low, high = out.min, out.max
    if low < high and math.isfinite(1.0 / (high - low)):
        return (low, high)
    pad = max(0.5, 1e-6 * max(abs(low), abs(high)))
    wide_low, wide_high = low - pad, high + pad
    return (
        wide_low if math.isfinite(wide_low) else low,
        wide_high if math.isfinite(wide_high) else high,
    )


def _thresholds(edges: NDArray[np.float64], dtype: np.dtype[Any]) -> FloatArray:
    """``T_k``, k = 0 .. bins: the least value of ``dtype`` at or above ``edges[k]`` for
    k < bins, and the least value above ``hi = edges[-1]`` for k = bins. A value x of that
    dtype lies past edge k (in bin k or above; past the last edge: overflow) exactly when
    ``x >= T_k``, the last bin being closed."""
    t = edges.astype(dtype)
    up = t < edges  # rounded down: step to the next representable value
    up[-1] = t[-1] <= edges[-1]  # the last bin is closed: strictly above hi
    t[up] = np.nextafter(t[up], dtype.type(np.inf))
    return t


def _bins_of(
    values: FloatArray,
    lo: float,
    scale: float,
    bins: int,
    pos: FloatArray,
    out: NDArray[np.intp],
    clip: bool = True,
) -> NDArray[np.intp]:
    """``trunc(clip((x - lo) * scale, 0, bins))`` in float64: a non-decreasing function of x,
    and the bin of x wherever x is not next to an edge (the outer bins also hold the values
    just outside the range). ``clip=False`` when every x is known to lie in [lo, hi]: then
    ``x - lo >= 0`` exactly and ``(x - lo) * scale`` rounds to at most ``bins``."""
    np.subtract(values, lo, out=pos, dtype=np.float64)
    np.multiply(pos, scale, out=pos)
    if clip:
        np.clip(pos, 0, bins, out=pos)
    np.copyto(out, pos, casting="unsafe")
    return out


@applies_policy
def histogram(
    x: FloatArray, bins: int, value_range: tuple[float, float], summary: Summary | None = None
) -> Histogram:
    """Equal-width histogram over ``value_range`` that counts, rather than drops, the rest.

    Bin i holds ``edges[i] <= x < edges[i + 1]``, the last bin also ``x == hi``, with the
    reported float64 edges ``linspace(lo, hi, bins + 1)`` compared exactly (NumPy's rule,
    applied to the float64 edges whatever the data's dtype). Finite values outside the range
    are ``underflow``/``overflow``; NaN and inf are ``non_finite``. The caller's ``summary``
    of ``x`` (:func:`summarise`), when given, saves the passes it answers: the search for
    non-finite values when there are none, and the outer counts (and the clipping) when its
    min and max lie in the range.

    Cache-sized blocks are binned by ``trunc(clip((x - lo) * s, 0, bins))`` in float64
    (``s = bins / (hi - lo)``), which is off by at most a few roundings, so only next to an
    edge: underflow and overflow are counted exactly (``x < T_0``, ``x >= T_bins``, with
    ``T_k`` the least value of the data's dtype past edge k) and taken from the outer bins;
    an inner edge whose neighbours the formula already separates exactly
    (``prev(T_k) -> k - 1``, ``T_k -> k``) misplaces nothing, the formula being monotone; the
    values within ``delta`` (a bound on the rounding) of any other inner edge are re-binned
    by comparison with ``T_k``. Ranges whose rounding is not small against a bin are binned
    by binary search over the thresholds: slower, equally exact.
    """
    lo, hi = value_range
    flat = x.reshape(-1)
    dtype = flat.dtype
    edges = np.linspace(lo, hi, bins + 1)
    thresholds = _thresholds(edges, dtype)
    scale = bins / (hi - lo)  # may overflow to inf: then binned by search below
    delta = 16 * float(np.finfo(np.float64).eps) * (np.abs(edges) + abs(lo) + abs(hi))
    direct = bool(
        math.isfinite(scale) and np.isfinite(thresholds).all() and (delta * scale < 0.25).all()
    )
    inner = np.arange(1, bins)
    unsure = np.empty(0, np.intp)
    if direct:
        t = thresholds[inner]
        probe = np.concatenate((np.nextafter(t, dtype.type(-np.inf)), t))
        found = _bins_of(
            probe, lo, scale, bins, np.empty(probe.size), np.empty(probe.size, np.intp)
        )
        exact = (found[: bins - 1] == inner - 1) & (found[bins - 1 :] == inner)
        unsure = inner[~exact]
    finite = summary is not None and summary.non_finite == 0
    inside = bool(
        direct
        and finite
        and summary is not None
        and summary.finite > 0
        and summary.min >= thresholds[0]
        and summary.max < thresholds[-1]
    )
    size = min(_BLOCK, flat.size)
    pos, idx = np.empty(size), np.empty(size, np.intp)
    counts = np.zeros(bins + 2 if not direct else bins + 1, dtype=np.int64)
    underflow = overflow = non_finite = 0
    for start in range(0, flat.size, _BLOCK):
        block = flat[start : start + _BLOCK]
        if not finite and not np.isfinite(block.sum()):  # inf/NaN, or an overflowing sum
            keep = np.isfinite(block)
            non_finite += block.size - int(np.count_nonzero(keep))
            block = block[keep]
        if not direct:
            counts += np.bincount(
                np.searchsorted(thresholds, block, side="right"), minlength=bins + 2
            )
            continue
        n = block.size
        counts += np.bincount(
            _bins_of(block, lo, scale, bins, pos[:n], idx[:n], clip=not inside),
            minlength=bins + 1,
        )
        if not inside:
            underflow += int(np.count_nonzero(block < thresholds[0]))
            overflow += int(np.count_nonzero(block >= thresholds[-1]))
    if not direct:
        underflow, overflow, counts = int(counts[0]), int(counts[-1]), counts[1:-1]
    else:
        counts[0] -= underflow  # the formula put them in the first bin
        counts[bins - 1] += counts[bins] - overflow  # and these (and x == hi) in index `bins`
        counts = counts[:bins]
        for k in unsure:  # values this close to edge k may be on its wrong side
            near = flat[(flat >= edges[k] - delta[k]) & (flat <= edges[k] + delta[k])]
            placed = _bins_of(
                near, lo, scale, bins, np.empty(near.size), np.empty(near.size, np.intp)
            )
            past = near >= thresholds[k]
            early = int(np.count_nonzero(~past & (placed >= k)))  # in bin k, belong in k - 1
            late = int(np.count_nonzero(past & (placed < k)))  # in bin k - 1, belong in k
            counts[k - 1] += early - late
            counts[k] += late - early
    return Histogram(
        edges=tuple(edges.tolist()),  # exactly the edges the values were binned against
        counts=tuple(counts.tolist()),
        underflow=underflow,
        overflow=overflow,
        non_finite=non_finite,
    )


@dataclass(frozen=True)
class DerivativeSummary:
    mean_square: float
    below: int  # values below the limit
    alive: NDArray[np.bool_]  # per unit: phi'(a) != 0 on some sample


@applies_policy
def summarise_derivative(d: FloatArray, limit: float) -> DerivativeSummary:
    """E[phi'(a)^2], how many phi'(a) fall below ``limit``, and which units ever pass gradient."""
    return DerivativeSummary(
        mean_square=sum_squares(d) / d.size,
        below=int(np.count_nonzero(d < limit)),
        alive=np.any(d != 0, axis=0),
    )


_CHUNK = 1 << 16  # values per float64 chunk of the sums: a chunk's copy stays in cache


def _float64_chunks(flat: FloatArray) -> Iterator[NDArray[np.float64]]:
    """``flat`` in float64 chunks of :data:`_CHUNK` values (views when already float64)."""
    for start in range(0, flat.size, _CHUNK):
        yield flat[start : start + _CHUNK].astype(np.float64, copy=False)


def _float64_rows(m: FloatArray) -> Iterator[tuple[slice, NDArray[np.float64]]]:
    """The rows of the 2-D ``m`` in float64 copies of about :data:`_CHUNK` values each."""
    step = max(1, _CHUNK // max(1, m.shape[1]))
    for start in range(0, m.shape[0], step):
        rows = slice(start, start + step)
        yield rows, m[rows].astype(np.float64)


def _sums(flat: FloatArray) -> tuple[float, float]:
    """``(sum x, sum x^2)`` in float64: each chunk cast once, ``x . x`` by BLAS's dot (one
    thread in a worker; about 2.5x faster than a casting ``einsum``), NaN/inf propagate."""
    total = square = 0.0
    for chunk in _float64_chunks(flat):
        total += float(chunk.sum())
        square += float(np.dot(chunk, chunk))
    return total, square


@applies_policy
def sum_squares(x: FloatArray) -> float:
    """``sum(x^2)`` over all values (NaN/inf propagate), accumulated in float64."""
    return sum(float(np.dot(chunk, chunk)) for chunk in _float64_chunks(x.reshape(-1)))


@applies_policy
def rms(x: FloatArray) -> float:
    """Root mean square; NaN for an empty array, inf/NaN propagate."""
    return float(np.sqrt(sum_squares(x) / x.size)) if x.size else float("nan")


@applies_policy
def sample_correlation(z: FloatArray) -> float | None:
    """The mean correlation of two different samples' pre-activation vectors, the measured
    ``c^l`` of the mean-field correlation map (Poole et al. 2016, arXiv:1606.05340):

        c = 1 / (n (n - 1)) sum_{i != j} <z_i, z_j> / (|z_i| |z_j|)
          = (|sum_i u_i|^2 - n) / (n (n - 1)),   u_i = z_i / |z_i|,

    over the ``n`` rows (samples) of ``z`` (n, units) with a nonzero norm, uncentred as in the
    theory. ``None`` for fewer than two such rows or non-finite values. O(n units)."""
    if z.ndim != 2:
        z = z.reshape(z.shape[0], -1)
    norms = np.empty(z.shape[0])
    for rows, chunk in _float64_rows(z):
        np.square(chunk, out=chunk)
        chunk.sum(axis=1, out=norms[rows])
    np.sqrt(norms, out=norms)
    keep = norms > 0
    n = int(np.count_nonzero(keep))
    if n < 2 or not np.isfinite(norms).all():
        return None
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=keep)
    weights = inverse.astype(z.dtype)
    if np.isfinite(weights).all():  # sum_i u_i: one gemv in z's dtype, no copy of z
        total = (weights @ z).astype(np.float64)
    else:  # rows so small that 1/|z_i| overflows z's dtype: in float64
        total = inverse @ z.astype(np.float64)
    c = (float(total @ total) - n) / (n * (n - 1))
    return min(max(c, -1.0), 1.0) if math.isfinite(c) else None


@applies_policy
def effective_rank(h: FloatArray) -> float | None:
    """Entropy effective rank of the column-centred matrix (Roy & Vetterli, EUSIPCO 2007).

    With singular values s_i of ``H - mean_rows(H)`` and ``p_i = s_i / sum_j s_j``,
    ``erank = exp(-sum_i p_i ln p_i)``; 1 for rank one, min(n, m) for a flat spectrum, and 0
    for a matrix that is zero after centring. The s_i come from the eigenvalues of the smaller
    Gram matrix in float64, after scaling the matrix to max |entry| = 1 (erank is
    scale-free, and the Gram matrix then cannot overflow). Singular values below
    ``s_max * max(n, m) * eps(dtype)`` (NumPy's ``matrix_rank`` tolerance for data of that
    precision) or below ``s_max * sqrt(k * eps64)`` (the Gram route's own floor: an eigenvalue
    error of ``eps * lambda_max`` is a singular value error of ``sqrt(eps) * s_max``) are
    rounding noise and dropped. ``None`` if LAPACK does not converge.
    """
    centred = np.asarray(h, dtype=np.float64)
    centred = centred - centred.mean(axis=0)
    largest = float(np.abs(centred).max(initial=0.0))
    if largest == 0.0:
        return 0.0
    centred /= largest
    gram = centred.T @ centred if centred.shape[1] <= centred.shape[0] else centred @ centred.T
    try:
        eigenvalues = np.linalg.eigvalsh(gram)
    except np.linalg.LinAlgError:
        return None
    singular = np.sqrt(np.clip(eigenvalues, 0.0, None))
    top = float(singular.max(initial=0.0))
    eps64 = float(np.finfo(np.float64).eps)
    tolerance = top * max(max(h.shape) * float(np.finfo(h.dtype).eps), np.sqrt(len(gram) * eps64))
    kept = singular[singular > tolerance]
    p = kept / kept.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


@applies_policy
def distinct_units(h: FloatArray, live: NDArray[np.bool_], spread: float, largest: float) -> int:
    """Number of distinct functions among the live units.

    Two units compute the same function when their outputs agree on every sample to within
    ``tol = max(sqrt(eps) * spread, 4 * eps * largest)``, with ``spread`` the RMS of the
    column-centred outputs and ``largest`` a bound on max|h|: identical weights give columns
    equal up to a few ulps of rounding in the matrix product, while units that differ at all
    differ on the scale of their own variation. Each column is projected on three fixed random
    directions ``r ~ N(0, I/n)``: a difference of norm ``sqrt(n) * tol`` projects to about
    ``tol``, so duplicates lie within ``6 tol`` plus the projection's own rounding,
    ``16 eps sqrt(n) largest``, of each other in every projection. Sorted by the first
    projection, duplicates are neighbours; each neighbour pair close in all three is checked
    on every sample, and a group of k identical units counts once.
    """
    units = np.flatnonzero(live)
    n, count = h.shape[0], units.size
    if count <= 1:
        return int(count)
    eps = float(np.finfo(h.dtype).eps)
    tol = max(np.sqrt(eps) * spread, 4 * eps * largest)
    directions = np.random.default_rng(0).standard_normal((3, n)) / np.sqrt(n)
    projections = np.zeros((3, h.shape[1]))
    for rows, chunk in _float64_rows(h):  # BLAS at one thread; a casting einsum is 2.5x slower
        projections += directions[:, rows] @ chunk
    projections = projections[:, units]
    order = np.argsort(projections[0], kind="stable")
    gaps = np.abs(np.diff(projections[:, order], axis=1)).max(axis=0)
    close = np.flatnonzero(gaps <= 6 * tol + 16 * eps * np.sqrt(n) * largest)
    if close.size == 0:
        return int(count)
    left, right = units[order[close]], units[order[close + 1]]
    same = np.abs(h[:, left] - h[:, right]).max(axis=0) <= tol
    return int(count - np.count_nonzero(same))
