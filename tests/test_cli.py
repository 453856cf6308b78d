"""End to end through the `aspen` command on synthetic data, and the CLI's error contract."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aspen_deploy.cli import main

REPO = Path(__file__).resolve().parents[1]


def _run_cli(args, cwd=None):
    import os

    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "aspen_deploy.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env=env)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "aspen"
    assert main(["train", "--data", "synthetic", "--sampler", "uniform:1.0,1.5", "--epochs", "1",
                 "--out", str(out)]) == 0
    return out


def test_train_writes_run_directory(trained_run):
    for name in ("settings.json", "checkpoint.pt", "train_state.pt", "train_log.csv", "metrics.json"):
        assert (trained_run / name).is_file(), name
    settings = json.loads((trained_run / "settings.json").read_text())
    assert settings["sampler"] == "uniform:1.0,1.5" and settings["epochs"] == 1
    assert settings["frontend"]["encoder"]["kind"] in ("iaf", "scale")


def test_train_refuses_to_overwrite_without_resume(trained_run, capsys):
    rc = main(["train", "--data", "synthetic", "--epochs", "1", "--out", str(trained_run)])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0]


def test_resume_continues_from_saved_epoch(trained_run, tmp_path):
    import shutil

    run = tmp_path / "resumed"
    shutil.copytree(trained_run, run)
    # same settings but one more epoch is a different run: refused
    assert main(["train", "--data", "synthetic", "--sampler", "uniform:1.0,1.5", "--epochs", "2", "--out", str(run),
                 "--resume"]) == 2
    # same settings: nothing left to do, the saved history is kept
    assert main(["train", "--data", "synthetic", "--sampler", "uniform:1.0,1.5", "--epochs", "1", "--out", str(run),
                 "--resume"]) == 0
    log = (run / "train_log.csv").read_text().strip().splitlines()
    assert len(log) == 2  # header + the one epoch trained before


def test_export_check_simulate_sweep(trained_run, tmp_path, capsys):
    assert main(["export", str(trained_run)]) == 0
    cfg_path = trained_run / "xylo_config.json"
    cfg = json.loads(cfg_path.read_text())
    assert cfg["format"] == "aspen-xylo-imu/1" and len(cfg["hidden"]["neurons"]) == 144
    assert main(["check", str(cfg_path)]) == 0

    rng = np.random.default_rng(0)
    spikes = rng.integers(0, 2, size=(3, 80, 15))
    np.save(tmp_path / "in.npy", spikes)
    outs = {}
    for backend in ("xylosim", "fast"):
        out = tmp_path / f"{backend}.npz"
        assert main(["simulate", str(cfg_path), "--input", str(tmp_path / "in.npy"), "--backend", backend,
                     "--out", str(out)]) == 0
        with np.load(out) as z:
            outs[backend] = {k: z[k] for k in z.files}
    assert outs["xylosim"]["output_spikes"].shape == (3, 80, 6)
    assert outs["xylosim"]["hidden_spike_counts"].shape == (3, 144)
    assert outs["xylosim"]["hidden_spike_counts"].sum() > 0
    for k in outs["xylosim"]:
        np.testing.assert_array_equal(outs["xylosim"][k], outs["fast"][k], err_msg=k)
        assert outs["xylosim"][k].dtype == outs["fast"][k].dtype, k  # the same result file, not only equal values

    assert main(["sweep", str(trained_run), "--scales", "0.8,1.0,1.6", "--windows", "40"]) == 0
    rows = (trained_run / "sweep.csv").read_text().strip().splitlines()
    assert len(rows) == 4 and rows[0].startswith("model,threshold_scale,accuracy,macro_f1")
    assert (trained_run / "sweep.png").stat().st_size > 1000
    # resume: a second sweep over the same scales adds nothing
    assert main(["sweep", str(trained_run), "--scales", "0.8,1.0,1.6", "--windows", "40"]) == 0
    assert len((trained_run / "sweep.csv").read_text().strip().splitlines()) == 4


def _check_one_line_error(args, tmp_path, must_contain):
    r = _run_cli(args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr
    assert len(lines) >= 1 and all(line.startswith("aspen: ") for line in lines), r.stderr
    assert must_contain in r.stderr
    return lines


def test_cli_errors_are_one_line(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    _check_one_line_error(["check", str(tmp_path / "missing.json")], tmp_path, "not found")
    _check_one_line_error(["check", str(bad_json)], tmp_path, "not valid JSON")
    _check_one_line_error(["export", str(tmp_path / "nope")], tmp_path, "run directory not found")
    _check_one_line_error(["train", "--data", "nofile.npz", "--out", "x"], tmp_path, "not found")
    _check_one_line_error(["train", "--data", "mnist", "--out", "x"], tmp_path, "unknown data source")
    _check_one_line_error(["train", "--sampler", "gauss:1", "--out", "x"], tmp_path, "bad sampler")
    _check_one_line_error(["sweep", str(tmp_path), "--scales", "2:1:0.1"], tmp_path, "bad --scales")


def test_check_lists_every_violation(tmp_path, trained_run):
    cfg = json.loads((trained_run / "xylo_config.json").read_text()) if (trained_run / "xylo_config.json").exists() \
        else None
    if cfg is None:
        assert main(["export", str(trained_run)]) == 0
        cfg = json.loads((trained_run / "xylo_config.json").read_text())
    cfg["input"]["weights"][0][0] = 300
    cfg["hidden"]["weight_bit_shift"] = 9
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(cfg))
    r = _run_cli(["check", str(path)])
    assert r.returncode == 2
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2
    assert any(line.startswith("weight-range") for line in lines) and any(line.startswith("weight-shift") for line in lines)


def test_simulate_rejects_bad_input(tmp_path, trained_run):
    if not (trained_run / "xylo_config.json").exists():
        assert main(["export", str(trained_run)]) == 0
    np.save(tmp_path / "wrong.npy", np.zeros((10, 7), dtype=int))
    lines = _check_one_line_error(["simulate", str(trained_run / "xylo_config.json"), "--input",
                                   str(tmp_path / "wrong.npy"), "--out", str(tmp_path / "o.npz")], tmp_path, "channels")
    assert len(lines) == 1
    assert not (tmp_path / "o.npz").exists()


def test_training_is_reproducible(trained_run, tmp_path):
    """Same seed and settings -> the same weights (the initial weights are seeded too)."""
    import torch

    again = tmp_path / "again"
    assert main(["train", "--data", "synthetic", "--sampler", "uniform:1.0,1.5", "--epochs", "1",
                 "--out", str(again)]) == 0
    a = torch.load(trained_run / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(again / "checkpoint.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
