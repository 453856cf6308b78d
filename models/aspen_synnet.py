"""The ASPEN SynNet-style network, 15 -> 48 -> 48 -> 48 -> C, faithful to the Xylo IMU core.

Built from Rockpool modules (`LinearTorch` weights, `XyloLIFTorch` neurons below, both
`TorchModule`s with Rockpool parameters), so it has Rockpool's parameter/state API, while the
neuron dynamics run through the fused scan in `models.lif`.

Chip facts it reproduces (DESIGN.md, integer semantics):
- bit-shift decays: each layer's tau_syn / tau_mem become dash = round(log2(tau/dt)) and the
  float model uses exactly alpha = 1 - 2**-dash, so export changes no time constant;
- subtractive reset, at most 31 spikes per step in hidden neurons;
- saturation of isyn and vmem at the chip's 16-bit range, expressed in float units as
  +-STATE_LIMIT (the export maps threshold 1.0 to the integer 32767 / STATE_LIMIT);
- latency: input -> first hidden layer in the same step, each further hop one step later.

Readout: C non-spiking leaky neurons; the class is the argmax of their membrane averaged over
the last 3/4 of the window. Why: the averaged membrane is a smooth, linear function of the
hidden spikes, which trains well with cross-entropy and survives int8 quantization exactly up
to rounding, whereas a readout that spikes at most once per step quantizes class evidence
and couples it to its reset. On the chip the readout threshold is set to the int16 maximum
and the membrane is read out (XyloSim records it; the HDK reports it in accelerated time).
The first quarter of the window is skipped while the states fill.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import rockpool.parameters as rp
from rockpool.nn.modules import LinearTorch, TorchModule

from aspen_deploy import chip
from aspen_deploy.ir import ChipNet, Population
from models.chipnet_model import STATE_LIMIT  # noqa: F401  (re-exported: the bound the docstring names)
from models.chipnet_model import (chip_lif_params, delay_one_step, layered_chipnet, logits_from_membrane, np64,
                                  readout_gain, uniform_init)
from models.lif import LIFParams, leaky_readout, lif_scan
from models.spec import LayeredSpec


@dataclass
class NetSpec(LayeredSpec):
    """Architecture and time constants (`models.spec.LayeredSpec`); saved with every run (settings.json).

    Adds ``extra`` (a free-form dict saved with the run) to the fields every model shares; the
    other models' specs have no such field, so theirs stay as they are.
    """

    extra: dict = field(default_factory=dict)


class XyloLIFTorch(TorchModule):
    """A population of chip-faithful LIF neurons; input (B, T, N) currents -> (B, T, N) spikes.

    Time constants are fixed bit-shift decays (`dash_syn`, `dash_mem`: simulation parameters);
    the bias is trained. The threshold is not a parameter: it is set from outside per batch
    (`threshold`), which is what ASPEN's threshold sampling varies.
    """

    def __init__(self, n: int, tau_syn_s: float, tau_mem_s: float, dt: float = chip.DT_S,
                 max_spikes: int = chip.MAX_HIDDEN_SPIKES_PER_STEP, *args, **kwargs):
        super().__init__(shape=(n, n), *args, **kwargs)
        self.dash_syn = rp.SimulationParameter(chip.dash_from_tau(tau_syn_s, dt))
        self.dash_mem = rp.SimulationParameter(chip.dash_from_tau(tau_mem_s, dt))
        self.max_spikes = rp.SimulationParameter(max_spikes)
        self.bias = rp.Parameter(torch.zeros(n), family="biases")
        self.threshold: torch.Tensor | float = 1.0

    def lif_params(self) -> LIFParams:
        return chip_lif_params(self.dash_syn, self.dash_mem, self.bias, self.max_spikes)

    def forward(self, i_in: torch.Tensor) -> torch.Tensor:
        return lif_scan(i_in, self.lif_params(), torch.as_tensor(self.threshold, dtype=i_in.dtype))


class AspenSynNet(TorchModule):
    """15 -> 48 -> 48 -> 48 -> C chip-faithful SNN; `forward` gives (B, C) logits."""

    def __init__(self, spec: NetSpec | None = None, *args, **kwargs):
        spec = spec or NetSpec()
        super().__init__(shape=(spec.n_in, spec.n_out), *args, **kwargs)
        self.spec = spec
        sizes = (spec.n_in, *spec.hidden)
        # plain attributes (not nn.ModuleList) so Rockpool registers them as submodules
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            setattr(self, f"lin{k}", LinearTorch((a, b), weight_init_func=_init(a)))
            setattr(self, f"lif{k}", XyloLIFTorch(b, spec.tau_syn_s, spec.tau_mem_s, spec.dt, spec.max_spikes))
        self.readout = LinearTorch((spec.hidden[-1], spec.n_out), weight_init_func=_init(spec.hidden[-1]))
        self.readout_bias = rp.Parameter(torch.zeros(spec.n_out), family="biases")
        self.readout_dash_syn = chip.dash_from_tau(spec.tau_syn_out_s, spec.dt)
        self.readout_dash_mem = chip.dash_from_tau(spec.tau_mem_out_s, spec.dt)
        self.last_hidden_spikes: list[torch.Tensor] = []

    @property
    def linears(self) -> list[LinearTorch]:
        return [getattr(self, f"lin{k}") for k in range(len(self.spec.hidden))]

    @property
    def neurons(self) -> list[XyloLIFTorch]:
        return [getattr(self, f"lif{k}") for k in range(len(self.spec.hidden))]

    def set_threshold(self, theta: float | torch.Tensor) -> None:
        """Hidden-layer threshold for the next forward passes (scalar, or (B, 1) per sample)."""
        for n in self.neurons:
            n.threshold = theta

    def readout_membrane(self, events: torch.Tensor) -> torch.Tensor:
        """(B, T, 15) input event counts -> (B, T, C) readout membrane; keeps hidden spikes.

        Weights are applied as plain matmuls on the modules' parameters (a functional core;
        Rockpool's per-call wrapping would dominate the cost of these tiny layers).
        """
        x = events.to(torch.float32)
        spikes = []
        for k, (lin, neu) in enumerate(zip(self.linears, self.neurons)):
            cur = (x if k == 0 else delay_one_step(x)) @ lin.weight
            x = lif_scan(cur, neu.lif_params(), torch.as_tensor(neu.threshold, dtype=cur.dtype))
            spikes.append(x)
        self.last_hidden_spikes = spikes
        i_out = delay_one_step(x) @ self.readout.weight
        return leaky_readout(i_out, chip.decay_factor(self.readout_dash_syn), chip.decay_factor(self.readout_dash_mem),
                             self.readout_bias)

    def forward(self, events: torch.Tensor) -> torch.Tensor:
        # divided by the readout's DC gain so logits stay O(1) whatever the time constants;
        # a positive constant, so the class (argmax) on the chip is unaffected
        return logits_from_membrane(self.readout_membrane(events), self.readout_gain)

    @property
    def readout_gain(self) -> float:
        return readout_gain(self.readout_dash_syn, self.readout_dash_mem)

    def to_chipnet(self) -> ChipNet:
        """The float network in the chip's terms (`aspen_deploy.ir.ChipNet`), ready to quantize."""
        pops = [Population(f"hidden{k}", n.size_out, int(n.dash_syn), int(n.dash_mem), 1.0, np64(n.bias))
                for k, n in enumerate(self.neurons)]
        return layered_chipnet("aspen_synnet", self.spec, [np64(lin.weight) for lin in self.linears],
                               np64(self.readout.weight), pops, np64(self.readout_bias))


def _init(fan_in: int):
    """Weight initialiser for `LinearTorch` (called with the shape): `uniform_init`."""
    return lambda shape: uniform_init(fan_in, shape)
