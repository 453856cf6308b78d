"""Xylo IMU (SYNS63300) resource limits and integer ranges: the one table of chip facts.

Every other module reads limits from here; the design-rule checker (`aspen_deploy.drc`)
enforces them. Source: Rockpool's Xylo IMU documentation and measurements on xylosim 0.1.3
(see shared DESIGN.md, "Xylo IMU resources" and "Xylo core integer semantics").
"""

from __future__ import annotations

DT_S = 0.005  # one chip time step = one IMU interface sample at 200 Hz
IMU_FS_HZ = 200.0

MAX_INPUTS = 16
MAX_HIDDEN = 496
MAX_OUTPUTS = 16
MAX_INPUT_EXPANSION = 128  # hidden neurons that may receive input weights (the first ones)
MAX_OUTPUT_EXPANSION = 128  # hidden neurons that may project to the readout (the last ones)
MAX_FANOUT = 512  # non-zero outgoing weights per neuron (input, hidden and readout targets)
MAX_RECURRENT_WEIGHTS = 31_744  # non-zero hidden->hidden weights in total

WEIGHT_MIN, WEIGHT_MAX = -128, 127  # int8 weights
WEIGHT_SHIFT_MIN, WEIGHT_SHIFT_MAX = 0, 7  # per-matrix left shift
THRESHOLD_MIN, THRESHOLD_MAX = -(2**15), 2**15 - 1  # int16
BIAS_MIN, BIAS_MAX = -(2**15), 2**15 - 1  # int16
STATE_MIN, STATE_MAX = -(2**15), 2**15 - 1  # isyn and vmem saturate here
DASH_MIN, DASH_MAX = 0, 15  # bit-shift decay; 0 zeroes the state every step
MAX_HIDDEN_SPIKES_PER_STEP = 31
MAX_OUTPUT_SPIKES_PER_STEP = 1
MAX_INPUT_COUNT = 15  # events per input channel per step (IMU IF encoder output)

# Core clock: 100 / (2 (k + 1)) MHz, k = 0..7 -> 50, 25, 16.7, 12.5, 10, 8.33, 7.14, 6.25 MHz
CLOCK_DIVIDERS = tuple(range(8))
CLOCKS_MHZ = tuple(100.0 / (2 * (k + 1)) for k in CLOCK_DIVIDERS)

# IMU interface (IMUIF): 3 axes x 5 band-pass filters -> 15 channels
IMU_AXES = 3
IMU_FILTERS_PER_AXIS = 5
IMU_CHANNELS = IMU_AXES * IMU_FILTERS_PER_AXIS


def dash_from_tau(tau_s: float, dt_s: float = DT_S) -> int:
    """Bit-shift decay for a time constant: dash = round(log2(tau / dt)) (Rockpool's mapper rule).

    The chip decays a state by ``v - (v >> dash)`` per step, i.e. by a factor
    ``1 - 2**-dash`` ~ ``exp(-dt / tau)`` when ``tau = dt * 2**dash``. Needs ``tau > dt``.
    """
    import math

    if not tau_s > dt_s:
        raise ValueError(f"time constant {tau_s * 1e3:.3g} ms must exceed the chip step dt = {dt_s * 1e3:.3g} ms")
    return int(round(math.log2(tau_s / dt_s)))


def decay_factor(dash: int) -> float:
    """The float factor that the integer decay ``v - (v >> dash)`` approximates."""
    return 0.0 if dash == 0 else 1.0 - 2.0 ** (-dash)
