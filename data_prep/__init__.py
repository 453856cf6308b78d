"""Data layer: recordings and windows, the standard .npz format, HAPT and synthetic sources."""

from data_prep.dataset import (
    DataError,
    Recording,
    WindowSet,
    cut_windows,
    load_npz,
    resample,
    resample_labels,
    resample_ratio,
    resample_recording,
    resample_windows,
    save_npz,
    split_by_subject,
    windows_from_recordings,
)
from data_prep.hapt import (
    HAPT_CLASS_NAMES,
    UCI_TEST_SUBJECTS,
    hapt_path,
    load_hapt_recordings,
    load_hapt_windows,
)
from data_prep.synthetic import SYNTH_CLASS_NAMES, synthetic_recordings, synthetic_windows

__all__ = [
    "DataError",
    "Recording",
    "WindowSet",
    "cut_windows",
    "load_npz",
    "resample",
    "resample_labels",
    "resample_ratio",
    "resample_recording",
    "resample_windows",
    "save_npz",
    "split_by_subject",
    "windows_from_recordings",
    "HAPT_CLASS_NAMES",
    "UCI_TEST_SUBJECTS",
    "hapt_path",
    "load_hapt_recordings",
    "load_hapt_windows",
    "SYNTH_CLASS_NAMES",
    "synthetic_recordings",
    "synthetic_windows",
]
