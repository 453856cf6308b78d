"""Xylo IMU power: a calibratable model (`PowerModel`) and its calibration fit.

Measurement lives in `aspen_deploy.devices` (virtual device, HDK) and
`aspen_deploy.power_sweep` (power against threshold).
"""

from aspen_deploy.power.model import (
    DEFAULT_SOURCES,
    PUBLISHED_CLOCK_MHZ,
    PUBLISHED_CORE_ACTIVE_UW,
    PUBLISHED_CORE_IDLE_UW,
    PUBLISHED_DT_S,
    PUBLISHED_IO_UW,
    REFERENCE_CYCLES_PER_STEP,
    FitReport,
    PowerEstimate,
    PowerModel,
    PowerModelError,
    fit_power_model,
)

__all__ = [
    "DEFAULT_SOURCES", "PUBLISHED_CLOCK_MHZ", "PUBLISHED_CORE_ACTIVE_UW", "PUBLISHED_CORE_IDLE_UW", "PUBLISHED_DT_S",
    "PUBLISHED_IO_UW", "REFERENCE_CYCLES_PER_STEP", "FitReport", "PowerEstimate", "PowerModel", "PowerModelError",
    "fit_power_model",
]
