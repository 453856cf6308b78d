"""Other papers' models next to ASPEN on HAPT: train, convert to Xylo, simulate, tabulate.

    python scripts/reproduce_models.py [--epochs N] [--out runs/models] [--data hapt] [--jobs 2]

Trains (quick profile, `--epochs` overrides its epoch count) ASPEN (uniform:1.0,1.5), the
fixed-threshold baseline, mpsl, mps (the paper's neuron, and `mps_chip`: reset where the chip
puts it, alpha trained as a bit shift), stc_lif and s2tdpt on the same data and front end, all with ASPEN threshold
sampling except the baseline; then, per model: float test accuracy at
threshold 1.0; conversion (`to_chipnet` -> `quantize` with the readout calibrated on training
windows, as `aspen export`); accuracy and hidden spikes per window on the Xylo software model
(`--backend`, fast = bit-exact batched simulator) at threshold scale 1.0 on a stratified test
subset (`--windows`); and the conversion status: exact, approximate with the measured change,
or refused with the reasons. Model-specific columns: mpsl reports the plastic model, the merged
float network and the chip; mps the float-vs-chip prediction agreement; stc_lif the dynamic and
the fixed-leak float accuracy. Writes OUT/results.json and OUT/results.md (the README table)
and prints the table. Finished trainings are reused (delete a model's folder to retrain);
an interrupted training resumes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RUNS: dict[str, tuple[str, str, dict]] = {  # row -> (model, sampler, spec overrides)
    "aspen": ("aspen_synnet", "uniform:1.0,1.5", {}),
    "baseline": ("aspen_synnet", "fixed:1.0", {}),
    "mpsl": ("mpsl", "uniform:1.0,1.5", {}),
    "mps": ("mps", "uniform:1.0,1.5", {}),  # the paper's neuron: reset on the raw membrane
    # reset where the chip puts it, alpha trained as a bit shift: converts exactly
    "mps_chip": ("mps", "uniform:1.0,1.5", {"reset": "smoothed", "alpha_bitshift": True}),
    "stc_lif": ("stc_lif", "uniform:1.0,1.5", {}),
    "s2tdpt": ("s2tdpt", "uniform:1.0,1.5", {}),
}


def _train_child(row: str, args: dict, frontend: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from aspen_deploy.train import TrainSettings, train
    from data_prep.pipeline import prepare_events
    from models import build_model

    model, sampler, overrides = RUNS[row]
    out = Path(args["out"]) / row
    if (out / "metrics.json").is_file():  # finished: no data needed
        return json.loads((out / "metrics.json").read_text())
    data = prepare_events(args["data"], frontend=frontend, seed=args["seed"])
    net = build_model(model, {"n_out": data.n_classes, **overrides})
    settings = TrainSettings(sampler=sampler, profile="quick", epochs=args["epochs"], seed=args["seed"], model=model,
                             net=net.spec.to_dict(), data=data.spec, frontend=data.frontend.to_dict())
    t0 = time.time()
    print(f"[{row}] training {model} ({sampler}), {len(data.train.y)} windows", flush=True)
    m = train(net, data, settings, out, resume=(out / "train_state.pt").is_file())
    print(f"[{row}] done in {time.time() - t0:.0f} s: float test accuracy {m['float_test_accuracy']:.3f}", flush=True)
    return m


def _float_eval(net: Any, x: Any, y: Any) -> tuple[Any, dict[str, float]]:
    """(logits, `aspen_deploy.train.evaluate`'s dict) of ``net`` on windows ``x`` at threshold 1.0."""
    import numpy as np

    from models.chipnet_model import evaluate_logits

    logits, spikes = evaluate_logits(net, x)
    return logits, {"accuracy": float((logits.argmax(-1) == np.asarray(y)).mean()), "hidden_spikes_per_window": spikes}


def evaluate_row(row: str, out: Path, data: Any, windows: int, backend: str) -> dict[str, Any]:
    """Float accuracy, conversion and chip accuracy of one trained run (see module docstring)."""
    import copy
    import math

    import numpy as np
    import torch

    from aspen_deploy.backends import get_backend
    from aspen_deploy.drc import DesignRuleError
    from aspen_deploy.export import export_config
    from aspen_deploy.runs import load_run
    from aspen_deploy.sweep import stratified_subset
    from models.chipnet_model import ChipNetModel, conversion_report

    run = load_run(out / row)
    net = run.net
    model = run.settings.model
    res: dict[str, Any] = {"row": row, "model": model, "sampler": run.settings.sampler,
                           "epochs": run.settings.epochs}
    # float logits on the whole test split, once; the chip windows are a subset of it
    # (each window's logits do not depend on the batch it runs in)
    fl_logits, fl = _float_eval(net, data.test.x, data.test.y)
    res["float_accuracy"] = fl["accuracy"]
    res["float_hidden_spikes_per_window"] = fl["hidden_spikes_per_window"]
    idx = stratified_subset(data.test.y, windows, seed=0)
    xs, ys = data.test.x[idx], data.test.y[idx]
    res["chip_windows"] = int(len(idx))
    same_logits = fl_logits  # the float network set against the chip (mpsl: the merged one, below)

    try:
        chipnet = net.to_chipnet()
    except DesignRuleError as e:
        res["refused"] = [v.message() for v in e.violations]
        if model != "stc_lif":
            res["status"] = "refused: " + "; ".join(_short(v) for v in e.violations)
            return res
        from models.stc_lif import approximation_report

        chipnet = net.to_chipnet(approximate=True)
        res["approximation"] = approximation_report(net, data.test.x, data.test.y, chipnet=chipnet,
                                                    net_logits=(fl_logits, fl["hidden_spikes_per_window"]))
    if model == "mpsl":
        net.mode = "merged"
        same_logits, merged = _float_eval(net, data.test.x, data.test.y)
        res["merged_float_accuracy"] = merged["accuracy"]
        ref = ChipNetModel.from_chipnet(chipnet)  # = net.merged_model()
        res["merged_equals_chipnet_model"] = bool(_float_eval(ref, data.test.x, data.test.y)[1] == merged)
    cfg = export_config(run, data, approximate=(model == "stc_lif"), chipnet=chipnet)
    be = get_backend(backend)
    be.load(cfg)
    be.set_threshold_scale(1.0)
    # one simulation gives the chip's accuracy, spikes and predictions (`sweep.evaluate_scale`'s batches)
    t0 = time.time()
    runs = [be.run(xs[i:i + 256]) for i in range(0, len(xs), 256)]
    res["chip_seconds"] = time.time() - t0
    pred = np.concatenate([r.prediction for r in runs])
    res["chip_accuracy"] = float(np.mean(pred == ys))
    res["chip_hidden_spikes_per_window"] = sum(float(r.hidden_spike_counts.sum()) for r in runs) / len(xs)
    fl_sub = same_logits[idx].argmax(-1)
    res["float_chip_prediction_agreement"] = float(np.mean(fl_sub == pred))
    res["float_accuracy_same_windows"] = float(np.mean(fl_sub == ys))
    conv = chipnet.metadata.get("conversion", {})
    if model == "stc_lif":
        rep = res["approximation"]
        res["status"] = (f"refused by default ({len(res['refused'])} reasons: spike-dependent leak and within-layer "
                         f"gain per layer); --approximate: fixed leak, float accuracy {rep['dynamic_accuracy']:.3f} -> "
                         f"{rep['fixed_accuracy']:.3f} ({rep['accuracy_change']:+.3f})")
    elif model == "mpsl":
        res["status"] = (f"exact for the merged network (plastic {res['float_accuracy']:.3f}, merged "
                         f"{res['merged_float_accuracy']:.3f}, chip {res['chip_accuracy']:.3f})")
    elif model == "mps":
        res["conversion_notes"] = conv.get("notes", [])
        # the two conversion steps apart: alpha rounded alone (the trained reset kept), then the chip's reset
        rounded = copy.deepcopy(net)
        with torch.no_grad():
            for a in conv["alphas"]:
                getattr(rounded, f"alpha_logit{a['layer']}").fill_(math.log(a["alpha_chip"] / (1 - a["alpha_chip"])))
        res["float_accuracy_alpha_rounded"] = _float_eval(rounded, data.test.x, data.test.y)[1]["accuracy"]
        conv_rep = conversion_report(net, chipnet, data.test.x, data.test.y,
                                     net_logits=(fl_logits, fl["hidden_spikes_per_window"]))
        res["converted_float_accuracy"] = conv_rep["converted_accuracy"]
        res["converted_float_hidden_spikes_per_window"] = conv_rep["converted_hidden_spikes_per_window"]
        alphas = ", ".join(f"{a['alpha']:.3f}->{a['alpha_chip']:.3f}" for a in conv["alphas"])
        where = ("reset on the raw membrane in training, on vmem (smoothed) on chip"
                 if conv["reset_trained"] == "membrane" else "reset on vmem (smoothed) as trained")
        res["status"] = (f"{conv['status']}: alpha {alphas} (float {res['float_accuracy_alpha_rounded']:.3f}); {where}: "
                         f"converted float {res['converted_float_accuracy']:.3f}, "
                         f"{res['converted_float_hidden_spikes_per_window']:,.0f} spikes; float-vs-chip prediction "
                         f"agreement {res['float_chip_prediction_agreement']:.3f}")
    else:
        res["status"] = "exact (same LIF semantics; quantization only)"
    return res


def _short(v: Any) -> str:
    """A violation in a few words for the table (the full line is in results.json)."""
    if v.rule == "unsupported":
        return v.needed.split(":")[0].split(" (")[0]
    return f"{v.rule} {str(v.needed).split()[0]} > {v.limit}"


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    from aspen_deploy.report import markdown_table

    rows = []
    for r in results:
        chip_acc = r.get("chip_accuracy")
        spikes = r.get("chip_hidden_spikes_per_window", r.get("float_hidden_spikes_per_window"))
        float_acc = r["float_accuracy"]
        if r["model"] == "mpsl":
            float_acc = f"{r['float_accuracy']:.3f} (merged {r['merged_float_accuracy']:.3f})"
        elif r["model"] == "stc_lif" and "approximation" in r:
            float_acc = f"{r['float_accuracy']:.3f} (fixed leak {r['approximation']['fixed_accuracy']:.3f})"
        same = ("-" if chip_acc is None else
                f"{r['float_accuracy_same_windows']:.3f} / {r['float_chip_prediction_agreement']:.3f}")
        rows.append([r["row"], r["sampler"], float_acc, same, "-" if chip_acc is None else chip_acc,
                     "-" if spikes is None else f"{spikes:,.0f}" + ("" if chip_acc is not None else " (float)"),
                     r["status"]])
    from aspen_deploy.train import PROFILES

    epochs = args.epochs or PROFILES["quick"].epochs
    head = (f"Data `{args.data}` (streaming front end, test subjects); {epochs} epochs (quick profile); "
            f"float accuracy "
            f"on all test windows at threshold 1.0; Xylo software model (`{args.backend}`) on "
            f"{results[0].get('chip_windows', args.windows)} stratified test windows at threshold scale 1.0.\n\n")
    return head + markdown_table(["model", "training sampler", "float accuracy",
                                  "float on the Xylo windows / prediction agreement", "Xylo accuracy",
                                  "hidden spikes / window", "conversion"], rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the quick profile's)")
    p.add_argument("--out", default="runs/models")
    p.add_argument("--data", default="hapt")
    p.add_argument("--models", default=",".join(RUNS), help=f"comma-separated rows (default: {','.join(RUNS)})")
    p.add_argument("--windows", type=int, default=600, help="stratified test windows for the chip simulation")
    p.add_argument("--backend", default="fast")
    p.add_argument("--jobs", type=int, default=2, help="trainings at once (one CPU core each)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rows = [r.strip() for r in args.models.split(",") if r.strip()]
    unknown = [r for r in rows if r not in RUNS]
    if unknown:
        p.error(f"unknown model row(s) {unknown}; choose from {', '.join(RUNS)}")

    from data_prep.pipeline import prepare_events

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = prepare_events(args.data, seed=args.seed, log=print)
    cfg = {"data": args.data, "seed": args.seed, "out": str(out), "epochs": args.epochs}
    ctx = mp.get_context("spawn")
    with ctx.Pool(max(1, min(args.jobs, len(rows)))) as pool:
        jobs = [pool.apply_async(_train_child, (r, cfg, data.frontend.to_dict())) for r in rows]
        for j in jobs:
            j.get()
    t_train = time.time() - t0
    import torch

    torch.set_num_threads(max(1, args.jobs))
    results = []
    for r in rows:
        print(f"evaluating {r} ...", flush=True)
        results.append(evaluate_row(r, out, data, args.windows, args.backend))
        print(f"  {results[-1]['status']}", flush=True)
    summary = {"args": vars(args), "train_seconds": t_train, "total_seconds": time.time() - t0, "results": results}
    from aspen_deploy.io import atomic_write_json, atomic_write_text

    atomic_write_json(out / "results.json", summary)
    md = markdown(results, args)
    atomic_write_text(out / "results.md", md)
    print(md)
    print(f"wrote {out / 'results.json'} and {out / 'results.md'} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
