"""Design-rule checker: the one place that decides whether Xylo IMU accepts a `XyloConfig`.

`check(cfg)` returns every violation of the limits in `aspen_deploy.chip` (it never stops at
the first); `require_valid(cfg)` raises `DesignRuleError` carrying them. `Violation` and the
rule ids in `RULES` are the shared vocabulary for refusals: importers (NIR, other papers'
models) report what the chip cannot express with the same type, e.g. rule ``"unsupported"``.

Where one rule is broken by many elements of one matrix or register vector, it is reported
once, with the count and the first offending element, so that a report stays readable.

Index conventions (as in `aspen_deploy.config`): input weight column ``j`` feeds hidden
neuron ``j`` (the first ``N_ien`` neurons); readout weight row ``r`` is hidden neuron
``Nhid - N_oen + r`` (the last ``N_oen`` neurons); ``hidden.weights[pre][post]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from aspen_deploy import chip
from aspen_deploy.config import XyloConfig

CHIP_NAME = "Xylo IMU"

# Stable rule ids, with what each one guards. Importers reuse these ids.
RULES: dict[str, str] = {
    "inputs": f"at most {chip.MAX_INPUTS} input channels",
    "hidden-neurons": f"at most {chip.MAX_HIDDEN} hidden neurons",
    "outputs": f"at most {chip.MAX_OUTPUTS} readout neurons",
    "input-expansion": f"at most {chip.MAX_INPUT_EXPANSION} hidden neurons receive input weights",
    "output-expansion": f"at most {chip.MAX_OUTPUT_EXPANSION} hidden neurons project to the readout",
    "fan-out": f"at most {chip.MAX_FANOUT} non-zero outgoing weights per neuron",
    "recurrent-weights": f"at most {chip.MAX_RECURRENT_WEIGHTS} non-zero hidden->hidden weights",
    "weight-range": f"weights are int8 {chip.WEIGHT_MIN}..{chip.WEIGHT_MAX}",
    "weight-shift": f"weight_bit_shift is {chip.WEIGHT_SHIFT_MIN}..{chip.WEIGHT_SHIFT_MAX}",
    "threshold-range": f"thresholds are int16 {chip.THRESHOLD_MIN}..{chip.THRESHOLD_MAX}",
    "bias-range": f"biases are int16 {chip.BIAS_MIN}..{chip.BIAS_MAX}",
    "decay-range": f"v_mem_decay and i_syn_decay are {chip.DASH_MIN}..{chip.DASH_MAX}",
    "decay-zero": "i_syn_decay 0 on a neuron with input weights: its input never reaches vmem",
    "alias-target": "an alias target is another hidden neuron",
    "shape": "matrix and register-vector sizes agree with each other",
    "dt": "the time step is a positive number of seconds",
    "unsupported": "a node, layer or feature the chip cannot express",
}


@dataclass(frozen=True)
class Violation:
    """One way a model does not fit the chip.

    rule:   stable id from `RULES` (e.g. ``"hidden-neurons"``)
    limit:  the chip's number (``496``) or a phrase (``"int8 -128..127"``)
    needed: what the model needs (a number or a phrase)
    where:  layer, population, node or register (``"input.weights[3][17]"``, ``"hidden neuron 12"``)
    detail: optional extra context (how many elements, how to fix)
    """

    rule: str
    limit: int | str
    needed: int | str
    where: str
    detail: str | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown design rule {self.rule!r}; use one of: {', '.join(RULES)}")

    def message(self) -> str:
        """One line: ``"<rule>: the model needs <needed>; Xylo IMU has at most <limit> (<where>)"``."""
        if isinstance(self.limit, (int, np.integer)) and not isinstance(self.limit, bool):
            chip_side = f"{CHIP_NAME} has at most {int(self.limit)}"
        else:
            chip_side = f"{CHIP_NAME} allows {self.limit}"
        line = f"{self.rule}: the model needs {self.needed}; {chip_side} ({self.where})"
        if self.detail:
            line += f"; {self.detail}"
        return " ".join(line.split())  # one line whatever the parts contain

    def __str__(self) -> str:
        return self.message()


class DesignRuleError(ValueError):
    """A configuration (or model) the chip cannot take; ``violations`` lists every reason."""

    def __init__(self, violations: Sequence[Violation]):
        self.violations: list[Violation] = list(violations)
        super().__init__(self.violations)  # args = (violations,) so the error pickles across processes

    def __str__(self) -> str:
        return "\n".join(v.message() for v in self.violations)


# ---- helpers ---------------------------------------------------------------------------------


def _fmt(x: Any) -> str:
    """A number as a person would write it (integers without '.0')."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return repr(x)
    return str(int(f)) if math.isfinite(f) and f == int(f) else repr(f)


def _bad_integers(values: Any, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask of elements that are not integers in lo..hi, the values as an array).

    Non-numeric, non-finite and fractional entries count as out of range: the chip only holds
    integers, and a float that slipped past quantisation is as wrong as an overflow.
    """
    x = np.asarray(values)
    if x.dtype.kind in "iu":
        return (x < lo) | (x > hi), x
    try:
        xf = x.astype(np.float64)
    except (TypeError, ValueError):
        return np.ones(x.shape, dtype=bool), x
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(xf) | (xf != np.round(xf)) | (xf < lo) | (xf > hi)
    return bad, x


def _index_text(idx: tuple[int, ...]) -> str:
    return "".join(f"[{i}]" for i in idx)


def _range_rule(rule: str, name: str, values: Any, lo: int, hi: int, kind: str) -> list[Violation]:
    """At most one violation for an array: how many elements leave lo..hi, and the first one.

    ``name`` is the matrix ("hidden.weights") or a register template with ``{i}``
    ("hidden.neurons[{i}].threshold") for per-neuron vectors.
    """
    bad, x = _bad_integers(np.atleast_1d(values), lo, hi)
    n_bad = int(bad.sum())
    if n_bad == 0:
        return []
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    value = _fmt(x[first])
    if "{i}" in name:
        where = name.format(i=first[0])
        what = name.replace("[{i}]", "[]")
    else:
        where = f"{name}{_index_text(first)}"
        what = name
    needed = f"the value {value}" if n_bad == 1 else f"{n_bad} out-of-range values in {what}, the first {value}"
    return [Violation(rule, f"{kind} {lo}..{hi}", needed, where)]


def _count_rule(rule: str, count: int, limit: int, what: str, where: str, detail: str | None = None) -> list[Violation]:
    return [] if count <= limit else [Violation(rule, limit, f"{count} {what}", where, detail)]


def _is_int(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, (int, np.integer)):
        return True
    return isinstance(x, (float, np.floating)) and math.isfinite(x) and float(x).is_integer()


# ---- rules -----------------------------------------------------------------------------------


def _shape_rules(cfg: XyloConfig) -> tuple[list[Violation], bool]:
    """Sizes that must agree; returns (violations, whether connectivity can be analysed)."""
    out: list[Violation] = []
    mats = {
        "input.weights": np.asarray(cfg.input_weights),
        "hidden.weights": np.asarray(cfg.hidden_weights),
        "readout.weights": np.asarray(cfg.readout_weights),
    }
    for name, m in mats.items():
        if m.ndim != 2:
            out.append(Violation("shape", "a 2-D matrix", f"a {m.ndim}-D array of shape {m.shape}", name))
    if out:
        return out, False
    win, whid, wout = mats.values()
    n_hid = whid.shape[0]
    if whid.shape[1] != n_hid:
        out.append(Violation("shape", "a square [pre][post] matrix", f"shape {whid.shape}", "hidden.weights"))
        return out, False
    if win.shape[1] > n_hid:
        out.append(
            Violation("shape", f"at most one column per hidden neuron ({n_hid})", f"{win.shape[1]} columns", "input.weights")
        )
    if wout.shape[0] > n_hid:
        out.append(
            Violation("shape", f"at most one row per hidden neuron ({n_hid})", f"{wout.shape[0]} rows", "readout.weights")
        )
    for pop, params, n in (("hidden", cfg.hidden, n_hid), ("readout", cfg.readout, wout.shape[1])):
        regs = {k: getattr(params, k) for k in ("threshold", "v_mem_decay", "i_syn_decay", "v_mem_bias")}
        if pop == "hidden" and params.alias_target is not None:
            regs["alias_target"] = params.alias_target
        for k, vec in regs.items():
            shape = np.shape(vec) if k != "alias_target" else (len(vec),)
            if shape != (n,):
                out.append(
                    Violation("shape", f"one {k} per {pop} neuron ({n})", f"{k} of shape {shape}", f"{pop}.neurons")
                )
    return out, not out


def _size_rules(cfg: XyloConfig) -> list[Violation]:
    out: list[Violation] = []
    win, whid, wout = (np.asarray(a) for a in (cfg.input_weights, cfg.hidden_weights, cfg.readout_weights))
    if win.ndim == 2:
        out += _count_rule("inputs", win.shape[0], chip.MAX_INPUTS, "input channels", "input.weights rows")
        n_ien = win.shape[1]
        if n_ien > chip.MAX_INPUT_EXPANSION:
            used = np.flatnonzero(np.any(win != 0, axis=0))
            last = int(used[-1]) + 1 if used.size else 0
            hint = (
                f"only the first {last} columns hold non-zero weights: drop the rest"
                if last <= chip.MAX_INPUT_EXPANSION
                else "input weights may only reach the first hidden neurons"
            )
            out += _count_rule("input-expansion", n_ien, chip.MAX_INPUT_EXPANSION,
                               "hidden neurons receiving input", "input.weights columns", hint)
    if whid.ndim >= 1:
        out += _count_rule("hidden-neurons", whid.shape[0], chip.MAX_HIDDEN, "hidden neurons", "hidden.weights")
    if wout.ndim == 2:
        out += _count_rule("outputs", wout.shape[1], chip.MAX_OUTPUTS, "readout neurons", "readout.weights columns")
        n_oen = wout.shape[0]
        if n_oen > chip.MAX_OUTPUT_EXPANSION:
            used = np.flatnonzero(np.any(wout != 0, axis=1))
            first = int(used[0]) if used.size else n_oen
            hint = (
                f"the first {first} rows are all zero: drop them"
                if n_oen - first <= chip.MAX_OUTPUT_EXPANSION
                else "only the last hidden neurons may project to the readout"
            )
            out += _count_rule("output-expansion", n_oen, chip.MAX_OUTPUT_EXPANSION,
                               "hidden neurons projecting to the readout", "readout.weights rows", hint)
    return out


def _connectivity_rules(cfg: XyloConfig) -> list[Violation]:
    """Fan-out and recurrent-weight counts; needs consistent shapes (see `_shape_rules`).

    fan-out(input c)  = #{j : input.weights[c][j] != 0}
    fan-out(hidden i) = #{j : hidden.weights[i][j] != 0} + #{k : readout.weights[i - (Nhid - N_oen)][k] != 0}
    recurrent         = #{(i, j) : hidden.weights[i][j] != 0}
    """
    out: list[Violation] = []
    win, whid, wout = (np.asarray(a) for a in (cfg.input_weights, cfg.hidden_weights, cfg.readout_weights))
    n_hid = whid.shape[0]
    fan_in = np.count_nonzero(win, axis=1)
    fan_hid = np.count_nonzero(whid, axis=1)
    fan_hid[n_hid - wout.shape[0]:] += np.count_nonzero(wout, axis=1)
    for kind, fan, where in (("input channel", fan_in, "input.weights"),
                             ("hidden neuron", fan_hid, "hidden.weights + readout.weights")):
        over = np.flatnonzero(fan > chip.MAX_FANOUT)
        if over.size:
            worst = int(over[np.argmax(fan[over])])
            detail = None if over.size == 1 else f"{over.size} {kind}s exceed it; the worst is shown"
            out.append(Violation("fan-out", chip.MAX_FANOUT, f"{int(fan[worst])} non-zero outgoing weights",
                                 f"{kind} {worst}, {where}", detail))
    out += _count_rule("recurrent-weights", int(np.count_nonzero(whid)), chip.MAX_RECURRENT_WEIGHTS,
                       "non-zero recurrent weights", "hidden.weights")
    return out


def _register_rules(cfg: XyloConfig) -> list[Violation]:
    out: list[Violation] = []
    for name, w in (("input", cfg.input_weights), ("hidden", cfg.hidden_weights), ("readout", cfg.readout_weights)):
        out += _range_rule("weight-range", f"{name}.weights", w, chip.WEIGHT_MIN, chip.WEIGHT_MAX, "int8")
    for name, s in (("input", cfg.input_shift), ("hidden", cfg.hidden_shift), ("readout", cfg.readout_shift)):
        if not (_is_int(s) and chip.WEIGHT_SHIFT_MIN <= int(s) <= chip.WEIGHT_SHIFT_MAX):
            out.append(Violation("weight-shift", f"a left shift of {chip.WEIGHT_SHIFT_MIN}..{chip.WEIGHT_SHIFT_MAX}",
                                 f"a shift of {_fmt(s)}", f"{name}.weight_bit_shift"))
    for pop, p in (("hidden", cfg.hidden), ("readout", cfg.readout)):
        reg = f"{pop}.neurons[{{i}}]"
        out += _range_rule("threshold-range", reg + ".threshold", p.threshold, chip.THRESHOLD_MIN, chip.THRESHOLD_MAX, "int16")
        out += _range_rule("bias-range", reg + ".v_mem_bias", p.v_mem_bias, chip.BIAS_MIN, chip.BIAS_MAX, "int16")
        for k in ("v_mem_decay", "i_syn_decay"):
            out += _range_rule("decay-range", reg + f".{k}", getattr(p, k), chip.DASH_MIN, chip.DASH_MAX, "dash")
    return out


def _receives_input(cfg: XyloConfig) -> tuple[np.ndarray, np.ndarray]:
    """Boolean per hidden and per readout neuron: has at least one non-zero incoming weight."""
    win, whid, wout = (np.asarray(a) for a in (cfg.input_weights, cfg.hidden_weights, cfg.readout_weights))
    hid = np.any(whid != 0, axis=0)
    hid[: win.shape[1]] |= np.any(win != 0, axis=0)
    return hid, np.any(wout != 0, axis=0)


def _decay_zero_rule(cfg: XyloConfig) -> list[Violation]:
    """i_syn_decay = 0 on a neuron with input weights.

    Per step ``isyn = decay(isyn + Σ w·x, dash_syn)`` and ``decay(v, 0) = v - v = 0``, so the
    synaptic current is zeroed before it reaches vmem: the neuron is deaf to its weights
    (measured on xylosim 0.1.3). ``v_mem_decay = 0`` is allowed: it makes vmem = isyn + bias
    each step, a memoryless neuron that still responds to input.
    """
    out: list[Violation] = []
    for pop, p, receives in zip(("hidden", "readout"), (cfg.hidden, cfg.readout), _receives_input(cfg)):
        dash = np.asarray(p.i_syn_decay)
        try:
            deaf = np.flatnonzero(receives & (dash.astype(np.float64) == 0))
        except (TypeError, ValueError):
            continue  # non-numeric registers are reported by decay-range
        if deaf.size:
            first = int(deaf[0])
            needed = "i_syn_decay 0 on a neuron with input weights" if deaf.size == 1 else (
                f"i_syn_decay 0 on {deaf.size} {pop} neurons with input weights")
            out.append(Violation("decay-zero", f"i_syn_decay 1..{chip.DASH_MAX} on such neurons", needed,
                                 f"{pop}.neurons[{first}].i_syn_decay",
                                 "dash 0 zeroes the synaptic current every step, so input never reaches vmem"))
    return out


def _alias_rule(cfg: XyloConfig, n_hid: int) -> list[Violation]:
    aliases = cfg.hidden.alias_target
    if aliases is None:
        return []
    bad = [(i, a) for i, a in enumerate(aliases)
           if a is not None and not (_is_int(a) and 0 <= int(a) < n_hid and int(a) != i)]
    if not bad:
        return []
    i, a = bad[0]
    why = "itself" if _is_int(a) and int(a) == i else _fmt(a)
    needed = f"hidden neuron {i} aliased to {why}"
    if len(bad) > 1:
        needed = f"{len(bad)} invalid alias targets, the first {needed}"
    return [Violation("alias-target", f"another hidden neuron 0..{n_hid - 1}", needed, f"hidden.neurons[{i}].alias_target")]


def _dt_rule(cfg: XyloConfig) -> list[Violation]:
    try:
        ok = math.isfinite(float(cfg.dt)) and float(cfg.dt) > 0
    except (TypeError, ValueError):
        ok = False
    return [] if ok else [Violation("dt", "a positive, finite time step in seconds", f"dt = {_fmt(cfg.dt)}", "dt")]


# ---- public API ------------------------------------------------------------------------------


def check(cfg: XyloConfig) -> list[Violation]:
    """Every way ``cfg`` breaks a Xylo IMU limit (`aspen_deploy.chip`); empty when the chip takes it.

    Rules: sizes (inputs, hidden-neurons, outputs, input-/output-expansion), connectivity
    (fan-out, recurrent-weights), integer registers (weight-range, weight-shift,
    threshold-range, bias-range, decay-range), decay-zero, alias-target, shape, dt.
    Rules that need consistent matrix shapes are skipped when the shape rule fails.
    """
    shape, consistent = _shape_rules(cfg)
    out = _size_rules(cfg) + shape
    if consistent:
        out += _connectivity_rules(cfg)
    out += _register_rules(cfg)
    if consistent:
        out += _decay_zero_rule(cfg)
    hid = np.asarray(cfg.hidden_weights)
    out += _alias_rule(cfg, hid.shape[0] if hid.ndim >= 1 else 0)
    out += _dt_rule(cfg)
    return out


def require_valid(cfg: XyloConfig) -> XyloConfig:
    """Return ``cfg`` unchanged if the chip takes it; else raise `DesignRuleError` listing every violation."""
    violations = check(cfg)
    if violations:
        raise DesignRuleError(violations)
    return cfg


__all__ = ["RULES", "Violation", "DesignRuleError", "check", "require_valid"]
