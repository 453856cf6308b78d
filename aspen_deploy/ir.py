"""`ChipNet`: a tiny typed description of a float spiking network in the chip's terms.

Every model that can go on Xylo (ours, other papers' after conversion, NIR imports) is
turned into a `ChipNet`; `aspen_deploy.quantize.quantize` maps any `ChipNet` to integers.
Populations are LIF neurons with the chip's dynamics (see `models.lif`): bit-shift decays,
subtractive reset, a threshold in float units. Edges are dense float weight blocks; a hop
between populations costs one time step on the chip, input -> population none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from aspen_deploy import chip

INPUT = "input"
READOUT = "readout"
Node = Union[int, str]  # population index, INPUT or READOUT


@dataclass
class Population:
    name: str
    size: int
    dash_syn: int
    dash_mem: int
    threshold: float = 1.0  # float units; the integer threshold is HIDDEN_THRESHOLD at 1.0
    bias: np.ndarray | None = None  # (size,) float, added to the membrane every step


@dataclass
class Edge:
    src: Node  # INPUT or a population index
    dst: Node  # a population index or READOUT
    weight: np.ndarray  # (src size, dst size) float


@dataclass
class ChipNet:
    """Hidden populations in chip order, edges between them, and a non-spiking readout."""

    n_in: int
    populations: list[Population]
    edges: list[Edge]
    readout: Population  # non-spiking: threshold ignored, read as membrane
    dt: float = chip.DT_S
    name: str = "net"
    metadata: dict = field(default_factory=dict)

    @property
    def n_hidden(self) -> int:
        return sum(p.size for p in self.populations)

    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([p.size for p in self.populations])]).astype(int)


def as_chipnet(model: Any, approximate: bool = False) -> ChipNet:
    """The `ChipNet` of a model (anything with ``to_chipnet``), a loaded run (its ``net``) or a
    `ChipNet` itself; ``approximate`` is passed to models whose conversion can approximate."""
    if isinstance(model, ChipNet):
        return model
    model = getattr(model, "net", model)  # a Run
    if not hasattr(model, "to_chipnet"):
        raise TypeError(f"{type(model).__name__} has no to_chipnet(): it cannot be exported")
    return model.to_chipnet(approximate=True) if approximate else model.to_chipnet()
