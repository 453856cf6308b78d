"""Model specs: the layered-network spec every model shares, and the strict dict reader of all specs.

A spec is a dataclass saved in a run's settings.json (``spec.to_dict()``) and read back with
``Spec.from_dict``, which refuses unknown fields (`SpecError` naming them) instead of
silently dropping a setting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from aspen_deploy import chip


class SpecError(ValueError):
    """A model spec dict that cannot be read (unknown keys, wrong values)."""


def refuse_unknown_fields(cls: type, d: Mapping[str, Any], list_known: bool = True) -> None:
    """`SpecError` naming the keys of ``d`` that are not fields of the dataclass ``cls`` (and, with
    ``list_known``, the fields it does have)."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        known = f"; known: {', '.join(sorted(names))}" if list_known else ""
        raise SpecError(f"unknown {cls.__name__} field(s) {', '.join(unknown)}{known}")


@dataclass
class LayeredSpec:
    """15 -> hidden... -> C layered network; time constants in seconds (decays are bit shifts).

    The base of every model's spec (`models.aspen_synnet.NetSpec` and the other papers' models).
    """

    n_in: int = chip.IMU_CHANNELS
    hidden: tuple[int, ...] = (48, 48, 48)
    n_out: int = 6
    tau_syn_s: float = 0.02
    tau_mem_s: float = 0.04
    # short readout time constants keep the readout's DC gain small (4), so the integer readout
    # membrane has room for fine weights before 16-bit saturation; the window mean smooths
    tau_syn_out_s: float = 0.01
    tau_mem_out_s: float = 0.02
    dt: float = chip.DT_S
    max_spikes: int = chip.MAX_HIDDEN_SPIKES_PER_STEP

    # tuple-valued fields (lists in JSON) and the conversion of their elements; a plain class
    # attribute, not a field. Subclasses with more tuple fields extend it.
    TUPLE_FIELDS = {"hidden": int}

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict | None):
        """Read a saved spec: unknown fields refused, missing ones take defaults, JSON lists of
        `TUPLE_FIELDS` made tuples, then `check`."""
        d = dict(d or {})
        refuse_unknown_fields(cls, d)
        for k, conv in cls.TUPLE_FIELDS.items():
            if k in d:
                d[k] = tuple(conv(v) for v in d[k])
        spec = cls(**d)
        spec.check()
        return spec

    def check(self) -> None:
        """`SpecError` for values the model cannot be built with; subclasses add their own rules."""
        if not self.hidden or min(self.hidden) < 1:
            raise SpecError(f"hidden must list at least one positive layer size, got {self.hidden}")
