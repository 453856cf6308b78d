"""ASPEN training: surrogate-gradient BPTT with the hidden threshold sampled once per batch.

Writes into a run directory as it goes (see README, "Run directory"):
``settings.json`` (exact settings), ``train_log.csv`` (one row per epoch), ``train_state.pt``
(everything needed to resume after an interruption), ``checkpoint.pt`` (the model selected on
validation accuracy at the nominal threshold) and ``metrics.json``.
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from aspen_deploy.io import atomic_write, atomic_write_json, atomic_write_text
from aspen_deploy.samplers import DEFAULT_ASPEN, ThresholdSampler, parse_sampler


@dataclass(frozen=True)
class Profile:
    epochs: int
    batch_size: int
    lr: float
    sweep_windows: int | None  # stratified subset of the test split for sweeps; None = all


PROFILES: dict[str, Profile] = {
    # `aspen demo` in the quick profile must finish within 15 minutes on 2 CPU cores
    "quick": Profile(epochs=12, batch_size=64, lr=2e-3, sweep_windows=600),
    "full": Profile(epochs=24, batch_size=64, lr=2e-3, sweep_windows=None),
}


@dataclass
class TrainSettings:
    sampler: str = DEFAULT_ASPEN
    profile: str = "quick"
    epochs: int | None = None  # overrides the profile
    batch_size: int | None = None
    lr: float | None = None
    # loss += activity_penalty * mean hidden spikes per neuron per step: spikes cost cycles and
    # energy on the chip, and the penalty keeps the multi-spike neurons out of saturation
    activity_penalty: float = 1.0
    seed: int = 0
    model: str = "aspen_synnet"
    net: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    frontend: dict = field(default_factory=dict)

    def resolved(self) -> "TrainSettings":
        p = PROFILES[self.profile]
        return TrainSettings(**{**asdict(self), "epochs": self.epochs or p.epochs,
                                "batch_size": self.batch_size or p.batch_size, "lr": self.lr or p.lr})

    @property
    def threshold_sampler(self) -> ThresholdSampler:
        return parse_sampler(self.sampler)


def evaluate(net: Any, x: np.ndarray, y: np.ndarray, threshold: float = 1.0, batch: int = 256) -> dict[str, float]:
    """Float accuracy and hidden spikes per window at a fixed hidden threshold (`evaluate_logits`)."""
    if len(x) == 0:
        return {"accuracy": 0.0, "hidden_spikes_per_window": 0.0}
    from models.chipnet_model import evaluate_logits

    logits, spikes = evaluate_logits(net, x, threshold, batch)
    return {"accuracy": float((logits.argmax(-1) == np.asarray(y)).mean()), "hidden_spikes_per_window": spikes}


def train_new(data: Any, settings: TrainSettings, run_dir: Path, resume: bool = False,
              progress: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Build ``settings.model`` for ``data`` from the seed (the initial weights are part of the run's
    settings) and `train` it; fills ``settings`` data, front end and net from what was built."""
    from models import build_model

    settings.data, settings.frontend = data.spec, data.frontend.to_dict()
    torch.manual_seed(settings.seed)
    net = build_model(settings.model, {"n_out": data.n_classes})
    settings.net = net.spec.to_dict()
    return train(net, data, settings, run_dir, resume=resume, progress=progress)


def train(net: Any, data: Any, settings: TrainSettings, run_dir: Path, resume: bool = False,
          progress: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Train ``net`` on ``data.train`` (event windows), select on ``data.val``; returns metrics.

    With ``resume`` the run continues from ``train_state.pt`` (same settings required);
    without it an existing run directory with a training state is refused rather than overwritten.
    """
    s = settings.resolved()
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / "train_state.pt"
    settings_path = run_dir / "settings.json"
    sampler = s.threshold_sampler
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    opt = torch.optim.Adam(net.parameters().astorch(), lr=s.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=s.epochs)
    start_epoch, best, history = 0, {"val_accuracy": -1.0, "epoch": -1}, []

    if state_path.exists():
        if not resume:
            raise FileExistsError(f"{run_dir} already holds a training run; pass --resume to continue it "
                                  f"or choose another --out")
        st = torch.load(state_path, weights_only=False)
        if st["settings"] != asdict(s):
            raise ValueError(f"cannot resume {run_dir}: its settings differ from the ones given now "
                             f"(saved sampler {st['settings']['sampler']}, profile {st['settings']['profile']})")
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        start_epoch, best, history = st["epoch"] + 1, st["best"], st["history"]
    atomic_write_json(settings_path, asdict(s))

    x_tr, y_tr = data.train.x, data.train.y
    n_batches = int(np.ceil(len(x_tr) / s.batch_size))
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(start_epoch, s.epochs):
        t0 = time.time()
        net.train()
        order = rng.permutation(len(x_tr))
        tot_loss, tot_correct, thetas = 0.0, 0, []
        bar = progress(total=n_batches, desc=f"{run_dir.name} epoch {epoch + 1}/{s.epochs}") if progress else None
        for b in range(n_batches):
            idx = order[b * s.batch_size:(b + 1) * s.batch_size]
            theta = sampler.sample(rng)
            thetas.append(theta)
            net.set_threshold(torch.tensor(theta))
            xb = torch.as_tensor(x_tr[idx], dtype=torch.float32)
            yb = torch.as_tensor(y_tr[idx])
            logits = net(xb)[0]
            rate = torch.stack([sp.mean() for sp in net.last_hidden_spikes]).mean()
            loss = loss_fn(logits, yb) + s.activity_penalty * rate
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot_loss += loss.item() * len(idx)
            tot_correct += int((logits.argmax(-1) == yb).sum())
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", thr=f"{theta:.2f}")
        if bar:
            bar.close()
        sched.step()
        net.eval()
        val = evaluate(net, data.val.x, data.val.y)
        row = {"epoch": epoch + 1, "loss": tot_loss / len(x_tr), "train_accuracy": tot_correct / len(x_tr),
               "val_accuracy": val["accuracy"], "val_hidden_spikes_per_window": val["hidden_spikes_per_window"],
               "threshold_mean": float(np.mean(thetas)), "seconds": time.time() - t0}
        history.append(row)
        if val["accuracy"] > best["val_accuracy"]:
            best = {"val_accuracy": val["accuracy"], "epoch": epoch + 1}
            checkpoint = {"model": net.state_dict(), "settings": asdict(s)}
            atomic_write(run_dir / "checkpoint.pt", lambda tmp: torch.save(checkpoint, tmp))
        _write_log(run_dir / "train_log.csv", history)
        state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "epoch": epoch,
                 "best": best, "history": history, "settings": asdict(s)}
        atomic_write(state_path, lambda tmp: torch.save(state, tmp))

    ck = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    net.load_state_dict(ck["model"])
    net.eval()
    test = evaluate(net, data.test.x, data.test.y)
    metrics = {"sampler": sampler.spec, "best_epoch": best["epoch"], "val_accuracy": best["val_accuracy"],
               "float_test_accuracy": test["accuracy"],
               "float_test_hidden_spikes_per_window": test["hidden_spikes_per_window"],
               "epochs": s.epochs, "train_windows": len(x_tr), "val_windows": len(data.val.x),
               "test_windows": len(data.test.x)}
    atomic_write_json(run_dir / "metrics.json", metrics)
    return metrics


def _write_log(path: Path, rows: list[dict]) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
