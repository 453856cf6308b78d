"""Network definitions. `build_model(name, spec)` is the registry the CLI and run loader use.

Every model follows the contract of `models.aspen_synnet.AspenSynNet`: ``set_threshold``,
``net(x)[0]`` -> (B, C) logits, ``readout_membrane``, ``last_hidden_spikes``, ``spec.to_dict()``
and ``to_chipnet()`` (a `ChipNet`, or `DesignRuleError` with the reasons the chip cannot take it;
models whose conversion can approximate take ``to_chipnet(approximate=True)``).
"""

from __future__ import annotations

from typing import Any

MODEL_NAMES = ("aspen_synnet", "mpsl", "mps", "stc_lif", "s2tdpt", "chipnet")
# models `aspen train --model` offers (chipnet is made by `aspen import`, not trained from scratch)
TRAINABLE_MODELS = ("aspen_synnet", "mpsl", "mps", "stc_lif", "s2tdpt")


def build_model(name: str, spec: dict[str, Any] | None = None) -> Any:
    """Instantiate a model by name from its saved spec dict (``spec.to_dict()``); missing keys take defaults."""
    if name == "aspen_synnet":
        from models.aspen_synnet import AspenSynNet, NetSpec

        return AspenSynNet(NetSpec.from_dict(spec))
    if name == "mpsl":
        from models.mpsl import MPSLNet, MPSLSpec

        return MPSLNet(MPSLSpec.from_dict(spec))
    if name == "mps":
        from models.mps import MPSNet, MPSSpec

        return MPSNet(MPSSpec.from_dict(spec))
    if name == "stc_lif":
        from models.stc_lif import STCLIFNet, STCSpec

        return STCLIFNet(STCSpec.from_dict(spec))
    if name == "s2tdpt":
        from models.s2tdpt import S2TDPTNet, S2TDPTSpec

        return S2TDPTNet(S2TDPTSpec.from_dict(spec))
    if name == "chipnet":
        from models.chipnet_model import ChipNetModel, ChipNetSpec

        return ChipNetModel(ChipNetSpec.from_dict(spec))
    raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(MODEL_NAMES)}")
