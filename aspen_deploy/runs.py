"""Run directories: what a trained run holds and how to load it back.

    RUN_DIR/settings.json     exact training settings (sampler, profile, data, front end, net)
    RUN_DIR/checkpoint.pt     the model selected on validation accuracy
    RUN_DIR/train_state.pt    resume state (model, optimizer, RNGs, history)
    RUN_DIR/train_log.csv     one row per epoch
    RUN_DIR/metrics.json      float accuracy and activity on validation and test
    RUN_DIR/xylo_config.json  `aspen export`
    RUN_DIR/sweep.csv|json|png  `aspen sweep`
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aspen_deploy.train import TrainSettings
from models import build_model


class RunDirError(ValueError):
    pass


@dataclass
class Run:
    path: Path
    settings: TrainSettings
    net: Any

    @property
    def name(self) -> str:
        return self.path.name


def load_run(run_dir: str | Path) -> Run:
    p = Path(run_dir)
    if not p.is_dir():
        raise RunDirError(f"run directory not found: {p}")
    if not (p / "settings.json").is_file():
        raise RunDirError(f"{p} has no settings.json: is it a run directory made by 'aspen train' or 'aspen demo'?")
    if not (p / "checkpoint.pt").is_file():
        raise RunDirError(f"{p} has no checkpoint.pt: training has not finished an epoch yet "
                          f"(continue it with 'aspen train ... --out {p} --resume')")
    try:
        settings = TrainSettings(**json.loads((p / "settings.json").read_text()))
    except (TypeError, json.JSONDecodeError) as e:
        raise RunDirError(f"{p / 'settings.json'} is not a valid settings file ({e})") from None
    net = build_model(settings.model, settings.net)
    ck = torch.load(p / "checkpoint.pt", weights_only=False)
    net.load_state_dict(ck["model"])
    net.eval()
    return Run(p, settings, net)
