"""Typed containers for IMU data, the standard ``.npz`` window format, resampling,
windowing and subject splits.

Two shapes of data flow through the pipeline:

- `Recording`: one continuous accelerometer stream of one subject, with a label per sample
  (-1 where the sample belongs to no used class). Front ends run over streams.
- `WindowSet`: fixed-length windows ``x`` (N, T, C) with one label each, as models see them.

Every bad-input error raised here is a `DataError` whose message names the file or field
and says how to fix it.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.signal import resample_poly

from aspen_deploy.io import atomic_save_npz

# Largest denominator for the up/down resampling ratio: keeps resample_poly's filter short
# while matching any realistic pair of IMU rates (e.g. 52 -> 200 Hz is 50/13) exactly.
MAX_RATIO_DENOMINATOR = 1000


class DataError(ValueError):
    """Bad input data: the message names the file/field and how to fix it."""


# ---------------------------------------------------------------------------- containers


@dataclass
class Recording:
    """A continuous stream: ``acc`` float32 (L, 3) in g, ``fs`` Hz, ``labels`` int64 (L,)
    per-sample class index (-1 = unlabelled / not a used class), ``subject`` id."""

    acc: np.ndarray
    fs: float
    labels: np.ndarray
    subject: int

    def __post_init__(self) -> None:
        self.acc = np.asarray(self.acc, dtype=np.float32)
        self.labels = _as_int64(self.labels, "Recording.labels")
        self.fs = _check_fs(self.fs, "Recording.fs")
        self.subject = int(self.subject)
        if self.acc.ndim != 2 or self.acc.shape[1] != 3:
            raise DataError(
                f"Recording.acc has shape {self.acc.shape}; it must be (L, 3) accelerometer "
                "samples in g (transpose a (3, L) array)"
            )
        if not np.isfinite(self.acc).all():
            raise DataError("Recording.acc contains NaN/inf; interpolate or drop those samples first")
        if self.labels.shape != (self.acc.shape[0],):
            raise DataError(
                f"Recording.labels has shape {self.labels.shape} but acc has "
                f"{self.acc.shape[0]} samples; give one label per sample (-1 = unlabelled)"
            )

    def __len__(self) -> int:
        return int(self.acc.shape[0])


@dataclass
class WindowSet:
    """Windows ``x`` float32 (N, T, C) (C = 3 accelerometer axes in g for raw data),
    labels ``y`` int64 (N,), sample rate ``fs`` Hz, optional ``subject`` int64 (N,) and
    ``class_names``."""

    x: np.ndarray
    y: np.ndarray
    fs: float
    subject: np.ndarray | None = None
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        self.x, self.y, self.fs, self.subject, self.class_names = _validate_windows(
            self.x, self.y, self.fs, self.subject, self.class_names, where="WindowSet", allow_empty=True
        )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes: ``len(class_names)`` if known, else ``max(y) + 1``."""
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.y.max()) + 1 if self.y.size else 0

    def subset(self, idx: np.ndarray | Sequence[int] | slice) -> "WindowSet":
        """The windows selected by ``idx`` (indices, boolean mask or slice); same fs/classes."""
        return WindowSet(
            x=self.x[idx],
            y=self.y[idx],
            fs=self.fs,
            subject=None if self.subject is None else self.subject[idx],
            class_names=None if self.class_names is None else list(self.class_names),
        )


# ---------------------------------------------------------------------------- validation


def _check_fs(fs: object, where: str) -> float:
    try:
        arr = np.asarray(fs, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: fs={fs!r} is not a number; give the sample rate in Hz") from None
    if arr.size != 1:
        raise DataError(f"{where}: fs must be a scalar sample rate in Hz, got shape {arr.shape}")
    value = float(arr.reshape(()))
    if not np.isfinite(value) or value <= 0:
        raise DataError(f"{where}: fs={value} must be a positive, finite sample rate in Hz")
    return value


def _as_int64(a: object, where: str) -> np.ndarray:
    """Integer labels/ids as int64; floats are accepted only when every value is integral."""
    arr = np.asarray(a)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise DataError(
        f"{where} must hold integers (got dtype {arr.dtype}); store class indices / subject "
        "ids as int64, e.g. y.astype(np.int64)"
    )


def _validate_windows(
    x: object,
    y: object,
    fs: object,
    subject: object | None,
    class_names: object | None,
    where: str,
    allow_empty: bool = False,
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray | None, list[str] | None]:
    x = np.asarray(x)
    if x.dtype.kind not in "iuf":
        raise DataError(f"{where}: x has dtype {x.dtype}; it must be real numbers (float32 in g)")
    x = x.astype(np.float32, copy=False)
    if x.ndim != 3:
        raise DataError(f"{where}: x has shape {x.shape}; it must be 3-D (N windows, T samples, C axes)")
    n, t = x.shape[0], x.shape[1]
    if not allow_empty and (n == 0 or t == 0 or x.shape[2] == 0):
        raise DataError(f"{where}: x has shape {x.shape}; it holds no data (need N > 0 windows of T > 0 samples)")
    if not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise DataError(f"{where}: x contains {bad} NaN/inf values; drop or interpolate those windows before saving")
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{where}: y has shape {y.shape} but x has {n} windows; give one label per window, shape ({n},)")
    y = _as_int64(y, f"{where}: y")
    if y.size and y.min() < 0:
        raise DataError(f"{where}: y has negative labels (min {int(y.min())}); labels must be class indices 0..K-1")
    fs_value = _check_fs(fs, where)
    subj: np.ndarray | None = None
    if subject is not None:
        s = np.asarray(subject)
        if s.ndim != 1 or s.shape[0] != n:
            raise DataError(f"{where}: subject has shape {s.shape} but x has {n} windows; give one subject id per window")
        subj = _as_int64(s, f"{where}: subject")
    names: list[str] | None = None
    if class_names is not None:
        names = [str(c) for c in np.asarray(class_names).reshape(-1)]
        if y.size and len(names) < int(y.max()) + 1:
            raise DataError(
                f"{where}: class_names has {len(names)} entries but y uses label {int(y.max())}; "
                "list one name per class index"
            )
    return x, y, fs_value, subj, names


# ---------------------------------------------------------------------------- npz format


def load_npz(path: str | Path) -> WindowSet:
    """Read a window file in the standard format.

    Keys: ``x`` float32 (N, T, 3) accelerometer in g, ``y`` int64 (N,), ``fs`` scalar Hz,
    optional ``subject`` int64 (N,) and ``class_names`` (array of str). Loaded with
    ``allow_pickle=False``; every inconsistency raises `DataError`.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file; check the path (expected an .npz written by data_prep.save_npz)")
    # open the file ourselves: np.load(path) leaks its handle when the zip is damaged
    with open(p, "rb") as fh:
        try:
            npz = np.load(fh, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f"{p}: not a readable .npz archive ({e}); write it with numpy.savez or data_prep.save_npz") from e
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise DataError(f"{p}: holds a single array, not an .npz archive with keys x, y, fs; save with numpy.savez")
        with npz:
            arrays = _read_npz_keys(npz, p)
    x = arrays["x"]
    assert x is not None
    if x.ndim == 3 and x.shape[2] != 3:
        raise DataError(f"{p}: x has shape {x.shape}; the last axis must be the 3 accelerometer axes (N, T, 3)")
    x, y, fs, subject, names = _validate_windows(
        x, arrays["y"], arrays["fs"], arrays["subject"], arrays["class_names"], where=str(p)
    )
    return WindowSet(x=x, y=y, fs=fs, subject=subject, class_names=names)


def _read_npz_keys(npz: np.lib.npyio.NpzFile, p: Path) -> dict[str, np.ndarray | None]:
    missing = [k for k in ("x", "y", "fs") if k not in npz.files]
    if missing:
        raise DataError(f"{p}: missing key(s) {missing} (has {sorted(npz.files)}); the format needs x, y, fs")
    arrays: dict[str, np.ndarray | None] = {}
    for key in ("x", "y", "fs", "subject", "class_names"):
        if key not in npz.files:
            arrays[key] = None
            continue
        try:
            arrays[key] = npz[key]
        except ValueError as e:  # object arrays need pickle, which we refuse
            raise DataError(
                f"{p}: key {key!r} cannot be read without pickle ({e}); store strings as "
                "np.array(names, dtype=str) and numbers as numeric arrays"
            ) from e
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise DataError(f"{p}: key {key!r} is unreadable ({e}); the file is damaged, write it again") from e
    return arrays


def save_npz(path: str | Path, ws: WindowSet) -> Path:
    """Write ``ws`` atomically in the format `load_npz` reads."""
    arrays: dict[str, np.ndarray] = {
        "x": np.asarray(ws.x, dtype=np.float32),
        "y": np.asarray(ws.y, dtype=np.int64),
        "fs": np.asarray(float(ws.fs), dtype=np.float64),
    }
    if ws.subject is not None:
        arrays["subject"] = np.asarray(ws.subject, dtype=np.int64)
    if ws.class_names is not None:
        arrays["class_names"] = np.array([str(c) for c in ws.class_names], dtype=str)
    return atomic_save_npz(path, **arrays)


# ---------------------------------------------------------------------------- resampling


def resample_ratio(fs_in: float, fs_out: float) -> Fraction:
    """``up/down = Fraction(fs_out / fs_in).limit_denominator(MAX_RATIO_DENOMINATOR)``."""
    fs_in = _check_fs(fs_in, "resample: fs_in")
    fs_out = _check_fs(fs_out, "resample: fs_out")
    ratio = Fraction(fs_out / fs_in).limit_denominator(MAX_RATIO_DENOMINATOR)
    if ratio == 0:
        raise DataError(f"resample: fs_out={fs_out} is too small relative to fs_in={fs_in}")
    return ratio


def resample(a: np.ndarray, fs_in: float, fs_out: float, axis: int = 0) -> np.ndarray:
    """Polyphase resampling of ``a`` along ``axis`` from ``fs_in`` to ``fs_out`` Hz.

    ``up/down = resample_ratio(fs_in, fs_out)``; output length ``ceil(L · up / down)``;
    output sample i sits at input time ``i · down / up`` (scipy compensates the filter
    delay). The linear trend through the end points is removed before filtering and added
    back (``padtype='line'``), so a gravity offset does not droop at the edges.
    Floating inputs keep their dtype; others come back as float64.
    """
    ratio = resample_ratio(fs_in, fs_out)
    a = np.asarray(a)
    dtype = a.dtype if a.dtype.kind == "f" else np.float64
    if ratio == 1:
        return a.astype(dtype, copy=True)
    out = resample_poly(a.astype(np.float64), ratio.numerator, ratio.denominator, axis=axis, padtype="line")
    return out.astype(dtype, copy=False)


def resample_labels(labels: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Nearest-sample resampling of categorical per-sample labels.

    Output sample i takes label ``labels[round(i · down / up)]`` (clipped to the last
    sample), the same time grid `resample` produces; segment boundaries move by at most
    half an input sample.
    """
    ratio = resample_ratio(fs_in, fs_out)
    labels = np.asarray(labels)
    n_in = labels.shape[0]
    up, down = ratio.numerator, ratio.denominator
    n_out = -(-n_in * up // down)  # ceil, as resample_poly
    src = (2 * np.arange(n_out, dtype=np.int64) * down + up) // (2 * up)  # round half up, integer-exact
    return labels[np.minimum(src, n_in - 1)]


def resample_recording(rec: Recording, fs_out: float) -> Recording:
    """`rec` resampled to ``fs_out`` (acc by `resample`, labels by `resample_labels`)."""
    ratio = resample_ratio(rec.fs, fs_out)
    return Recording(
        acc=resample(rec.acc, rec.fs, fs_out, axis=0).astype(np.float32),
        fs=rec.fs * float(ratio),
        labels=resample_labels(rec.labels, rec.fs, fs_out),
        subject=rec.subject,
    )


def resample_windows(ws: WindowSet, fs_out: float) -> WindowSet:
    """Every window resampled along time (axis 1) to ``fs_out``; labels/subjects kept.

    Each window is filtered on its own; prefer resampling the streams
    (`resample_recording`) and cutting afterwards when the recordings are available."""
    ratio = resample_ratio(ws.fs, fs_out)
    return WindowSet(
        x=resample(ws.x, ws.fs, fs_out, axis=1).astype(np.float32),
        y=ws.y.copy(),
        fs=ws.fs * float(ratio),
        subject=None if ws.subject is None else ws.subject.copy(),
        class_names=ws.class_names,
    )


# ---------------------------------------------------------------------------- windows, splits


def cut_windows(
    stream: np.ndarray, labels: np.ndarray, length: int, step: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut single-label windows from a per-step array.

    Windows start at ``0, step, 2·step, …`` and span ``length`` steps; a window is kept iff
    every one of its labels is equal and ``>= 0``. With ``c[k]`` the number of label
    changes up to step k, window [s, s+length) is single-label iff ``c[s+length-1] == c[s]``.

    Returns ``(windows (N, length, C) with the stream's dtype, y int64 (N,), starts (N,))``.
    Works on any (L, C) stream: accelerometer samples or front-end event counts.
    """
    stream = np.asarray(stream)
    labels = np.asarray(labels)
    if stream.ndim != 2:
        raise DataError(f"cut_windows: stream has shape {stream.shape}; it must be (L, C) (use x[:, None] for one channel)")
    if labels.shape != (stream.shape[0],):
        raise DataError(f"cut_windows: labels have shape {labels.shape} but the stream has {stream.shape[0]} steps")
    if int(length) != length or length <= 0 or int(step) != step or step <= 0:
        raise DataError(f"cut_windows: length={length} and step={step} must be positive integers")
    length, step = int(length), int(step)
    n_steps, n_ch = stream.shape
    if n_steps < length:
        return (np.empty((0, length, n_ch), stream.dtype), np.empty(0, np.int64), np.empty(0, np.int64))
    starts = np.arange(0, n_steps - length + 1, step, dtype=np.int64)
    changes = np.concatenate([[0], np.cumsum(labels[1:] != labels[:-1])])
    keep = (changes[starts + length - 1] == changes[starts]) & (labels[starts] >= 0)
    starts = starts[keep]
    windows = np.lib.stride_tricks.sliding_window_view(stream, length, axis=0)[starts]  # (N, C, length)
    return np.ascontiguousarray(windows.transpose(0, 2, 1)), labels[starts].astype(np.int64), starts


def windows_from_recordings(
    recordings: Sequence[Recording],
    length: int,
    step: int,
    class_names: Sequence[str] | None = None,
) -> WindowSet:
    """`cut_windows` over every recording, concatenated, with each window's subject.

    All recordings must share one sample rate."""
    if not recordings:
        raise DataError("windows_from_recordings: no recordings given")
    rates = {r.fs for r in recordings}
    if len(rates) != 1:
        raise DataError(f"windows_from_recordings: recordings have different rates {sorted(rates)} Hz; resample them first")
    xs, ys, ss = [], [], []
    for r in recordings:
        w, y, _ = cut_windows(r.acc, r.labels, length, step)
        xs.append(w)
        ys.append(y)
        ss.append(np.full(len(y), r.subject, np.int64))
    if sum(len(y) for y in ys) == 0:
        raise DataError(
            f"windows_from_recordings: no single-label stretch of {length} samples in "
            f"{len(recordings)} recordings; use shorter windows or longer labelled segments"
        )
    return WindowSet(
        x=np.concatenate(xs),
        y=np.concatenate(ys),
        fs=rates.pop(),
        subject=np.concatenate(ss),
        class_names=None if class_names is None else list(class_names),
    )


def split_by_subject(
    subjects: np.ndarray,
    test_subjects: Sequence[int],
    n_val_subjects: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``(train, val, test)`` into ``subjects`` with no subject in two parts.

    Test = windows of ``test_subjects``; ``n_val_subjects`` validation subjects are drawn
    without replacement by ``np.random.default_rng(seed)`` from the sorted remaining
    subjects; train = the rest.
    """
    subjects = _as_int64(np.asarray(subjects).reshape(-1), "split_by_subject: subjects")
    present = np.unique(subjects)
    test = np.unique(np.asarray(list(test_subjects), dtype=np.int64))
    absent = np.setdiff1d(test, present)
    if absent.size:
        raise DataError(
            f"split_by_subject: test subjects {absent.tolist()} do not occur in the data "
            f"(subjects present: {present.tolist()}); choose test subjects from those"
        )
    rest = np.setdiff1d(present, test)
    if not 0 <= n_val_subjects < rest.size:
        raise DataError(
            f"split_by_subject: n_val_subjects={n_val_subjects} but only {rest.size} non-test "
            f"subjects remain; keep at least one for training (0 <= n_val_subjects < {rest.size})"
        )
    val = np.sort(np.random.default_rng(seed).choice(rest, size=n_val_subjects, replace=False))
    is_test = np.isin(subjects, test)
    is_val = np.isin(subjects, val)
    return (
        np.flatnonzero(~is_test & ~is_val),
        np.flatnonzero(is_val),
        np.flatnonzero(is_test),
    )
