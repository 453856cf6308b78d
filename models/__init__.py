"""Network definitions. `build_model(name, spec)` is the registry the CLI and run loader use."""

from __future__ import annotations

from typing import Any

MODEL_NAMES = ("aspen_synnet",)


def build_model(name: str, spec: dict[str, Any] | None = None) -> Any:
    """Instantiate a model by name from its saved spec dict (``NetSpec.to_dict()``)."""
    if name == "aspen_synnet":
        from models.aspen_synnet import AspenSynNet, NetSpec

        return AspenSynNet(NetSpec.from_dict(spec) if spec else NetSpec())
    raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(MODEL_NAMES)}")
