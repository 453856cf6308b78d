"""Agreement of data_prep.frontend with Rockpool's IMUIFSim, and the front end's speed.

    PYTHONPATH=. python scripts/frontend_agreement.py [--seconds 4] [--hours 1]

Prints, per band set and encoder, the number of differing counts against ``IMUIFSim``
(``bypass_jsvd=True``, Rockpool's mirror warm-up) on a deterministic signal, then the seconds
the front end takes on synthetic data: one stream of ``--hours`` hours, the same amount as
60 recordings batched, 7,000 windows of 512 steps, and the encoder chooser on those windows.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from data_prep import frontend as fe


def _signal(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fe.FS_HZ
    freqs = np.array([[0.4, 1.5, 6.0], [0.7, 3.0, 12.0], [0.2, 2.2, 24.0]])
    amps = np.array([0.3, 0.2, 0.1])
    x = np.stack([(amps * np.sin(2 * np.pi * f[None] * t[:, None])).sum(1) for f in freqs], axis=1)
    return x + np.array([0.1, -0.6, 0.8]) + 0.05 * rng.standard_normal((n, 3))


def agreement(seconds: float) -> None:
    from aspen_deploy.rockpool_compat import imuif_module, imuif_sim_class

    imuif, sim_cls = imuif_module(), imuif_sim_class()
    acc = fe.quantize_acc(np.stack([_signal(int(seconds * fe.FS_HZ), s) for s in (0, 1)]))
    for name, bands in (("low band 0.1-16 Hz", fe.DEFAULT_BANDS), ("chip default 1-32 Hz", fe.CHIP_DEFAULT_BANDS)):
        settings = fe.FrontEndSettings(bands=bands)
        filters = [imuif.BandPassFilter(**p.to_dict()) for p in settings.filter_params()]
        filtered = fe.filter_windows_int(acc, settings.bank(), warmup="mirror")
        level = fe.abs_percentiles(filtered, [90])[0]
        for enc in (fe.encoder_from_percentile("iaf", level), fe.encoder_from_percentile("scale", level / 4)):
            kw = (
                dict(select_iaf_output=True, iaf_threshold_values=list(enc.values))
                if enc.kind == "iaf"
                else dict(select_iaf_output=False, scale_values=list(enc.values))
            )
            t0 = time.perf_counter()
            ref = np.asarray(sim_cls(shape=(3, 15), bypass_jsvd=True, filter_list=filters, **kw)(acc.astype(object))[0])
            t_ref = time.perf_counter() - t0
            ours = fe.encode(filtered, enc)[0]
            print(
                f"{name:22s} {enc.kind:5s}: {int((ours != ref).sum())} of {ours.size} counts differ "
                f"({int(ref.sum())} events; IMUIFSim took {t_ref:.2f} s for {seconds:g} s x 2)"
            )


def speed(hours: float) -> None:
    settings = fe.FrontEndSettings()
    n = int(hours * 3600 * fe.FS_HZ)
    g = _signal(n, 2)
    t0 = time.perf_counter()
    counts = fe.run_stream(g, settings)
    dt = time.perf_counter() - t0
    print(f"run_stream, one stream of {hours:g} h ({n} steps): {dt:.2f} s, {counts.mean():.3f} events/channel/step")
    recs = np.array_split(g, 60)
    t0 = time.perf_counter()
    fe.run_streams(recs, settings)
    print(f"run_streams, the same {hours:g} h as 60 recordings: {time.perf_counter() - t0:.2f} s")
    rng = np.random.default_rng(3)
    starts = rng.integers(0, n - 512, 7000)
    windows = np.stack([g[s : s + 512] for s in starts])
    t0 = time.perf_counter()
    filtered = fe.filter_windows(windows, settings)
    t1 = time.perf_counter()
    fe.encode(filtered, settings.encoder)
    t2 = time.perf_counter()
    print(f"filter_windows 7000 x 512 (hold): {t1 - t0:.2f} s; encode: {t2 - t1:.2f} s")
    labels = (starts // (n // 6)).astype(int)
    t0 = time.perf_counter()
    _, report = fe.choose_encoder(filtered, labels)
    print(f"choose_encoder on 7000 x 512: {time.perf_counter() - t0:.2f} s")
    print(fe.format_encoder_report(report))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0, help="signal length for the IMUIFSim comparison")
    ap.add_argument("--hours", type=float, default=1.0, help="stream length for the speed test")
    args = ap.parse_args()
    agreement(args.seconds)
    speed(args.hours)


if __name__ == "__main__":
    main()
