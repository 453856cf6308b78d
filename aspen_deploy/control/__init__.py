"""Runtime control: keep a device under a power budget by moving the threshold scale and the clock.

* `aspen_deploy.control.controller`: the pure decision logic, ``step(state, measurement, budget)
  -> (state, Decision)``, with its prior (the power sweep), feedback correction, hysteresis,
  write-rate limit, register range checks, fallback and infeasible-budget warning;
* `aspen_deploy.control.stream`: the continuous IMU stream (test recordings end to end at
  200 Hz), chunked front end, control periods and readout windows;
* `aspen_deploy.control.run`: ``run_control`` (`aspen control`): the controller, the fixed
  nominal threshold and the best static threshold in hindsight on one stream and budget.
"""

from aspen_deploy.control.controller import (ControlError, Controller, ControllerContext, ControllerSettings,
                                             ControllerState, Decision, Measurement, OperatingPoint, RegisterLimits,
                                             RegisterRangeError, init_state, make_context, points_from_rows, step)
from aspen_deploy.control.run import (BudgetTrace, BudgetTraceError, format_summary, parse_budget_trace,
                                      read_budget_trace, run_control, write_budget_trace)

__all__ = ["BudgetTrace", "BudgetTraceError", "ControlError", "Controller", "ControllerContext", "ControllerSettings",
           "ControllerState", "Decision", "Measurement", "OperatingPoint", "RegisterLimits", "RegisterRangeError",
           "format_summary", "init_state", "make_context", "parse_budget_trace", "points_from_rows",
           "read_budget_trace", "run_control", "step", "write_budget_trace"]
