"""Float network -> Xylo IMU integers: mapping, quantization and the design-rule check.

Every integer that reaches the chip is produced here and passed through `drc.require_valid`.

Mapping of a feed-forward stack in -> h1 -> ... -> hL -> readout:
- hidden neurons are numbered layer after layer; input weights feed the first |h1| neurons
  (input expansion = |h1|); the hidden matrix holds the blocks W_l at [layer l-1 rows, layer l
  columns]; readout rows are the last |hL| hidden neurons (output expansion = |hL|).
- one scale per destination population: the float model's threshold 1.0 becomes
  ``HIDDEN_THRESHOLD`` = 4096 for every hidden neuron, so 16-bit saturation at 32767 is the
  float model's `STATE_LIMIT` of 8.0. Each weight becomes ``round(W * 4096 / 2**shift)`` with
  the smallest per-matrix ``shift`` that keeps the largest weight within int8; bias
  ``round(b * 4096)``. Spikes are counts, so they need no scale.
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


def quantize_synnet(net: Any, calib_events: np.ndarray | None = None, calib_threshold: float = 0.6,
                    imu_if: dict | None = None, metadata: dict | None = None) -> XyloConfig:
    """Map and quantize a trained `models.aspen_synnet.AspenSynNet` to a checked `XyloConfig`.

    ``calib_events`` (N, T, 15) sets the readout scale from the largest readout membrane the
    float network produces at the lowest threshold the user is expected to sweep
    (``calib_threshold``; lower thresholds mean more spikes and larger membranes).
    """
    spec = net.spec
    layers = [lin.weight.detach().cpu().numpy().astype(np.float64) for lin in net.linears]
    biases = [neu.bias.detach().cpu().numpy().astype(np.float64) for neu in net.neurons]
    w_out = net.readout.weight.detach().cpu().numpy().astype(np.float64)
    b_out = net.readout_bias.detach().cpu().numpy().astype(np.float64)
    sizes = list(spec.hidden)
    n_hid = int(sum(sizes))
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    g = float(HIDDEN_THRESHOLD)

    # input matrix: input -> first hidden layer
    in_shift = choose_shift(np.abs(layers[0]).max() * g)
    w_in = quantize_matrix(layers[0] * g, in_shift, "input.weights")

    # hidden matrix: all hidden -> hidden blocks share one shift
    w_hid_f = np.zeros((n_hid, n_hid))
    for k in range(1, len(sizes)):
        w_hid_f[offsets[k - 1]:offsets[k], offsets[k]:offsets[k + 1]] = layers[k] * g
    hid_shift = choose_shift(np.abs(w_hid_f).max()) if len(sizes) > 1 else 0
    w_hid = quantize_matrix(w_hid_f, hid_shift, "hidden.weights")

    # readout scale from calibration data (the membrane is linear in the readout weights)
    g_out = _readout_scale(net, w_out, calib_events, calib_threshold)
    out_shift = choose_shift(np.abs(w_out).max() * g_out)
    w_ro = quantize_matrix(w_out * g_out, out_shift, "readout.weights")

    bias_h = _int16(np.concatenate(biases) * g)
    bias_o = _int16(b_out * g_out)
    dash_syn = np.concatenate([np.full(n, int(neu.dash_syn)) for n, neu in zip(sizes, net.neurons)])
    dash_mem = np.concatenate([np.full(n, int(neu.dash_mem)) for n, neu in zip(sizes, net.neurons)])
    hidden = NeuronParams(
        threshold=np.full(n_hid, HIDDEN_THRESHOLD, dtype=np.int64),
        v_mem_decay=dash_mem.astype(np.int64), i_syn_decay=dash_syn.astype(np.int64),
        v_mem_bias=bias_h, alias_target=[None] * n_hid,
    )
    readout = NeuronParams(
        threshold=np.full(spec.n_out, chip.THRESHOLD_MAX, dtype=np.int64),
        v_mem_decay=np.full(spec.n_out, net.readout_dash_mem, dtype=np.int64),
        i_syn_decay=np.full(spec.n_out, net.readout_dash_syn, dtype=np.int64),
        v_mem_bias=bias_o,
    )
    meta = {
        "hidden_threshold_for_float_1": HIDDEN_THRESHOLD,
        "readout_scale": g_out,
        "readout": "membrane averaged over the last 3/4 of the window; readout neurons do not spike",
        "layers": sizes,
        **(metadata or {}),
    }
    cfg = XyloConfig(
        input_weights=w_in, input_shift=in_shift, hidden_weights=w_hid, hidden_shift=hid_shift, hidden=hidden,
        readout_weights=w_ro, readout_shift=out_shift, readout=readout,
        bias_enable=bool(np.any(bias_h != 0) or np.any(bias_o != 0)), dt=spec.dt, imu_if=imu_if, metadata=meta,
    )
    require_valid(cfg)
    return cfg


def _readout_scale(net: Any, w_out: np.ndarray, calib_events: np.ndarray | None, calib_threshold: float) -> float:
    g_weights = (chip.WEIGHT_MAX * 2**chip.WEIGHT_SHIFT_MAX) / max(np.abs(w_out).max(), 1e-12)
    if calib_events is None or len(calib_events) == 0:
        return min(float(HIDDEN_THRESHOLD), g_weights)
    vmax = 0.0
    with torch.no_grad():
        net.set_threshold(torch.tensor(calib_threshold))
        for i in range(0, len(calib_events), 256):
            v = net.readout_membrane(torch.as_tensor(np.asarray(calib_events[i:i + 256]), dtype=torch.float32))
            vmax = max(vmax, float(v.abs().max()))
        net.set_threshold(1.0)
    if vmax <= 0:
        return min(float(HIDDEN_THRESHOLD), g_weights)
    # a power of two keeps the integers easy to read against the float model
    return float(min(2.0 ** math.floor(math.log2(READOUT_VMEM_TARGET / vmax)), g_weights))
