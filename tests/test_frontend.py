"""Tests of data_prep.frontend: bit-exact agreement with Rockpool's IMU IF model, streaming,
encoder semantics, settings round trip and the encoder chooser."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data_prep import frontend as fe

FS = 200.0


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    """Deterministic (L, 3) acceleration in g: gravity + sines across the bands + a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    x = 0.05 + 0.30 * np.sin(2 * np.pi * 1.5 * t) + 0.15 * np.sin(2 * np.pi * 6.0 * t + 0.3)
    y = -0.60 + 0.40 * np.sin(2 * np.pi * 0.5 * t) + 0.10 * np.sin(2 * np.pi * 12.0 * t)
    z = 0.80 + 0.20 * np.sin(2 * np.pi * 3.0 * t + 1.0) + 0.08 * np.sin(2 * np.pi * 24.0 * t)
    return np.stack([x, y, z], axis=1) + 0.02 * rng.standard_normal((len(t), 3))


@pytest.fixture(scope="module")
def imuif():
    """Rockpool's IMU IF submodules, imported without samna."""
    from aspen_deploy.rockpool_compat import imuif_module

    return imuif_module()


@pytest.fixture(scope="module")
def imuif_sim_cls():
    from aspen_deploy.rockpool_compat import imuif_sim_class

    return imuif_sim_class()


# ---------------------------------------------------------------------------- filters
@pytest.mark.parametrize("band", fe.DEFAULT_BANDS + fe.CHIP_DEFAULT_BANDS + ((0.5, 3.0), (20.0, 60.0)))
def test_design_matches_rockpool(imuif, band):
    ours = fe.design_bandpass(*band)
    ref = imuif.BandPassFilter.from_specification(*band)
    assert ours.to_dict() == {k: int(getattr(ref, k)) for k in ("B_b", "B_wf", "B_af", "a1", "a2")}


@pytest.mark.parametrize("band", [(2.0, 1.0), (0.0, 1.0), (10.0, 100.0), (0.01, 0.1)])
def test_design_rejects_impossible_bands(band):
    # (0.01, 0.1) Hz quantizes to a pole exactly on the unit circle with 15-bit taps.
    with pytest.raises(fe.FrontEndError):
        fe.design_bandpass(*band)


def test_filter_bank_bit_exact_with_rockpool_filters(imuif):
    """From rest, every channel equals Rockpool's BandPassFilter (compute_AR + compute_MA)."""
    settings = fe.FrontEndSettings()
    acc = fe.quantize_acc(_signal(3.0))
    ours, _ = fe.filter_bank(acc[None], settings.bank())
    for c, p in enumerate(settings.filter_params()):
        ref = imuif.BandPassFilter(**p.to_dict())(acc[:, c // fe.N_BANDS].astype(object))
        np.testing.assert_array_equal(ours[0, :, c], np.asarray(ref, dtype=np.int64), err_msg=f"channel {c}")
    assert np.abs(ours).max() > 100  # the comparison is not between two silences


@pytest.mark.parametrize("kind", ["scale", "iaf"])
@pytest.mark.parametrize("bands", [fe.DEFAULT_BANDS, fe.CHIP_DEFAULT_BANDS])
def test_bit_exact_with_imuif_sim(imuif, imuif_sim_cls, kind, bands):
    """IMUIFSim (no rotation removal) == our front end with Rockpool's mirror warm-up, bit for bit."""
    settings = fe.FrontEndSettings(bands=bands)
    x = np.stack([_signal(2.0, seed=1), _signal(2.0, seed=2)[::-1] * 1.5])
    acc = fe.quantize_acc(x)
    filtered = fe.filter_windows_int(acc, settings.bank(), warmup="mirror")
    if kind == "scale":
        enc = fe.EncoderSettings.scale([2, 3, 4, 5, 6] * 3)
        kw = dict(select_iaf_output=False, scale_values=list(enc.values))
    else:
        enc = fe.EncoderSettings.iaf([int(v) for v in np.linspace(40, 2000, 15)])
        kw = dict(select_iaf_output=True, iaf_threshold_values=list(enc.values))
    sim = imuif_sim_cls(
        shape=(3, 15),
        bypass_jsvd=True,
        filter_list=[imuif.BandPassFilter(**p.to_dict()) for p in settings.filter_params()],
        **kw,
    )
    ref, _, _ = sim(acc.astype(object))
    ours, _ = fe.encode(filtered, enc)
    np.testing.assert_array_equal(ours, np.asarray(ref, dtype=np.int64))
    assert ours.sum() > 200 and len(np.unique(ours)) > 1  # non-trivial events on both sides


# ---------------------------------------------------------------------------- streaming
def test_chunked_streaming_equals_one_shot():
    settings = fe.FrontEndSettings(encoder=fe.EncoderSettings.iaf(300))
    g = _signal(6.0, seed=3)
    whole = fe.run_stream(g, settings)
    cuts = [0, 1, 2, 250, 251, 700, len(g)]
    state, parts = None, []
    for a, b in zip(cuts[:-1], cuts[1:]):
        c, state = fe.run_stream_chunk(g[a:b], settings, state)
        parts.append(c)
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert whole.sum() > 100
    # and the filter outputs themselves, at the integer level
    acc = fe.quantize_acc(g)[None]
    bank = settings.bank()
    one, s_one = fe.filter_bank(acc, bank)
    s, chunks = None, []
    for a, b in zip(cuts[:-1], cuts[1:]):
        y, s = fe.filter_bank(acc[:, a:b], bank, s)
        chunks.append(y)
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), one)
    np.testing.assert_array_equal(s.w1, s_one.w1)


def test_filter_streams_batches_recordings_of_different_lengths():
    settings = fe.FrontEndSettings()
    recs = [_signal(1.0, 4), _signal(2.5, 5), _signal(0.2, 6)]
    batched = fe.filter_streams(recs, settings)
    for r, y in zip(recs, batched):
        np.testing.assert_array_equal(y, fe.filter_stream(r, settings))
    counts = fe.run_streams(recs, settings)
    np.testing.assert_array_equal(counts[1], fe.run_stream(recs[1], settings))


def test_hold_warmup_removes_the_gravity_transient():
    """A tilted device at rest: "hold" gives silence, "rest" a start-up transient; and a
    window after 30 s of rest in the stream matches "hold" to within 1 LSB (measured)."""
    settings = fe.FrontEndSettings()
    still = np.tile([[0.3, -0.5, 0.8]], (400, 1))[None]
    assert np.abs(fe.filter_windows(still, settings, "hold")).max() == 0
    assert np.abs(fe.filter_windows(still, settings, "rest")).max() > 500
    win = _signal(2.56, seed=7)
    pre = np.repeat(win[:1], int(30 * FS), axis=0)
    stream = fe.filter_stream(np.concatenate([pre, win]), settings)[len(pre) :]
    hold = fe.filter_windows(win[None], settings, "hold")[0]
    assert np.abs(hold.astype(np.int64) - stream).max() <= 1
    assert np.abs(stream).max() > 100


# ---------------------------------------------------------------------------- encoders
def test_scale_encoder_semantics():
    rng = np.random.default_rng(0)
    y = rng.integers(-(2**23), 2**23, size=(2, 300, 15)).astype(np.int32)
    y[0, :15, :] = 0
    shifts = np.arange(15) + 3
    counts, _ = fe.encode(y, fe.EncoderSettings.scale(shifts))
    assert counts.dtype == np.uint8 and counts.shape == y.shape
    expected = np.minimum(np.abs(y.astype(np.int64)) >> shifts, 15)
    np.testing.assert_array_equal(counts, expected)
    assert counts.max() == 15 and counts.min() == 0


def test_iaf_encoder_at_most_one_event_per_step_and_conserves_charge():
    rng = np.random.default_rng(1)
    y = rng.integers(-500, 500, size=(3, 400, 15)).astype(np.int32)
    # threshold above every |y|: no step can cross twice, so events = floor(sum |y| / th)
    th = 600
    counts, state = fe.encode(y, fe.EncoderSettings.iaf(th))
    assert counts.max() == 1
    total = np.abs(y.astype(np.int64)).sum(axis=1)
    np.testing.assert_array_equal(counts.sum(axis=1), total // th)
    np.testing.assert_array_equal(state.residual, total % th)
    # tiny threshold: a step with |y| >= th always crosses, often several times: one event
    counts_small, _ = fe.encode(y, fe.EncoderSettings.iaf(5))
    assert counts_small.max() == 1
    assert np.all(counts_small[np.abs(y) >= 5] == 1)
    assert (np.abs(y) >= 10).mean() > 0.9  # most steps would have crossed at least twice


def test_encoder_settings_validate_register_ranges():
    with pytest.raises(fe.FrontEndError, match="threshold"):
        fe.EncoderSettings.iaf(0)
    with pytest.raises(fe.FrontEndError, match="shift"):
        fe.EncoderSettings.scale(32)
    with pytest.raises(fe.FrontEndError, match="15"):
        fe.EncoderSettings("iaf", (100,) * 14)
    with pytest.raises(fe.FrontEndError):
        fe.EncoderSettings("rate", (1,) * 15)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- settings
def test_settings_round_trip_and_json():
    default = fe.FrontEndSettings()
    assert default.bands == fe.DEFAULT_BANDS and default.encoder.kind == "iaf" and not default.rotation_removal
    s = fe.FrontEndSettings(
        bands=fe.CHIP_DEFAULT_BANDS, encoder=fe.EncoderSettings.scale(list(range(15))), rotation_removal=True
    )
    d = json.loads(json.dumps(s.to_dict()))
    assert len(d["filters"]) == 15 and d["encoder"] == {"kind": "scale", "shifts": list(range(15))}
    assert fe.FrontEndSettings.from_dict(d) == s
    # explicit registers that differ from the band design are kept, and are what runs
    d2 = fe.FrontEndSettings().to_dict()
    d2["filters"][0]["a2"] += 1
    s2 = fe.FrontEndSettings.from_dict(d2)
    assert s2.filters is not None and s2.filter_params()[0].a2 == d2["filters"][0]["a2"]
    assert fe.FrontEndSettings.from_dict(s2.to_dict()) == s2
    assert fe.FrontEndSettings.from_dict(fe.FrontEndSettings().to_dict()).filters is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("encoder"),
        lambda d: d["encoder"].update(kind="delta"),
        lambda d: d["encoder"].pop("thresholds"),
        lambda d: d["filters"][3].pop("a1"),
        lambda d: d["filters"][3].update(B_b=16),
        lambda d: d.update(bands_hz=[[1, 2]] * 4),
        lambda d: d.update(bands_hz=5),
        lambda d: d.update(filters=[1, 2, 3]),
        lambda d: d.update(encoder="iaf"),
    ],
)
def test_settings_from_bad_dict_raise(mutate):
    d = fe.FrontEndSettings().to_dict()
    mutate(d)
    with pytest.raises(fe.FrontEndError):
        fe.FrontEndSettings.from_dict(d)


def test_rotation_removal_is_refused_when_run():
    s = fe.FrontEndSettings(rotation_removal=True)
    with pytest.raises(fe.RotationRemovalNotSupported, match="bypass_jsvd"):
        fe.run_windows(np.zeros((1, 10, 3)), s)
    with pytest.raises(NotImplementedError):
        fe.run_stream(np.zeros((10, 3)), s)


def test_quantize_and_input_errors():
    q = fe.quantize_acc(np.array([[1.0, -1.0, 0.5], [9.0, -9.0, 1 / 4096]]))
    np.testing.assert_array_equal(q, [[4096, -4096, 2048], [32767, -32767, 1]])
    with pytest.raises(fe.FrontEndError, match="NaN"):
        fe.quantize_acc(np.array([[np.nan, 0, 0]]))
    bank = fe.FrontEndSettings().bank()
    with pytest.raises(fe.FrontEndError, match="integer"):
        fe.filter_bank(np.zeros((1, 5, 3)), bank)
    with pytest.raises(fe.FrontEndError, match="32767"):
        fe.filter_bank(np.full((1, 5, 3), 40000), bank)
    with pytest.raises(fe.FrontEndError, match=r"\(L, 3\)"):
        fe.run_stream(np.zeros((10, 2)), fe.FrontEndSettings())
    with pytest.raises(fe.FrontEndError, match="warmup"):
        fe.filter_windows(np.zeros((1, 10, 3)), fe.FrontEndSettings(), warmup="zero")


# ---------------------------------------------------------------------------- encoder choice
def test_choose_encoder_finds_the_encoder_that_keeps_small_amplitudes():
    """Class lives in small amplitudes between frequent large bursts (same for both classes).

    The bursts set every percentile from the 75th up, so scale encoders from those
    percentiles shift the small values to 0, and IAF thresholds at burst size drown them;
    only the scale encoder from the 50th percentile resolves them."""
    rng = np.random.default_rng(0)
    n, T = 240, 128
    labels = np.arange(n) % 2
    small = rng.integers(100, 300, size=(n, T, 15)) * labels[:, None, None]
    burst = rng.random((n, T, 15)) < 0.3
    y = np.where(burst, rng.integers(20_000, 30_000, size=(n, T, 15)), small)
    y = (y * rng.choice([-1, 1], size=y.shape)).astype(np.int32)
    enc, report = fe.choose_encoder(y, labels)
    scores = {r["name"]: r["score"] for r in report["candidates"]}
    assert report["best"] == "scale p50" and enc.kind == "scale"
    assert scores["scale p50"] > 0.95
    assert scores["scale p99"] < 0.75 and scores["iaf p99"] < 0.75
    assert enc.values == fe.encoder_from_percentile("scale", fe.abs_percentiles(y, [50])[0]).values
    assert "<- best" in fe.format_encoder_report(report)
    # with subjects as groups, whole groups are held out
    _, rep_g = fe.choose_encoder(y, labels, groups=np.arange(n) // 20)
    assert rep_g["n_test"] == 60 and rep_g["best"] == "scale p50"


def test_encoder_defaults_are_rockpools():
    assert fe.EncoderSettings().values == (1024,) * 15
    assert fe.EncoderSettings("scale").values == (5,) * 15


def test_unstable_explicit_filters_raise_overflow():
    unstable = fe.BandPassParams(B_b=6, B_wf=8, B_af=9, a1=-65536, a2=32767)  # poles outside |z| = 1
    s = fe.FrontEndSettings(filters=(unstable,) * 5)
    assert s.filter_params() == (unstable,) * 15
    with pytest.raises(fe.FilterOverflowError, match="channel 0"):
        fe.filter_stream(np.tile([[0.5, 0.0, 1.0]], (3000, 1)), s)


@pytest.mark.parametrize("bands, fraction", [(fe.DEFAULT_BANDS, 0.3), (fe.CHIP_DEFAULT_BANDS, 0.01)])
def test_designed_filters_cannot_overflow(bands, fraction):
    """The range checks are skipped for banks proven overflow-free. Near-worst drives stay in
    range: full-scale square waves (x, y) and a full-scale constant (z), which pushes the AR
    register of the lowest band to a good fraction of its limit (its DC gain is large)."""
    settings = fe.FrontEndSettings(bands=bands)
    bank = settings.bank()
    assert bank.overflow_free
    t = np.arange(int(20 * FS)) / FS
    waves = [np.sign(np.sin(2 * np.pi * np.sqrt(lo * hi) * t)) * 32767 for lo, hi in bands[:2]]
    acc = np.stack(waves + [np.full(len(t), -32767.0)], axis=1).astype(np.int64)[None]
    y, state = fe.filter_bank(acc, bank)
    assert np.abs(y).max() <= fe.Y_LIMIT
    assert np.all(np.abs(state.w1) <= bank.w_limit)
    # the 0.1-1 Hz filter's AR register holds 1/3 of its range for a full-scale constant
    assert np.abs(state.w1[0, 10]) > fraction * bank.w_limit[10]
