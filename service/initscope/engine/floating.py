"""The engine's floating-point policy: one definition, applied at every entry point.

Whether a floating-point operation on inf or NaN raises NumPy's flags is not ours to rely on:
a BLAS kernel may or may not set the "invalid" flag for ``inf @ w`` (this machine's OpenBLAS
does, another CPU's does not), and elementwise ufuncs set it for ``inf - inf``. So every engine
computation that can meet non-finite values runs with every flag ignored, and counts the
non-finite values it produced itself (:func:`initscope.engine.statistics.summarise`,
``Histogram.non_finite``, ``LsuvReport.final_variance``, the training loss): overflow is a
measurement to report, never an exception, on any CPU.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import ParamSpec, TypeVar

import numpy as np

P = ParamSpec("P")
R = TypeVar("R")


def non_finite_policy() -> AbstractContextManager[object]:
    """The policy as a context: every floating-point flag ignored (the caller counts)."""
    return np.errstate(all="ignore")


def applies_policy(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` under :func:`non_finite_policy`; marks it (``__non_finite_policy__``) so a
    test can check that every public entry point of the engine carries it."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with non_finite_policy():
            return fn(*args, **kwargs)

    wrapper.__non_finite_policy__ = True  # type: ignore[attr-defined]
    return wrapper


def has_policy(fn: object) -> bool:
    return getattr(fn, "__non_finite_policy__", False) is True
