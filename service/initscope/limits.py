"""The limits a request is held to beyond its schema, in one place.

Three kinds, checked in this order before any array is allocated:

- bounds that never change (a seed a JavaScript client can hold, 2 to 8 variants): constants
  here, written into the schema by the request models;
- sizes this deployment allows (``Settings.max_*``): :func:`at_most` and :func:`inline_data`,
  one :class:`~initscope.errors.FieldError` per field over its limit, raised together as
  :class:`~initscope.errors.InvalidRequest` (422);
- the budgets (``Settings.compute_budget`` in multiply-adds, ``Settings.memory_budget_bytes``):
  :func:`check_budget` on a :class:`Cost` that the frozen jobs estimate, raised as
  :class:`~initscope.errors.BudgetExceeded`.
"""

from __future__ import annotations

from dataclasses import dataclass

from initscope.config import Settings
from initscope.errors import BudgetExceeded, FieldError

Loc = tuple[str | int, ...]

# Integers past 2**53 do not survive a JavaScript client (I-JSON, RFC 7493).
MAX_SEED = 2**53 - 1
MIN_VARIANTS = 2
MAX_VARIANTS = 8
MAX_NAME_LENGTH = 64

_MIB = 2**20


def at_most(loc: Loc, value: int, maximum: int, what: str) -> list[FieldError]:
    """No error, or the one saying that ``what`` at ``body.loc`` is over its limit."""
    if value <= maximum:
        return []
    message = f"{what} must be at most {maximum}, got {value}"
    return [FieldError(("body", *loc), message, "less_than_equal", value)]


def inline_data(
    loc: Loc, rows: int, columns: int, settings: Settings, rows_what: str, values_what: str
) -> list[FieldError]:
    """Rows given inline in the body: at most ``max_inline_rows`` rows and
    ``max_inline_values`` values."""
    return at_most(loc, rows, settings.max_inline_rows, rows_what) + at_most(
        loc, rows * columns, settings.max_inline_values, values_what
    )


@dataclass(frozen=True, kw_only=True)
class Cost:
    """What a request would cost, and how to say so when that is over the budget.

    The compute message reads ``{what} {verb} {macs} multiply-adds ({breakdown}); the limit is
    ...: use {remedy}``, the memory one ``{what} needs about {MiB} MiB of working memory; the
    limit is ...: use {memory_remedy}``. ``peak_bytes`` None: no memory estimate to check.
    """

    macs: int
    peak_bytes: int | None
    what: str
    breakdown: str
    remedy: str
    memory_remedy: str = ""
    verb: str = "costs"


def check_budget(cost: Cost, settings: Settings, loc: Loc) -> None:
    """Refuse work whose compute or memory is over the budget, naming ``loc`` (``body``, ...)."""
    errors: list[FieldError] = []
    if cost.macs > settings.compute_budget:
        errors.append(
            FieldError(
                loc,
                f"{cost.what} {cost.verb} {cost.macs:.3g} multiply-adds ({cost.breakdown}); "
                f"the limit is {settings.compute_budget:.3g}: use {cost.remedy}",
                "compute_budget",
                cost.macs,
            )
        )
    if cost.peak_bytes is not None and cost.peak_bytes > settings.memory_budget_bytes:
        errors.append(
            FieldError(
                loc,
                f"{cost.what} needs about {cost.peak_bytes / _MIB:.0f} MiB of working memory; "
                f"the limit is {settings.memory_budget_bytes / _MIB:.0f} MiB: use "
                f"{cost.memory_remedy}",
                "memory_budget",
                cost.peak_bytes,
            )
        )
    if errors:
        raise BudgetExceeded(errors)
