"""Float network -> Xylo IMU integers: mapping, quantization and the design-rule check.

Every integer that reaches the chip is produced here and passed through `drc.require_valid`.

Mapping of a `ChipNet` (populations in chip order, weight blocks between them):
- hidden neurons are numbered population after population; input weights feed the populations
  that receive input (they come first: input expansion); each hidden->hidden block (recurrent
  ones included) lands at [source rows, destination columns]; readout rows are the hidden
  neurons from the first readout source to the last (output expansion).
- one scale per destination population: its float threshold becomes ``HIDDEN_THRESHOLD`` =
  4096, so 16-bit saturation at 32767 is the float model's `STATE_LIMIT` of 8.0 at threshold
  1.0. Each weight becomes ``round(W * g / 2**shift)`` with the smallest per-matrix ``shift``
  that keeps the largest weight within int8; bias ``round(b * g)``. Spikes are counts, so
  they need no scale.
- the readout does not spike (threshold = int16 maximum); its scale is chosen so the largest
  readout membrane seen on calibration data stays under ``READOUT_VMEM_TARGET``.

Unlike Rockpool's quantizers this keeps the hidden biases, scales the readout bias with the
readout's own scale, and leaves all limit checking to our checker.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from aspen_deploy import chip
from aspen_deploy.config import NeuronParams, XyloConfig
from aspen_deploy.drc import require_valid
from aspen_deploy.ir import INPUT, READOUT, ChipNet

HIDDEN_THRESHOLD = 4096  # integer threshold for the float threshold 1.0
READOUT_VMEM_TARGET = 24_000  # largest calibration readout membrane, leaves headroom to 32767


def choose_shift(max_abs_scaled: float) -> int:
    """Smallest left shift s in 0..7 with max_abs_scaled / 2**s <= 127 (7 if none is enough)."""
    for s in range(chip.WEIGHT_SHIFT_MAX + 1):
        if max_abs_scaled / 2**s <= chip.WEIGHT_MAX + 0.5:
            return s
    return chip.WEIGHT_SHIFT_MAX


def quantize_matrix(w_scaled: np.ndarray, shift: int, where: str) -> np.ndarray:
    """round(w_scaled / 2**shift) as int8; values that still do not fit are clipped with a warning."""
    q = np.round(w_scaled / 2**shift)
    n_clip = int(np.sum((q < chip.WEIGHT_MIN) | (q > chip.WEIGHT_MAX)))
    if n_clip:
        warnings.warn(f"{where}: {n_clip} weight(s) exceed int8 even at shift {shift} and were clipped", stacklevel=2)
    return np.clip(q, chip.WEIGHT_MIN, chip.WEIGHT_MAX).astype(np.int64)


def _int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), chip.BIAS_MIN, chip.BIAS_MAX).astype(np.int64)


def quantize(net: ChipNet, readout_vmax: float | None = None, imu_if: dict | None = None,
             metadata: dict | None = None) -> XyloConfig:
    """Map and quantize a `ChipNet` to a checked `XyloConfig` (rules in the module docstring).

    ``readout_vmax``: the largest |readout membrane| the float network reaches on calibration
    data, in float units; it sets the readout scale (None: the weights alone decide).
    Populations receiving input must come first and the readout's sources last (chip order);
    a net that breaks that, or any chip limit, is refused by the design-rule checker.
    """
    pops = net.populations
    offs = net.offsets()
    n_hid = net.n_hidden
    # one scale per destination population: its float threshold becomes HIDDEN_THRESHOLD
    g = np.array([HIDDEN_THRESHOLD / p.threshold for p in pops])

    in_edges = [e for e in net.edges if e.src == INPUT]
    hid_edges = [e for e in net.edges if e.src != INPUT and e.dst != READOUT]
    out_edges = [e for e in net.edges if e.dst == READOUT]
    n_ien = max([offs[e.dst] + pops[e.dst].size for e in in_edges], default=0)
    w_in_f = np.zeros((net.n_in, n_ien))
    for e in in_edges:
        w_in_f[:, offs[e.dst]:offs[e.dst + 1]] += e.weight * g[e.dst]
    w_hid_f = np.zeros((n_hid, n_hid))
    for e in hid_edges:
        w_hid_f[offs[e.src]:offs[e.src + 1], offs[e.dst]:offs[e.dst + 1]] += e.weight * g[e.dst]
    first_src = min([offs[e.src] for e in out_edges], default=n_hid)
    w_out_raw = np.zeros((n_hid - first_src, net.readout.size))
    for e in out_edges:
        w_out_raw[offs[e.src] - first_src:offs[e.src + 1] - first_src] += e.weight

    in_shift = choose_shift(np.abs(w_in_f).max(initial=0.0))
    w_in = quantize_matrix(w_in_f, in_shift, "input.weights")
    hid_shift = choose_shift(np.abs(w_hid_f).max(initial=0.0))
    w_hid = quantize_matrix(w_hid_f, hid_shift, "hidden.weights")
    g_out = _readout_scale(np.abs(w_out_raw).max(initial=0.0), readout_vmax)
    out_shift = choose_shift(np.abs(w_out_raw).max(initial=0.0) * g_out)
    w_ro = quantize_matrix(w_out_raw * g_out, out_shift, "readout.weights")

    def per_neuron(f) -> np.ndarray:
        return np.concatenate([np.full(p.size, f(k, p), dtype=np.float64) for k, p in enumerate(pops)]) \
            if pops else np.zeros(0)

    bias_f = np.concatenate([(p.bias if p.bias is not None else np.zeros(p.size)) * g[k] for k, p in enumerate(pops)]) \
        if pops else np.zeros(0)
    bias_h = _int16(bias_f)
    rb = net.readout.bias if net.readout.bias is not None else np.zeros(net.readout.size)
    bias_o = _int16(rb * g_out)
    hidden = NeuronParams(
        threshold=_int16(per_neuron(lambda k, p: HIDDEN_THRESHOLD)),
        v_mem_decay=per_neuron(lambda k, p: p.dash_mem).astype(np.int64),
        i_syn_decay=per_neuron(lambda k, p: p.dash_syn).astype(np.int64),
        v_mem_bias=bias_h, alias_target=[None] * n_hid,
    )
    readout = NeuronParams(
        threshold=np.full(net.readout.size, chip.THRESHOLD_MAX, dtype=np.int64),
        v_mem_decay=np.full(net.readout.size, net.readout.dash_mem, dtype=np.int64),
        i_syn_decay=np.full(net.readout.size, net.readout.dash_syn, dtype=np.int64),
        v_mem_bias=bias_o,
    )
    meta = {
        "hidden_threshold_for_float_threshold": HIDDEN_THRESHOLD,
        "readout_scale": g_out,
        "readout": "membrane averaged over the last 3/4 of the window; readout neurons do not spike",
        "populations": [{"name": p.name, "size": p.size, "float_threshold": p.threshold} for p in pops],
        **(metadata or {}),
    }
    cfg = XyloConfig(
        input_weights=w_in, input_shift=in_shift, hidden_weights=w_hid, hidden_shift=hid_shift, hidden=hidden,
        readout_weights=w_ro, readout_shift=out_shift, readout=readout,
        bias_enable=bool(np.any(bias_h != 0) or np.any(bias_o != 0)), dt=net.dt, imu_if=imu_if, metadata=meta,
    )
    require_valid(cfg)
    return cfg


def readout_vmax(model: Any, calib_events: np.ndarray, threshold: float = 0.6, batch: int = 256) -> float:
    """Largest |readout membrane| of a float model (``model.readout_membrane``) on calibration windows.

    Taken at a low threshold (``threshold``): lower thresholds mean more spikes and larger
    membranes, and users sweep down to about 0.6.
    """
    vmax = 0.0
    with torch.no_grad():
        model.set_threshold(torch.tensor(threshold))
        for i in range(0, len(calib_events), batch):
            v = model.readout_membrane(torch.as_tensor(np.asarray(calib_events[i:i + batch]), dtype=torch.float32))
            vmax = max(vmax, float(v.abs().max()))
        model.set_threshold(1.0)
    return vmax


def _readout_scale(max_abs_w: float, vmax: float | None) -> float:
    g_weights = (chip.WEIGHT_MAX * 2**chip.WEIGHT_SHIFT_MAX) / max(max_abs_w, 1e-12)
    if not vmax or vmax <= 0:
        return float(min(HIDDEN_THRESHOLD, g_weights))
    # a power of two keeps the integers easy to read against the float model
    return float(min(2.0 ** math.floor(math.log2(READOUT_VMEM_TARGET / vmax)), g_weights))
