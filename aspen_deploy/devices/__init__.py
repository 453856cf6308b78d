"""Devices: the backend protocol plus a clock, a power monitor and a lifetime (open/close).

A `Device` runs a `XyloConfig` like any `Backend` (``load``, ``set_threshold_scale``,
``run`` -> `RunResult`) and adds: ``open``/``close`` (also as a context manager),
``set_clock`` (one of `chip.CLOCKS_MHZ`), ``stream`` (one continuous recording, state kept
between chunks) and ``power_samples`` (per-rail samples over the last run or stream, at the
monitor rate). Two devices:

* ``virtual``: the fast bit-exact simulator plus the power model; its power is always
  ``power_source = "modelled"`` (`aspen_deploy.devices.virtual`).
* ``hdk``: a Xylo IMU HDK through samna, the one module that imports samna;
  ``power_source = "measured"`` (`aspen_deploy.devices.samna_hdk`).

Errors a user can meet with hardware are one-line `DeviceError`s (a RuntimeError); bad
arguments (an illegal clock, an unknown device name) are `ValueError`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Protocol, runtime_checkable

import numpy as np

from aspen_deploy import chip
from aspen_deploy.backends.base import RunResult
from aspen_deploy.config import XyloConfig

DEFAULT_MONITOR_HZ = 5.0  # Rockpool's XyloSamna / set_power_measure default power_frequency
DEVICE_NAMES = ("virtual", "hdk")


# ---- errors ------------------------------------------------------------------------------
class DeviceError(RuntimeError):
    """A device problem the user can fix (missing library, no board, board lost); one line."""


class ClockError(ValueError):
    """A core clock the chip cannot run at."""


class DeviceArgumentError(ValueError):
    """An unknown device name or an option that does not apply to the chosen device."""


# ---- power samples -----------------------------------------------------------------------
@dataclass(frozen=True)
class PowerSamples:
    """Per-rail power samples (uW) at times ``t_s`` (s from the start of the run), one per monitor tick."""

    t_s: np.ndarray
    core_uw: np.ndarray
    io_uw: np.ndarray

    def __post_init__(self) -> None:
        n = {len(self.t_s), len(self.core_uw), len(self.io_uw)}
        if len(n) != 1:
            raise ValueError(f"power sample arrays differ in length: t {len(self.t_s)}, core {len(self.core_uw)}, "
                             f"io {len(self.io_uw)}")

    def __len__(self) -> int:
        return len(self.t_s)

    @staticmethod
    def empty() -> "PowerSamples":
        z = np.zeros(0)
        return PowerSamples(z, z, z)

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation per rail and of the total; NaN when there are no samples."""
        def stat(fn: Any, v: np.ndarray) -> float:
            return float(fn(v)) if len(v) else float("nan")

        total = self.core_uw + self.io_uw
        return {"core_uw": stat(np.mean, self.core_uw), "core_uw_std": stat(np.std, self.core_uw),
                "io_uw": stat(np.mean, self.io_uw), "io_uw_std": stat(np.std, self.io_uw),
                "total_uw": stat(np.mean, total), "total_uw_std": stat(np.std, total),
                "power_samples": float(len(self))}


# ---- the protocol ------------------------------------------------------------------------
@runtime_checkable
class Device(Protocol):
    """A superset of `aspen_deploy.backends.base.Backend`: a clock, power samples and a lifetime."""

    name: str
    power_source: str  # "modelled" or "measured"
    monitor_hz: float

    def open(self) -> "Device":
        """Connect (find the board, start the monitor); returns self."""

    def close(self) -> None:
        """Release the hardware; safe to call twice."""

    def load(self, config: XyloConfig) -> None:
        """Convert, validate and apply a configuration (state reset)."""

    def set_threshold_scale(self, scale: float) -> None:
        """Scale the hidden thresholds of the loaded configuration and apply it again."""

    def set_clock(self, mhz: float) -> float:
        """Set the core clock (one of `chip.CLOCKS_MHZ`); returns the clock set."""

    @property
    def clock_mhz(self) -> float:
        """The core clock now set."""

    def run(self, events: np.ndarray, record_activity: bool = True) -> RunResult:
        """(N, T, Nin) windows, each from reset state. With ``record_activity`` False the device may
        skip reading hidden spikes (cheaper and, on the HDK, lower power): ``hidden_spike_counts``
        and ``cycles_per_step`` are then NaN-filled. Power samples cover this run."""

    def stream(self, chunks: Iterable[np.ndarray]) -> Iterator[RunResult]:
        """One continuous recording in (T_i, Nin) chunks, state kept between chunks; one result per
        chunk (N = 1). Power samples cover the whole stream."""

    def power_samples(self) -> PowerSamples:
        """Power per rail over the last run or stream."""

    @property
    def steps_per_s(self) -> float:
        """Time steps processed per second during the last run (1 / dt in real time)."""


class DeviceBase:
    """Shared plumbing: context manager and clock checking."""

    name = "device"
    power_source = "modelled"
    monitor_hz = DEFAULT_MONITOR_HZ
    default_windows: int | None = None  # None: the run's profile decides

    def open(self) -> "DeviceBase":
        return self

    def close(self) -> None:
        pass

    def __enter__(self) -> "DeviceBase":
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def check_clock(mhz: Any) -> float:
    """The chip clock equal to ``mhz`` (to 0.01 MHz, so 16.67 means 100/6); `ClockError` otherwise."""
    try:
        f = float(mhz)
    except (TypeError, ValueError):
        f = float("nan")
    for c in chip.CLOCKS_MHZ:
        if abs(f - c) < 0.01:
            return c
    legal = ", ".join(f"{c:.4g}" for c in chip.CLOCKS_MHZ)
    raise ClockError(f"{mhz!r} MHz is not a Xylo IMU core clock (100 / (2 (k + 1)) MHz); use one of {legal}")


def parse_clock(spec: str | float) -> float | str:
    """``"auto"`` or a legal clock in MHz (for ``--clock``)."""
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        return "auto"
    return check_clock(spec)


def open_device(name: str, board: str | None = None, *, power_model: Any = None, noise_uw: float = 0.0,
                monitor_hz: float = DEFAULT_MONITOR_HZ, seed: int = 0) -> Device:
    """Create and open a device by name: "virtual" or "hdk" (``board``: index or serial, hdk only).

    ``power_model`` and ``noise_uw``/``seed`` shape the virtual device's modelled samples; the
    HDK measures, and uses ``power_model`` only for the modelled comparison columns.
    """
    if not monitor_hz > 0:
        raise DeviceArgumentError(f"the power monitor rate must be positive (Hz), got {monitor_hz}")
    if name == "virtual":
        if board is not None:
            raise DeviceArgumentError("--board only applies to --device hdk")
        from aspen_deploy.devices.virtual import VirtualDevice

        return VirtualDevice(power_model=power_model, noise_uw=noise_uw, monitor_hz=monitor_hz, seed=seed).open()
    if name == "hdk":
        if noise_uw:
            raise DeviceArgumentError("--noise-uw only applies to --device virtual (the HDK's noise is real)")
        from aspen_deploy.devices.samna_hdk import HdkDevice

        return HdkDevice(board=board, monitor_hz=monitor_hz).open()
    raise DeviceArgumentError(f"unknown device {name!r}: choose one of {', '.join(DEVICE_NAMES)}")


__all__ = ["DEFAULT_MONITOR_HZ", "DEVICE_NAMES", "ClockError", "Device", "DeviceArgumentError", "DeviceBase",
           "DeviceError", "PowerSamples", "check_clock", "open_device", "parse_clock"]
