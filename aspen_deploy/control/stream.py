"""A continuous IMU stream for the runtime controller: recordings end to end at 200 Hz, the true
activity per step, the front end run chunk by chunk, one prediction per readout window.

Time is cut into control periods of ``P`` steps (default 200 steps = 1 s). Period ``p`` covers
steps ``[p P, (p + 1) P)``; the device runs it with whatever threshold and clock the controller
chose for it, and at its end one readout window is scored:

    window(p) = steps [e - W, e) with e = (p + 1) P and W = 512 (2.56 s, the training windows)
    prediction(p) = argmax_k mean_{t in last 3/4 of window(p)} vmem_k(t)   (as `predict_from_vmem`)
    truth(p) = the window's label if all W steps carry the same label >= 0, else -1 (not scored)

so the hop between readout windows is one control period (1 s): every decision is followed by
exactly one prediction made (mostly) under it, and windows overlap by W - P steps. Periods
before the first full window (``e < W``) have no prediction (-1). Scoring only single-label
windows keeps the streaming accuracy comparable with the test-window accuracy of the sweeps.

State across periods: the front end never resets (its filter and encoder state is carried
from chunk to chunk by `data_prep.frontend.run_stream_chunk`). The network core is run per
period from reset, on the period's steps preceded by the ``warmup`` steps before it
(default 80 = 0.4 s = two monitor periods at 5 Hz, several times the longest neuron time
constant), and only the period's own steps are kept (`period_inputs`). This keeps the readout
continuous while letting the threshold change between periods on any device: the HDK re-applies
its configuration (a reset) to change thresholds anyway, and the virtual device simulates from
reset. The warm-up input is the stream's own past (zeros before the start).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from aspen_deploy import chip
from aspen_deploy.backends.base import READOUT_SKIP_FRACTION, readout_skip_steps

WINDOW_STEPS = 512  # readout window = the training windows (2.56 s at 200 Hz)
PERIOD_STEPS = 200  # control period = readout hop (1 s)
WARMUP_STEPS = 80  # network warm-up before each period (0.4 s: a whole number of 5 Hz monitor periods)


class StreamError(ValueError):
    """A stream or stream setting that cannot be used (the message says what to do)."""


@dataclass(frozen=True)
class ImuStream:
    """Accelerometer samples ``acc_g`` (L, 3) in g at ``fs`` Hz and the true class per sample
    ``labels`` (L,) (-1: unlabelled or transition); ``starts`` (R,) index where each of the R
    recordings begins, ``subjects`` (R,) their subject ids."""

    acc_g: np.ndarray
    labels: np.ndarray
    fs: float
    starts: np.ndarray
    subjects: np.ndarray
    class_names: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        if self.acc_g.ndim != 2 or self.acc_g.shape[1] != 3:
            raise StreamError(f"stream acceleration must be (L, 3) in g, got shape {self.acc_g.shape}")
        if self.labels.shape != (len(self.acc_g),):
            raise StreamError(f"stream labels {self.labels.shape} do not match {len(self.acc_g)} samples")

    def __len__(self) -> int:
        return len(self.acc_g)

    @property
    def duration_s(self) -> float:
        return len(self) / self.fs

    def head(self, duration_s: float | None) -> "ImuStream":
        """The first ``duration_s`` seconds (all of it for None)."""
        if duration_s is None:
            return self
        if not (np.isfinite(duration_s) and duration_s > 0):
            raise StreamError(f"--duration must be a positive number of seconds, got {duration_s}")
        n = min(len(self), int(round(duration_s * self.fs)))
        keep = self.starts < n
        return ImuStream(self.acc_g[:n], self.labels[:n], self.fs, self.starts[keep], self.subjects[keep],
                         self.class_names, self.source)


def stream_from_recordings(recordings: Sequence, class_names: Sequence[str], source: str,
                           fs: float = chip.IMU_FS_HZ) -> ImuStream:
    """Recordings (`data_prep.dataset.Recording`) resampled to ``fs`` and joined end to end, in order."""
    from data_prep.dataset import resample_recording

    if not recordings:
        raise StreamError(f"no recordings for the {source} stream")
    recs = [r if r.fs == fs else resample_recording(r, fs) for r in recordings]
    lengths = np.array([len(r) for r in recs])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return ImuStream(np.concatenate([r.acc for r in recs]).astype(np.float32),
                     np.concatenate([r.labels for r in recs]).astype(np.int64), float(fs), starts,
                     np.array([r.subject for r in recs], dtype=np.int64), tuple(class_names), source)


def hapt_test_stream(subjects: Sequence[int] | None = None) -> ImuStream:
    """The HAPT recordings of UCI's test subjects (default), in subject order, end to end at 200 Hz."""
    from data_prep.hapt import HAPT_CLASS_NAMES, UCI_TEST_SUBJECTS, load_hapt_recordings

    subs = set(UCI_TEST_SUBJECTS if subjects is None else subjects)
    recs = [r for r in load_hapt_recordings() if r.subject in subs]
    what = "hapt test subjects" if subjects is None else "hapt subjects"
    return stream_from_recordings(recs, HAPT_CLASS_NAMES, f"{what} {sorted(subs)}")


def synthetic_test_stream(seed: int = 0, n_subjects: int = 6, seconds_per_activity: float = 24.0) -> ImuStream:
    """The test subject of the synthetic data source (the highest subject id, as `data_prep.pipeline`)."""
    from data_prep.synthetic import SYNTH_CLASS_NAMES, synthetic_recordings

    recs = synthetic_recordings(n_subjects=n_subjects, seconds_per_activity=seconds_per_activity, seed=seed)
    test = max(r.subject for r in recs)
    return stream_from_recordings([r for r in recs if r.subject == test], SYNTH_CLASS_NAMES,
                                  f"synthetic test subject {test} (seed {seed})")


def stream_for_data(spec: dict) -> ImuStream:
    """The test stream that matches a run's data source (``settings.json`` ``data``): the test subjects'
    recordings exactly as the training pipeline (`data_prep.pipeline.source_recordings`) made them."""
    from data_prep.pipeline import source_recordings

    source = spec.get("source", spec.get("source_arg"))
    if source not in ("hapt", "synthetic"):
        raise StreamError(f"data source {source!r} has no continuous recordings to stream; the controller runs on "
                          "runs trained on hapt or synthetic data")
    seed = int(spec.get("seed", 0))
    recs, class_names, test_subjects = source_recordings({"source": source, "seed": seed})
    subs = set(test_subjects)
    what = (f"hapt test subjects {sorted(subs)}" if source == "hapt"
            else f"synthetic test subject {max(subs)} (seed {seed})")
    return stream_from_recordings([r for r in recs if r.subject in subs], class_names, what)


# ---- front end ---------------------------------------------------------------------------------
def frontend_chunks(stream: ImuStream, settings, chunk_steps: int = PERIOD_STEPS) -> Iterator[np.ndarray]:
    """The stream through the IMU front end chunk by chunk (state carried), yielding counts (<= chunk, 15)."""
    from data_prep.frontend import run_stream_chunk

    if chunk_steps < 1:
        raise StreamError(f"chunk length must be at least 1 step, got {chunk_steps}")
    state = None
    for a in range(0, len(stream), chunk_steps):
        counts, state = run_stream_chunk(stream.acc_g[a:a + chunk_steps], settings, state)
        yield counts


def stream_events(stream: ImuStream, settings, chunk_steps: int = PERIOD_STEPS) -> np.ndarray:
    """All front-end counts (L, 15) uint8, computed chunk by chunk (`frontend_chunks`)."""
    parts = list(frontend_chunks(stream, settings, chunk_steps))
    if not parts:
        return np.zeros((0, chip.IMU_CHANNELS), np.uint8)
    return np.concatenate(parts).astype(np.uint8)


# ---- periods, windows, truth -------------------------------------------------------------------
def n_periods(n_steps: int, period: int = PERIOD_STEPS) -> int:
    """Whole control periods in a stream (a last partial period is dropped)."""
    return n_steps // period


def period_inputs(events: np.ndarray, p: np.ndarray | int, period: int = PERIOD_STEPS,
                  warmup: int = WARMUP_STEPS) -> np.ndarray:
    """Device input for period(s) ``p``: steps ``[p P - warmup, (p + 1) P)``, zeros before step 0.

    Returns (warmup + P, C) for an int ``p``, (len(p), warmup + P, C) for an array.
    """
    x = np.asarray(events)
    idx = np.atleast_1d(np.asarray(p, dtype=np.int64))
    # stream rows by index arithmetic (no padded copy of the whole stream per call); < 0: before the start
    rows = idx[:, None] * period + np.arange(warmup + period)[None, :] - warmup
    out = x[np.maximum(rows, 0)]
    out[rows < 0] = 0
    return out[0] if np.ndim(p) == 0 else out


def window_truth(labels: np.ndarray, n_per: int, period: int = PERIOD_STEPS,
                 window: int = WINDOW_STEPS) -> np.ndarray:
    """Truth per period (module docstring): the window's single label, -1 when mixed, unlabelled or incomplete."""
    lab = np.asarray(labels, dtype=np.int64)
    ends = (np.arange(n_per) + 1) * period
    out = np.full(n_per, -1, np.int64)
    full = ends >= window
    if not full.any():
        return out
    changes = np.concatenate([[0], np.cumsum(lab[1:] != lab[:-1])])
    e = ends[full]
    single = (changes[e - 1] == changes[e - window]) & (lab[e - 1] >= 0)
    out[np.flatnonzero(full)[single]] = lab[e - 1][single]
    return out


def window_predictions(readout_vmem: np.ndarray, n_per: int, period: int = PERIOD_STEPS,
                       window: int = WINDOW_STEPS, skip_fraction: float = READOUT_SKIP_FRACTION) -> np.ndarray:
    """Prediction per period from the stitched readout membrane (L, Nout); -1 before the first full window.

    ``argmax_k mean vmem_k`` over the window's last ``(1 - skip) W`` steps, with a cumulative sum.
    """
    v = np.asarray(readout_vmem, dtype=np.float64)
    out = np.full(n_per, -1, np.int64)
    ends = (np.arange(n_per) + 1) * period
    full = ends <= len(v)
    full &= ends >= window
    if not full.any():
        return out
    t0 = readout_skip_steps(window, skip_fraction)
    cs = np.concatenate([np.zeros((1, v.shape[1])), np.cumsum(v, axis=0)])
    e = ends[full]
    means = (cs[e] - cs[e - window + t0]) / (window - t0)
    out[full] = np.argmax(means, axis=1)
    return out


__all__ = ["ImuStream", "PERIOD_STEPS", "StreamError", "WARMUP_STEPS", "WINDOW_STEPS", "frontend_chunks",
           "hapt_test_stream", "n_periods", "period_inputs", "stream_events", "stream_for_data",
           "stream_from_recordings", "synthetic_test_stream", "window_predictions", "window_truth"]
