"""`XyloSimBackend`: the bit-accurate reference, Rockpool's ``XyloSim`` (xylosim 0.1.3), one window at a time.

The network is built by `aspen_deploy.rockpool_compat.xylosim_from_config` (samna-named
attribute objects into ``XyloSim.from_config``; alias 0 kept, see that module). Each window
starts from reset state (``reset_state``: vmem, isyn and the spike buffers to zero). Outputs
come from one ``evolve(..., record=True)``: readout spikes (``output_mode="Spike"``), readout
membrane (``Vmem_out``) and hidden spikes (``Spikes``, alias copies included) per step.

Threshold scaling edits the simulator in place: ``_xylo_layer.iaf_neurons[i].v_th`` (pybind
hands out references to the C++ neurons, so the assignment sticks; `set_threshold_scale`
reads the values back and raises if it did not). Input counts are clipped to 0..15 here as
the chip does (xylosim itself clips at 15 but cannot take counts above 255).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aspen_deploy import chip
from aspen_deploy.backends.base import RunResult, check_events, predict_from_vmem
from aspen_deploy.backends.cycles import CycleShape, cycles_from_activity
from aspen_deploy.config import XyloConfig


class XyloSimBackend:
    """Reference backend through Rockpool's xylosim-backed ``XyloSim`` (slow: ~0.1 ms per step)."""

    name = "xylosim"

    def __init__(self) -> None:
        self._config: XyloConfig | None = None
        self._sim: Any = None
        self._shape: CycleShape | None = None

    def load(self, config: XyloConfig) -> None:
        from aspen_deploy.rockpool_compat import xylosim_from_config

        self._sim = xylosim_from_config(config, output_mode="Spike")
        self._config = config
        self._shape = CycleShape.of(config)

    def set_threshold_scale(self, scale: float) -> None:
        if self._config is None:
            raise RuntimeError("load a configuration before setting the threshold scale")
        scaled = self._config.with_threshold_scale(scale)
        neurons = self._sim._xylo_layer.iaf_neurons
        for i, thr in enumerate(scaled.hidden.threshold):
            neurons[i].v_th = int(thr)
        got = [int(n.v_th) for n in self._sim._xylo_layer.iaf_neurons]
        if got != [int(v) for v in scaled.hidden.threshold]:  # pragma: no cover - a xylosim binding change
            raise RuntimeError("xylosim did not accept the new thresholds in place; rebuild needed")

    def run(self, events: np.ndarray) -> RunResult:
        if self._config is None:
            raise RuntimeError("load a configuration before running the xylosim backend")
        x = np.minimum(check_events(events, self._config.n_inputs), chip.MAX_INPUT_COUNT)
        n, t, _ = x.shape
        n_out, n_hid = self._config.n_outputs, self._config.n_hidden
        spikes = np.zeros((n, t, n_out), np.int64)
        vmem = np.zeros((n, t, n_out), np.int64)
        counts = np.zeros((n, n_hid), np.int64)
        active = np.zeros((n, t), np.int64)
        for i in range(n):
            self._sim.reset_state()
            out, _, rec = self._sim.evolve(x[i], record=True)
            spikes[i] = np.asarray(out).reshape(t, n_out)
            vmem[i] = np.asarray(rec["Vmem_out"]).reshape(t, n_out)
            hid = np.asarray(rec["Spikes"]).reshape(t, n_hid)
            counts[i] = hid.sum(axis=0)
            active[i] = np.count_nonzero(hid, axis=1)
        self._sim.reset_state()
        assert self._shape is not None
        return RunResult(
            output_spikes=spikes,
            readout_vmem=vmem,
            hidden_spike_counts=counts,
            cycles_per_step=cycles_from_activity(self._shape, np.count_nonzero(x, axis=-1), active),
            prediction=predict_from_vmem(vmem),
        )
