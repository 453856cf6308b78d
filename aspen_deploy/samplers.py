"""ASPEN threshold samplers: one draw per training batch, applied to every hidden layer.

Spec strings (CLI `--sampler`):
    fixed              threshold 1.0 every batch (the fixed-threshold baseline)
    fixed:T            threshold T every batch
    uniform:A,B        T ~ U(A, B) per batch (ASPEN; default uniform:1.0,1.5)
    discrete:L1,L2,..  T drawn uniformly from the listed levels per batch
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_ASPEN = "uniform:1.0,1.5"


class SamplerSpecError(ValueError):
    pass


@dataclass(frozen=True)
class ThresholdSampler:
    kind: str  # "fixed" | "uniform" | "discrete"
    values: tuple[float, ...]

    def sample(self, rng: np.random.Generator) -> float:
        if self.kind == "fixed":
            return self.values[0]
        if self.kind == "uniform":
            return float(rng.uniform(self.values[0], self.values[1]))
        return float(self.values[int(rng.integers(len(self.values)))])

    @property
    def spec(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.values[0]:g}"
        return f"{self.kind}:" + ",".join(f"{v:g}" for v in self.values)


def parse_sampler(spec: str) -> ThresholdSampler:
    """Parse a sampler spec (module docstring); raises SamplerSpecError with the accepted forms."""
    forms = "use fixed, fixed:T, uniform:A,B or discrete:L1,L2,... with positive numbers"
    s = spec.strip().lower()
    kind, _, rest = s.partition(":")
    if kind == "fixed" and not rest:
        return ThresholdSampler("fixed", (1.0,))
    try:
        vals = tuple(float(v) for v in rest.split(",")) if rest else ()
    except ValueError:
        raise SamplerSpecError(f"bad sampler '{spec}': values must be numbers; {forms}") from None
    if not vals or any(not np.isfinite(v) or v <= 0 for v in vals):
        raise SamplerSpecError(f"bad sampler '{spec}': {forms}")
    if kind == "fixed" and len(vals) == 1:
        return ThresholdSampler("fixed", vals)
    if kind == "uniform" and len(vals) == 2:
        if vals[0] >= vals[1]:
            raise SamplerSpecError(f"bad sampler '{spec}': uniform:A,B needs A < B")
        return ThresholdSampler("uniform", vals)
    if kind == "discrete" and len(vals) >= 1:
        return ThresholdSampler("discrete", tuple(sorted(set(vals))))
    raise SamplerSpecError(f"bad sampler '{spec}': {forms}")
