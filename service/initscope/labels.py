"""Short texts about layers that messages, tables and figures share.

:func:`layer_span` names a set of layers ("layer 3", "layers 1-5", "layers 1, 4"), and
:func:`layer_extras` what a layer adds to its dense map ("BN", "dropout 0.5", "BN, dropout
0.5"), so that the diagnosis, the theory's notes, the CLI and the figures say it alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from initscope.jobs import BatchNorm


class Extended(Protocol):
    """A layer as the labels read it: a layer spec, a layer's result or its response model."""

    @property
    def batch_norm(self) -> BatchNorm | None: ...

    @property
    def dropout(self) -> float: ...


def layer_span(indices: Sequence[int]) -> str:
    """``layer 3``; ``layers 1-5`` for two or more consecutive layers (ascending); otherwise
    ``layers 1, 4``. ``indices`` are the layers' 1-based numbers, at least one."""
    if len(indices) == 1:
        return f"layer {indices[0]}"
    if list(indices) == list(range(indices[0], indices[-1] + 1)):
        return f"layers {indices[0]}-{indices[-1]}"
    return "layers " + ", ".join(map(str, indices))


def layer_extras(layer: Extended, *, short: bool = False) -> str:
    """What ``layer`` adds to its dense map: its batch norm's label (``BN``, ``BN after``,
    ``BN(gamma=2)``, see :attr:`initscope.jobs.BatchNorm.label`), then its dropout rate
    (``dropout 0.5``; ``short``: ``drop 0.5``, for narrow table columns), joined by ", ";
    "" for a plain layer."""
    parts = [layer.batch_norm.label] if layer.batch_norm is not None else []
    if layer.dropout > 0:
        parts.append(f"{'drop' if short else 'dropout'} {layer.dropout:g}")
    return ", ".join(parts)
