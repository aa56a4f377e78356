"""Seeded streams and the functions that build a network of :mod:`initscope.engine.layers`.

For one seed, the input, the upstream gradient and each layer's parameters come from
independent streams, children of ``SeedSequence(seed)``: the input is child 0, the upstream
gradient child 1, layer ``l`` (1-based) child ``l + 1``, and layer ``l``'s dropout stream the
first child of its own. So two networks compared under one seed see the same data, and layer
``l``'s weights do not depend on the layers around it: /train's network at step 0 is the one
/analyze draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from initscope.engine.floating import applies_policy
from initscope.engine.layers import Block, DropoutSource, FloatArray, Mode, Sequential
from initscope.jobs import LayerSpec
from initscope.results import LsuvReport

_INPUT_STREAM, _GRADIENT_STREAM, _FIRST_LAYER_STREAM = 0, 1, 2


def _stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def input_stream(seed: int) -> np.random.Generator:
    return _stream(seed, _INPUT_STREAM)


def gradient_stream(seed: int) -> np.random.Generator:
    return _stream(seed, _GRADIENT_STREAM)


def layer_stream(seed: int, index: int) -> np.random.Generator:
    """Layer ``index``'s (1-based) stream: W's draws, then b's."""
    return _stream(seed, _FIRST_LAYER_STREAM + index - 1)


def dropout_stream(seed: int, index: int) -> np.random.Generator:
    """Layer ``index``'s (1-based) dropout stream: the first child of the layer's own seed
    sequence, independent of the draws of W and b."""
    return _stream(seed, _FIRST_LAYER_STREAM + index - 1, 0)


class LayerDropout:
    """The analysis' dropout source: layer ``index``'s own stream (:func:`dropout_stream`),
    drawn afresh on every pass, in float64, so the mask depends only on the seed, the layer's
    place, its shape and the rate: variants of a comparison that differ in anything else see
    the same masks."""

    def __init__(self, seed: int, index: int) -> None:
        self.seed, self.index = seed, index

    def keep(self, rate: float, shape: tuple[int, ...], dtype: np.dtype[Any]) -> NDArray[np.bool_]:
        return dropout_stream(self.seed, self.index).random(shape) >= rate


class Network(Sequential):
    """The spec's layers in order (:class:`Block` each)."""

    def __init__(self, blocks: list[Block]) -> None:
        super().__init__(list(blocks))
        self.blocks = blocks

    def initialise(self, x: FloatArray, mode: Mode) -> list[LsuvReport | None]:
        """Run the data-dependent initialisation (LSUV) block by block, each on the output of
        the blocks before it in ``mode``; returns what LSUV did per block."""
        reports = []
        for block in self.blocks:
            reports.append(block.initialise(x))
            x = block.forward(x, mode)
        return reports


def build(
    specs: Sequence[LayerSpec],
    input_dim: int,
    seed: int,
    dtype: np.dtype[Any],
    dropout: Callable[[int], DropoutSource],
) -> Network:
    """The network of ``specs`` on ``input_dim`` inputs, layer ``l`` drawn from
    :func:`layer_stream` ``(seed, l)``; ``dropout(l)`` is the random source of layer ``l``'s
    dropout, if it has one. LSUV is not applied here (it needs data):
    :meth:`Network.initialise`."""
    blocks = []
    fan_in = input_dim
    for index, spec in enumerate(specs, start=1):
        blocks.append(draw_block(spec, fan_in, dtype, seed, index, dropout(index)))
        fan_in = spec.units
    return Network(blocks)


@applies_policy
def draw_block(
    spec: LayerSpec,
    fan_in: int,
    dtype: np.dtype[Any],
    seed: int,
    index: int,
    dropout: DropoutSource,
) -> Block:
    """Layer ``index`` (1-based) of the network, drawn from :func:`layer_stream` ``(seed,
    index)``, whatever the other layers are."""
    return Block(spec, fan_in, dtype, layer_stream(seed, index), dropout)
