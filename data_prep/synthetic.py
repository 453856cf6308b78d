"""Seeded synthetic waist-worn IMU recordings of six activities, for fast tests.

Body frame: x forward, y left, z up; an accelerometer at rest reads +1 g along world-up.
Each activity is gravity (world-up seen in the body frame, set by the posture's pitch and
roll) plus, for the dynamic ones, a periodic gait signal:

    phase(t) = 2π ∫ f_step · (1 + 0.03 · m(t)) dt                  (m: smooth unit noise)
    vertical = A_v · a(t) · (sin φ + 0.35 sin(2φ + φ2) + 0.15 sin(3φ + φ3)) + A_imp · pulse(φ)
    forward  = A_f · a(t) · (cos φ + 0.3 sin(2φ + φ4))
    lateral  = A_l · a(t) · sin(φ/2 + φ5)                           (sway at stride rate)

with ``pulse(φ) = exp(-½ (wrap(φ - φ_imp) / σ)²)`` a heel-strike spike per step. Static
postures sway their pitch/roll slowly and carry a small 8-12 Hz tremor. A subject's sensor
reads ``gain ⊙ (R · a_body) + bias + noise`` with a random rotation R (up to
``max_rotation_deg``), per-axis gain and bias, and white noise; cadence and intensity also
vary per subject. Segments of each activity come in random order, joined by 1-2 s
transitions (labelled -1) that blend the two gravity directions with a small movement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from data_prep.dataset import DataError, Recording, WindowSet, windows_from_recordings

SYNTH_CLASS_NAMES = ["walking", "walking_upstairs", "walking_downstairs", "sitting", "standing", "laying"]


@dataclass(frozen=True)
class ActivitySpec:
    """Gait (step rate Hz, amplitudes in g) and posture (pitch/roll in degrees, sway)."""

    step_hz: float = 0.0  # 0 = static posture
    amp_vertical: float = 0.0
    amp_forward: float = 0.0
    amp_lateral: float = 0.0
    amp_impact: float = 0.0
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    sway_deg: float = 0.0
    tremor_g: float = 0.0


ACTIVITIES: dict[str, ActivitySpec] = {
    "walking": ActivitySpec(step_hz=1.9, amp_vertical=0.22, amp_forward=0.12, amp_lateral=0.06, pitch_deg=3.0),
    "walking_upstairs": ActivitySpec(step_hz=1.55, amp_vertical=0.32, amp_forward=0.07, amp_lateral=0.08, pitch_deg=14.0),
    "walking_downstairs": ActivitySpec(
        step_hz=2.15, amp_vertical=0.26, amp_forward=0.10, amp_lateral=0.07, amp_impact=0.45, pitch_deg=-6.0
    ),
    "sitting": ActivitySpec(pitch_deg=-35.0, sway_deg=1.0, tremor_g=0.002),
    "standing": ActivitySpec(pitch_deg=0.0, sway_deg=2.5, tremor_g=0.004),
    "laying": ActivitySpec(pitch_deg=85.0, roll_deg=0.0, sway_deg=1.0, tremor_g=0.002),
}


@dataclass(frozen=True)
class SubjectParams:
    rotation: np.ndarray  # (3, 3) body -> sensor
    gain: np.ndarray  # (3,)
    bias: np.ndarray  # (3,) g
    noise_g: float
    cadence: float  # multiplies step_hz
    intensity: float  # multiplies gait amplitudes


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: ``R = I + sin θ K + (1 - cos θ) K²`` for unit ``axis``."""
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def _smooth_noise(rng: np.random.Generator, n: int, fs: float, knot_s: float = 0.5) -> np.ndarray:
    """Unit-variance noise varying on a ``knot_s`` time scale (linear interpolation of knots)."""
    n_knots = int(np.ceil(n / fs / knot_s)) + 2
    return np.interp(np.arange(n) / fs / knot_s, np.arange(n_knots), rng.standard_normal(n_knots))


def _up_vector(pitch_deg: np.ndarray | float, roll_deg: np.ndarray | float) -> np.ndarray:
    """World-up in the body frame for a trunk pitched forward / rolled left: (..., 3)."""
    p, r = np.deg2rad(pitch_deg), np.deg2rad(roll_deg)
    return np.stack(np.broadcast_arrays(np.sin(p), np.cos(p) * np.sin(r), np.cos(p) * np.cos(r)), axis=-1)


def _segment(
    spec: ActivitySpec, n: int, fs: float, subj: SubjectParams, rng: np.random.Generator
) -> np.ndarray:
    """Body-frame specific force (n, 3) in g for one segment of one activity."""
    t = np.arange(n) / fs
    # each segment is performed a little differently (how one sits, lies, leans)
    pitch = spec.pitch_deg + rng.uniform(-4, 4) + spec.sway_deg * _smooth_noise(rng, n, fs, 2.0)
    roll = spec.roll_deg + rng.uniform(-4, 4) + spec.sway_deg * _smooth_noise(rng, n, fs, 2.0)
    if spec.step_hz == 0.0 and spec.pitch_deg > 45:  # lying: on the back or turned to a side
        roll = roll + rng.uniform(-25, 25)
    a = _up_vector(pitch, roll)
    if spec.tremor_g:
        tremor_hz = rng.uniform(8, 12)
        a += spec.tremor_g * np.sin(2 * np.pi * tremor_hz * t[:, None] + rng.uniform(0, 2 * np.pi, 3))
    if spec.step_hz:
        f = spec.step_hz * subj.cadence * (1 + 0.03 * _smooth_noise(rng, n, fs, 1.0))
        phi = 2 * np.pi * np.cumsum(f) / fs + rng.uniform(0, 2 * np.pi)
        amp = subj.intensity * (1 + 0.1 * _smooth_noise(rng, n, fs, 1.0))
        ph = rng.uniform(0, 2 * np.pi, 5)
        vertical = spec.amp_vertical * amp * (np.sin(phi) + 0.35 * np.sin(2 * phi + ph[0]) + 0.15 * np.sin(3 * phi + ph[1]))
        if spec.amp_impact:
            sigma = 2 * np.pi * spec.step_hz * 0.015  # a 15 ms heel strike, in radians of phase
            wrapped = (phi - ph[2] + np.pi) % (2 * np.pi) - np.pi
            vertical += spec.amp_impact * amp * np.exp(-0.5 * (wrapped / sigma) ** 2)
        forward = spec.amp_forward * amp * (np.cos(phi) + 0.3 * np.sin(2 * phi + ph[3]))
        lateral = spec.amp_lateral * amp * np.sin(phi / 2 + ph[4])
        a += np.stack([forward, lateral, vertical], axis=1)
    return a


def _transition(a_from: np.ndarray, a_to: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Raised-cosine blend ``(1 - w) a_from + w a_to`` plus a bump ``0.15 g · sin(π w)``."""
    w = (0.5 - 0.5 * np.cos(np.pi * np.linspace(0, 1, n)))[:, None]
    bump = rng.uniform(0.05, 0.2) * np.sin(np.pi * w) * rng.normal(size=3)
    return (1 - w) * a_from + w * a_to + bump


def _subject_params(rng: np.random.Generator, max_rotation_deg: float) -> SubjectParams:
    return SubjectParams(
        rotation=_rotation(rng.normal(size=3), np.deg2rad(rng.uniform(0, max_rotation_deg))),
        gain=1 + rng.uniform(-0.05, 0.05, 3),
        bias=rng.uniform(-0.03, 0.03, 3),
        noise_g=float(rng.uniform(0.005, 0.02)),
        cadence=float(rng.uniform(0.92, 1.08)),
        intensity=float(rng.uniform(0.85, 1.15)),
    )


def _check_args(n_subjects: int, seconds_per_activity: float, fs: float, activities: Sequence[str]) -> None:
    if int(n_subjects) != n_subjects or n_subjects < 1:
        raise DataError(f"synthetic: n_subjects={n_subjects} must be a positive integer")
    if not (np.isfinite(seconds_per_activity) and seconds_per_activity > 0):
        raise DataError(f"synthetic: seconds_per_activity={seconds_per_activity} must be positive")
    if not (np.isfinite(fs) and fs > 0):
        raise DataError(f"synthetic: fs={fs} must be a positive sample rate in Hz")
    unknown = [a for a in activities if a not in ACTIVITIES]
    if not activities or unknown or len(set(activities)) != len(activities):
        raise DataError(
            f"synthetic: activities {list(activities)} must be distinct names from {SYNTH_CLASS_NAMES}"
        )


def synthetic_recordings(
    n_subjects: int = 4,
    seconds_per_activity: float = 20.0,
    fs: float = 50.0,
    seed: int = 0,
    activities: Sequence[str] = tuple(SYNTH_CLASS_NAMES),
    segments_per_activity: int = 3,
    max_rotation_deg: float = 15.0,
) -> list[Recording]:
    """One continuous `Recording` per subject (ids 1..n_subjects), values in g, float32.

    Each activity is split into ``segments_per_activity`` segments (random lengths summing
    to ``seconds_per_activity``), shuffled, and joined by 1-2 s transitions labelled -1.
    Labels index ``activities``. Subject k draws from ``SeedSequence(seed).spawn(...)[k]``,
    so it does not change when more subjects are asked for.
    """
    activities = list(activities)
    _check_args(n_subjects, seconds_per_activity, fs, activities)
    recs = []
    for k, ss in enumerate(np.random.SeedSequence(seed).spawn(int(n_subjects))):
        rng = np.random.default_rng(ss)
        subj = _subject_params(rng, max_rotation_deg)
        order = rng.permutation(np.repeat(np.arange(len(activities)), segments_per_activity))
        share = {c: rng.uniform(0.7, 1.3, segments_per_activity) for c in range(len(activities))}
        used = {c: 0 for c in range(len(activities))}
        parts: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        for c in order:
            seconds = seconds_per_activity * share[c][used[c]] / share[c].sum()
            used[c] += 1
            seg = _segment(ACTIVITIES[activities[c]], max(1, int(round(seconds * fs))), fs, subj, rng)
            if parts:
                n_tr = max(1, int(round(rng.uniform(1.0, 2.0) * fs)))
                parts.append(_transition(parts[-1][-1], seg[0], n_tr, rng))
                labels.append(np.full(n_tr, -1, np.int64))
            parts.append(seg)
            labels.append(np.full(len(seg), c, np.int64))
        body = np.concatenate(parts)
        sensor = body @ subj.rotation.T * subj.gain + subj.bias
        sensor += subj.noise_g * rng.standard_normal(sensor.shape)
        recs.append(Recording(acc=sensor.astype(np.float32), fs=float(fs), labels=np.concatenate(labels), subject=k + 1))
    return recs


def synthetic_windows(
    n_subjects: int = 4,
    seconds_per_activity: float = 20.0,
    fs: float = 50.0,
    seed: int = 0,
    activities: Sequence[str] = tuple(SYNTH_CLASS_NAMES),
    window_s: float = 2.56,
    step_s: float = 1.28,
) -> WindowSet:
    """Single-label windows of ``window_s`` seconds every ``step_s`` from `synthetic_recordings`."""
    recs = synthetic_recordings(n_subjects, seconds_per_activity, fs, seed, activities)
    return windows_from_recordings(
        recs, int(round(window_s * fs)), int(round(step_s * fs)), class_names=list(activities)
    )
