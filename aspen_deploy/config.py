"""`XyloConfig`: the integer configuration of a Xylo IMU core, as written to `xylo_config.json`.

Field names follow samna's `samna.xyloImu.configuration.XyloConfiguration`
(`input/hidden/readout.weights`, `weight_bit_shift`, neuron `threshold`, `v_mem_decay`,
`i_syn_decay`, `v_mem_bias`, `alias_target`). Readout weight rows refer to the *last*
`N_oen` hidden neurons, as samna and Rockpool's `XyloSim.from_config` read them.

This module only holds and (de)serialises the artifact; `aspen_deploy.drc` decides whether
the chip can take it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aspen_deploy import chip
from aspen_deploy.io import atomic_write_text

FORMAT = "aspen-xylo-imu/1"


class ConfigFormatError(ValueError):
    """A configuration file that is not a readable aspen-xylo-imu/1 document."""


@dataclass
class NeuronParams:
    """Per-neuron integer registers (vectors over the neurons of one population)."""

    threshold: np.ndarray
    v_mem_decay: np.ndarray  # dash_mem
    i_syn_decay: np.ndarray  # dash_syn
    v_mem_bias: np.ndarray
    alias_target: list[int | None] | None = None  # hidden only

    def __len__(self) -> int:
        return len(self.threshold)


@dataclass
class XyloConfig:
    """Integers for one Xylo IMU core.

    Shapes: ``input_weights`` (Nin, N_ien), ``hidden_weights`` (Nhid, Nhid) as [pre][post],
    ``readout_weights`` (N_oen, Nout) whose rows are the last N_oen hidden neurons.
    """

    input_weights: np.ndarray
    input_shift: int
    hidden_weights: np.ndarray
    hidden_shift: int
    hidden: NeuronParams
    readout_weights: np.ndarray
    readout_shift: int
    readout: NeuronParams
    bias_enable: bool = False
    dt: float = chip.DT_S
    imu_if: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_inputs(self) -> int:
        return int(self.input_weights.shape[0])

    @property
    def n_hidden(self) -> int:
        return int(self.hidden_weights.shape[0])

    @property
    def n_outputs(self) -> int:
        return int(self.readout_weights.shape[1])

    @property
    def n_input_expansion(self) -> int:
        return int(self.input_weights.shape[1])

    @property
    def n_output_expansion(self) -> int:
        return int(self.readout_weights.shape[0])

    def with_threshold_scale(self, scale: float) -> "XyloConfig":
        """A copy whose hidden thresholds are ``round(scale * threshold)``, clipped to int16.

        The readout thresholds are left as they are: the readout is the classifier, and the
        threshold knob is meant to trade hidden-layer activity for accuracy.
        """
        import copy

        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"threshold scale must be a positive number, got {scale}")
        out = copy.deepcopy(self)
        thr = np.round(self.hidden.threshold.astype(np.float64) * scale)
        # a positive threshold stays >= 1: the chip fires 31 spikes every step at threshold <= 0
        lo = np.where(self.hidden.threshold > 0, 1, chip.THRESHOLD_MIN)
        out.hidden.threshold = np.clip(thr, lo, chip.THRESHOLD_MAX).astype(np.int64)
        out.metadata = dict(self.metadata, threshold_scale=float(scale))
        return out

    # ---- JSON ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def neurons(p: NeuronParams, with_alias: bool) -> list[dict[str, Any]]:
            rows = []
            for i in range(len(p)):
                row = {
                    "threshold": int(p.threshold[i]),
                    "v_mem_decay": int(p.v_mem_decay[i]),
                    "i_syn_decay": int(p.i_syn_decay[i]),
                    "v_mem_bias": int(p.v_mem_bias[i]),
                }
                if with_alias:
                    a = p.alias_target[i] if p.alias_target is not None else None
                    row["alias_target"] = None if a is None else int(a)
                rows.append(row)
            return rows

        d: dict[str, Any] = {
            "format": FORMAT,
            "dt": float(self.dt),
            "bias_enable": bool(self.bias_enable),
            "input": {"weights": self.input_weights.astype(int).tolist(), "weight_bit_shift": int(self.input_shift)},
            "hidden": {
                "weights": self.hidden_weights.astype(int).tolist(),
                "weight_bit_shift": int(self.hidden_shift),
                "neurons": neurons(self.hidden, True),
            },
            "readout": {
                "weights": self.readout_weights.astype(int).tolist(),
                "weight_bit_shift": int(self.readout_shift),
                "neurons": neurons(self.readout, False),
            },
        }
        if self.imu_if is not None:
            d["imu_if"] = self.imu_if
        d["metadata"] = self.metadata
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "XyloConfig":
        """Parse a JSON document; raises `ConfigFormatError` naming the first malformed field.

        Values are read as integers but *not* range-checked here: that is the design-rule
        checker's job, so that `aspen check` can list every violation at once.
        """
        if not isinstance(d, dict):
            raise ConfigFormatError("the top level must be a JSON object")
        if d.get("format") != FORMAT:
            raise ConfigFormatError(f"'format' must be {FORMAT!r}, got {d.get('format')!r}")

        def section(name: str) -> dict:
            s = d.get(name)
            if not isinstance(s, dict):
                raise ConfigFormatError(f"missing or malformed section '{name}'")
            return s

        def matrix(where: str, value: Any) -> np.ndarray:
            try:
                m = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise ConfigFormatError(f"{where} must be a rectangular list of integer rows") from None
            if m.ndim != 2:
                raise ConfigFormatError(f"{where} must be a 2-D list of rows, got {m.ndim} dimension(s)")
            if not np.all(np.isfinite(m)) or not np.all(m == np.round(m)):
                raise ConfigFormatError(f"{where} must hold integers only")
            return m.astype(np.int64)

        def integer(where: str, value: Any) -> int:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
                raise ConfigFormatError(f"{where} must be an integer, got {value!r}")
            return int(value)

        def neurons(where: str, rows: Any, with_alias: bool) -> NeuronParams:
            if not isinstance(rows, list):
                raise ConfigFormatError(f"{where}.neurons must be a list")
            cols: dict[str, list[int]] = {k: [] for k in ("threshold", "v_mem_decay", "i_syn_decay", "v_mem_bias")}
            aliases: list[int | None] = []
            for i, r in enumerate(rows):
                if not isinstance(r, dict):
                    raise ConfigFormatError(f"{where}.neurons[{i}] must be an object")
                for k in cols:
                    if k not in r:
                        raise ConfigFormatError(f"{where}.neurons[{i}] lacks '{k}'")
                    cols[k].append(integer(f"{where}.neurons[{i}].{k}", r[k]))
                if with_alias:
                    a = r.get("alias_target")
                    aliases.append(None if a is None else integer(f"{where}.neurons[{i}].alias_target", a))
            arr = {k: np.asarray(v, dtype=np.int64) for k, v in cols.items()}
            return NeuronParams(**arr, alias_target=aliases if with_alias else None)

        inp, hid, rd = section("input"), section("hidden"), section("readout")
        cfg = cls(
            input_weights=matrix("input.weights", inp.get("weights")),
            input_shift=integer("input.weight_bit_shift", inp.get("weight_bit_shift")),
            hidden_weights=matrix("hidden.weights", hid.get("weights")),
            hidden_shift=integer("hidden.weight_bit_shift", hid.get("weight_bit_shift")),
            hidden=neurons("hidden", hid.get("neurons"), True),
            readout_weights=matrix("readout.weights", rd.get("weights")),
            readout_shift=integer("readout.weight_bit_shift", rd.get("weight_bit_shift")),
            readout=neurons("readout", rd.get("neurons"), False),
            bias_enable=_boolean("bias_enable", d.get("bias_enable", False)),
            dt=_number("dt", d.get("dt", chip.DT_S)),
            imu_if=d.get("imu_if"),
            metadata=dict(d.get("metadata") or {}),
        )
        # shapes that must agree for the document to mean anything
        n_hid = cfg.hidden_weights.shape[0]
        if cfg.hidden_weights.shape != (n_hid, n_hid):
            raise ConfigFormatError(f"hidden.weights must be square, got {cfg.hidden_weights.shape}")
        if len(cfg.hidden) != n_hid:
            raise ConfigFormatError(f"hidden.neurons has {len(cfg.hidden)} entries for {n_hid} hidden neurons")
        if len(cfg.readout) != cfg.readout_weights.shape[1]:
            raise ConfigFormatError(
                f"readout.neurons has {len(cfg.readout)} entries for {cfg.readout_weights.shape[1]} readout columns"
            )
        return cfg

    def save(self, path: str | Path) -> Path:
        from aspen_deploy.io import _json_default

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1, default=_json_default))

    @classmethod
    def load(cls, path: str | Path) -> "XyloConfig":
        p = Path(path)
        if not p.is_file():
            raise ConfigFormatError(f"configuration file not found: {p}")
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ConfigFormatError(f"{p} is not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(d)


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigFormatError(f"{where} must be a number (seconds), got {value!r}")
    return float(value)


def _boolean(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigFormatError(f"{where} must be true or false, got {value!r}")
    return value
