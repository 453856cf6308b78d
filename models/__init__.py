"""Network definitions. `build_model(name, spec)` is the registry the CLI and run loader use.

Every model follows the contract of `models.aspen_synnet.AspenSynNet`: ``set_threshold``,
``net(x)[0]`` -> (B, C) logits, ``readout_membrane``, ``last_hidden_spikes``, ``spec.to_dict()``
and ``to_chipnet()`` (a `ChipNet`, or `DesignRuleError` with the reasons the chip cannot take it;
models whose conversion can approximate take ``to_chipnet(approximate=True)``).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> (module, network class, spec class); modules are imported only when asked for
_REGISTRY = {
    "aspen_synnet": ("models.aspen_synnet", "AspenSynNet", "NetSpec"),
    "mpsl": ("models.mpsl", "MPSLNet", "MPSLSpec"),
    "mps": ("models.mps", "MPSNet", "MPSSpec"),
    "stc_lif": ("models.stc_lif", "STCLIFNet", "STCSpec"),
    "s2tdpt": ("models.s2tdpt", "S2TDPTNet", "S2TDPTSpec"),
    "chipnet": ("models.chipnet_model", "ChipNetModel", "ChipNetSpec"),
}
MODEL_NAMES = tuple(_REGISTRY)
# models `aspen train --model` offers (chipnet is made by `aspen import`, not trained from scratch)
TRAINABLE_MODELS = ("aspen_synnet", "mpsl", "mps", "stc_lif", "s2tdpt")


def build_model(name: str, spec: dict[str, Any] | None = None) -> Any:
    """Instantiate a model by name from its saved spec dict (``spec.to_dict()``); missing keys take defaults."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(MODEL_NAMES)}")
    module, net_cls, spec_cls = _REGISTRY[name]
    mod = importlib.import_module(module)
    return getattr(mod, net_cls)(getattr(mod, spec_cls).from_dict(spec))
