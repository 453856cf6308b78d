"""Data source -> event-count windows (N, T, 15) split by subject: the input of every model.

Streaming sources (HAPT, synthetic) go through the front end the way the chip sees them:
each whole recording is resampled to 200 Hz and filtered and encoded as one stream, and
windows of 2.56 s (512 steps, 50 % overlap, one label) are cut from the *event* stream, so no
window starts from rest. `.npz` windows carry no context; each is filtered after a "hold"
warm-up (the filters settle on the window's first sample held for 2 s), which removes the
start-up transient instead of inventing a past.

The encoder and its per-channel registers are chosen from the training split only
(`data_prep.frontend.choose_encoder`) unless saved front-end settings are given.
Results are cached on disk (``$ASPEN_CACHE_DIR`` or ``~/.cache/aspen_deploy``) keyed by
everything that determines them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aspen_deploy import chip
from aspen_deploy.io import atomic_save_npz
from data_prep.dataset import DataError, Recording, cut_windows, load_npz, resample_recording, resample_windows, \
    split_by_subject
from data_prep.frontend import FrontEndSettings, choose_encoder, encode, filter_streams, filter_windows, \
    format_encoder_report

WINDOW_STEPS = 512  # 2.56 s at 200 Hz, as UCI-HAR's windows
WINDOW_HOP = 256
N_VAL_SUBJECTS = 3
ENCODER_CHOICE_WINDOWS = 3000  # training windows used to choose the encoder (speed)
PIPELINE_VERSION = 1  # bump when the event computation changes, to invalidate caches


@dataclass
class EventWindows:
    x: np.ndarray  # uint8 (N, T, 15) event counts
    y: np.ndarray  # int64 (N,)
    subject: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class EventData:
    train: EventWindows
    val: EventWindows
    test: EventWindows
    class_names: list[str]
    frontend: FrontEndSettings
    spec: dict[str, Any]
    encoder_report: dict[str, Any] | None = field(default=None)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def describe_frontend(fe: FrontEndSettings) -> str:
    bands = ", ".join(f"{lo:g}-{hi:g}" for lo, hi in fe.bands)
    vals = fe.encoder.values
    return f"bands {bands} Hz, {fe.encoder.kind} encoder ({min(vals)}..{max(vals)})"


def prepare_events(source: str, frontend: dict | None = None, seed: int = 0,
                   log: Callable[[str], Any] | None = None, use_cache: bool = True) -> EventData:
    """Load ``source`` (``hapt``, ``synthetic`` or a path to a standard ``.npz``) as event windows."""
    log = log or (lambda s: None)
    spec = _source_spec(source, seed)
    fe_given = FrontEndSettings.from_dict(frontend) if frontend else None
    key = _cache_key(spec, fe_given)
    cache = _cache_dir() / f"events-{key}.npz"
    if use_cache and cache.exists():
        try:
            return _load_cache(cache, spec)
        except (OSError, ValueError, KeyError):
            cache.unlink(missing_ok=True)  # a damaged cache file is rebuilt, not trusted
    if spec["source"] == "npz":
        data = _from_windows(load_npz(spec["path"]), spec, fe_given, seed, log)
    else:
        recs, class_names, test_subjects = source_recordings(spec)
        data = _from_recordings(recs, class_names, test_subjects, spec, fe_given, seed, log)
    if use_cache:
        _save_cache(cache, data)
        if fe_given is None:  # the same events, asked for later with the chosen front end
            _link_cache(cache, _cache_dir() / f"events-{_cache_key(spec, data.frontend)}.npz", data)
    return data


# ---------------------------------------------------------------------------- sources
def _source_spec(source: str, seed: int) -> dict[str, Any]:
    s = str(source)
    if s in ("hapt", "synthetic"):
        return {"source": s, "source_arg": s, "seed": seed}
    p = Path(s)
    if p.suffix.lower() != ".npz":
        raise DataError(f"unknown data source '{s}': use hapt, synthetic, or a path to a .npz in the standard format")
    if not p.is_file():
        raise DataError(f"data file not found: {p}")
    st = p.stat()
    return {"source": "npz", "source_arg": str(p.resolve()), "path": str(p.resolve()), "seed": seed,
            "mtime_ns": st.st_mtime_ns, "size": st.st_size}


def source_recordings(spec: dict[str, Any]) -> tuple[list[Recording], list[str], tuple[int, ...]]:
    """Recordings, class names and test subjects of a streaming source (``spec``: ``source`` "hapt" or
    "synthetic", ``seed``); the controller's test stream (`aspen_deploy.control.stream`) uses it too."""
    if spec["source"] == "hapt":
        from data_prep.hapt import HAPT_CLASS_NAMES, UCI_TEST_SUBJECTS, load_hapt_recordings

        return load_hapt_recordings(), list(HAPT_CLASS_NAMES), tuple(UCI_TEST_SUBJECTS)
    from data_prep.synthetic import SYNTH_CLASS_NAMES, synthetic_recordings

    recs = synthetic_recordings(n_subjects=6, seconds_per_activity=24.0, seed=spec["seed"])
    return recs, list(SYNTH_CLASS_NAMES), (max(r.subject for r in recs),)


def _split(subject: np.ndarray, test_subjects: tuple[int, ...], seed: int) -> tuple[np.ndarray, ...]:
    n_rest = len(np.setdiff1d(np.unique(subject), test_subjects))
    return split_by_subject(subject, test_subjects, min(N_VAL_SUBJECTS, max(n_rest - 1, 0)), seed=seed)


def _from_recordings(recs: list[Recording], class_names: list[str], test_subjects: tuple[int, ...],
                     spec: dict[str, Any], fe: FrontEndSettings | None, seed: int, log: Callable) -> EventData:
    recs = [resample_recording(r, chip.IMU_FS_HZ) for r in recs]
    subjects = np.array([r.subject for r in recs])
    log(f"front end: filtering {len(recs)} recordings "
        f"({sum(len(r) for r in recs) / chip.IMU_FS_HZ / 3600:.2f} h at 200 Hz) as continuous streams")
    base = fe or FrontEndSettings()
    filtered = filter_streams([r.acc for r in recs], base)
    _, val_rec, test_rec = _split(subjects, test_subjects, seed)
    report = None
    if fe is None:
        held = set(val_rec) | set(test_rec)
        train_rec = [i for i in range(len(recs)) if i not in held]
        fw, fy, fs = [], [], []
        for i in train_rec:
            w, y, _ = cut_windows(filtered[i], recs[i].labels, WINDOW_STEPS, WINDOW_HOP)
            fw.append(w)
            fy.append(y)
            fs.append(np.full(len(y), recs[i].subject))
        fw_all, fy_all, fs_all = np.concatenate(fw), np.concatenate(fy), np.concatenate(fs)
        pick = np.random.default_rng(seed).permutation(len(fy_all))[:ENCODER_CHOICE_WINDOWS]
        encoder, report = choose_encoder(fw_all[pick], fy_all[pick], groups=fs_all[pick])
        log(format_encoder_report(report))
        fe = base.with_encoder(encoder)
    xs, ys, ss = [], [], []
    for r, f in zip(recs, filtered):
        counts = encode(f[None], fe.encoder)[0][0]  # the encoder also never resets
        w, y, _ = cut_windows(counts, r.labels, WINDOW_STEPS, WINDOW_HOP)
        xs.append(w)
        ys.append(y)
        ss.append(np.full(len(y), r.subject, np.int64))
    x, y, s = np.concatenate(xs), np.concatenate(ys), np.concatenate(ss)
    if len(y) == 0:
        raise DataError("no single-label windows of 2.56 s in the data")
    tr, va, te = _split(s, test_subjects, seed)
    log(f"windows: {len(tr)} train / {len(va)} validation / {len(te)} test "
        f"(test subjects {list(test_subjects)}); {describe_frontend(fe)}")
    return EventData(EventWindows(x[tr], y[tr], s[tr]), EventWindows(x[va], y[va], s[va]),
                     EventWindows(x[te], y[te], s[te]), class_names, fe, spec, report)


def _from_windows(ws: Any, spec: dict[str, Any], fe: FrontEndSettings | None, seed: int, log: Callable) -> EventData:
    ws = resample_windows(ws, chip.IMU_FS_HZ) if ws.fs != chip.IMU_FS_HZ else ws
    class_names = list(ws.class_names) if ws.class_names is not None else [f"class_{c}" for c in range(ws.n_classes)]
    if ws.subject is not None and len(np.unique(ws.subject)) >= 3:
        subs = np.unique(ws.subject)
        rng = np.random.default_rng(seed)
        test_subjects = tuple(int(v) for v in rng.choice(subs, size=max(1, len(subs) // 5), replace=False))
        tr, va, te = _split(ws.subject, test_subjects, seed)
        how = f"by subject (test subjects {sorted(test_subjects)})"
    else:
        tr, va, te = _stratified_split(ws.y, seed)
        how = "stratified at random (no subject ids)"
    if min(len(tr), len(va), len(te)) == 0:
        raise DataError(f"{spec['path']}: too few windows to split into train/validation/test ({len(ws.y)} windows)")
    log(f"front end: {len(ws.y)} windows without context, each filtered after a 2 s hold warm-up")
    base = fe or FrontEndSettings()
    filtered = filter_windows(ws.x, base, warmup="hold")
    report = None
    if fe is None:
        pick = tr[np.random.default_rng(seed).permutation(len(tr))[:ENCODER_CHOICE_WINDOWS]]
        encoder, report = choose_encoder(filtered[pick], ws.y[pick],
                                         groups=None if ws.subject is None else ws.subject[pick])
        log(format_encoder_report(report))
        fe = base.with_encoder(encoder)
    x = encode(filtered, fe.encoder)[0]
    s = ws.subject if ws.subject is not None else np.zeros(len(ws.y), np.int64)
    log(f"windows: {len(tr)} train / {len(va)} validation / {len(te)} test, split {how}; {describe_frontend(fe)}")
    return EventData(EventWindows(x[tr], ws.y[tr], s[tr]), EventWindows(x[va], ws.y[va], s[va]),
                     EventWindows(x[te], ws.y[te], s[te]), class_names, fe, spec, report)


def _stratified_split(y: np.ndarray, seed: int, fractions: tuple[float, float] = (0.15, 0.15)) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    tr, va, te = [], [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_te = max(1, int(round(len(idx) * fractions[1]))) if len(idx) >= 3 else 0
        n_va = max(1, int(round(len(idx) * fractions[0]))) if len(idx) >= 3 else 0
        te.append(idx[:n_te])
        va.append(idx[n_te:n_te + n_va])
        tr.append(idx[n_te + n_va:])
    return tuple(np.sort(np.concatenate(p)).astype(np.int64) for p in (tr, va, te))


# ---------------------------------------------------------------------------- cache
def _cache_dir() -> Path:
    return Path(os.environ.get("ASPEN_CACHE_DIR", Path.home() / ".cache" / "aspen_deploy"))


def _cache_key(spec: dict[str, Any], fe: FrontEndSettings | None) -> str:
    blob = json.dumps({"v": PIPELINE_VERSION, "spec": spec, "fe": fe.to_dict() if fe else None,
                       "window": [WINDOW_STEPS, WINDOW_HOP, N_VAL_SUBJECTS, ENCODER_CHOICE_WINDOWS]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _save_cache(path: Path, d: EventData) -> None:
    arrays = {}
    for part in ("train", "val", "test"):
        w = getattr(d, part)
        arrays.update({f"{part}_x": w.x, f"{part}_y": w.y, f"{part}_subject": w.subject})
    meta = {"class_names": d.class_names, "frontend": d.frontend.to_dict(), "encoder_report": d.encoder_report}
    try:
        atomic_save_npz(path, meta=np.array(json.dumps(meta)), **arrays)
    except OSError:
        pass  # a cache that cannot be written costs time, not results


def _link_cache(src: Path, dst: Path, d: EventData) -> None:
    """``dst`` as a second name of the cache file ``src`` (one copy on disk); saved anew if linking fails."""
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.link")
    try:
        os.link(src, tmp)
        os.replace(tmp, dst)  # replaces an older dst, as a save would
    except OSError:  # no hard links here (or src was not written)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        _save_cache(dst, d)


def _load_cache(path: Path, spec: dict[str, Any]) -> EventData:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        parts = [EventWindows(z[f"{p}_x"], z[f"{p}_y"], z[f"{p}_subject"]) for p in ("train", "val", "test")]
    return EventData(*parts, meta["class_names"], FrontEndSettings.from_dict(meta["frontend"]), spec,
                     meta["encoder_report"])
