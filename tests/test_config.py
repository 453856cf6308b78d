"""XyloConfig: JSON round trip, threshold scaling, and clear errors for malformed documents."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from aspen_deploy import chip
from aspen_deploy.config import FORMAT, ConfigFormatError, NeuronParams, XyloConfig


def make_cfg(n_in: int = 3, n_hid: int = 5, n_out: int = 2, n_oen: int = 3, seed: int = 1) -> XyloConfig:
    rng = np.random.default_rng(seed)

    def neurons(n: int) -> NeuronParams:
        return NeuronParams(
            threshold=rng.integers(1, 2000, n),
            v_mem_decay=rng.integers(1, 16, n),
            i_syn_decay=rng.integers(1, 16, n),
            v_mem_bias=rng.integers(-50, 50, n),
        )

    hidden = neurons(n_hid)
    hidden.alias_target = [None] * n_hid
    hidden.alias_target[0] = n_hid - 1
    return XyloConfig(
        input_weights=rng.integers(-128, 128, (n_in, n_hid)),
        input_shift=2,
        hidden_weights=rng.integers(-128, 128, (n_hid, n_hid)),
        hidden_shift=0,
        hidden=hidden,
        readout_weights=rng.integers(-128, 128, (n_oen, n_out)),
        readout_shift=5,
        readout=neurons(n_out),
        bias_enable=True,
        dt=0.01,
        imu_if={"bands_hz": [[0.1, 1.0], [1.0, 2.0]], "encoder": "iaf"},
        metadata={"source": "test", "threshold_float": 1.25},
    )


def assert_same(a: XyloConfig, b: XyloConfig) -> None:
    for name in ("input_weights", "hidden_weights", "readout_weights"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for pop in ("hidden", "readout"):
        for reg in ("threshold", "v_mem_decay", "i_syn_decay", "v_mem_bias"):
            np.testing.assert_array_equal(getattr(getattr(a, pop), reg), getattr(getattr(b, pop), reg), err_msg=f"{pop}.{reg}")
    assert a.hidden.alias_target == b.hidden.alias_target
    assert (a.input_shift, a.hidden_shift, a.readout_shift) == (b.input_shift, b.hidden_shift, b.readout_shift)
    assert (a.bias_enable, a.dt, a.imu_if, a.metadata) == (b.bias_enable, b.dt, b.imu_if, b.metadata)


# ---- JSON round trip ---------------------------------------------------------------------------


def test_round_trip_through_a_file(tmp_path):
    cfg = make_cfg()
    cfg.hidden.threshold[:2] = [chip.THRESHOLD_MIN, chip.THRESHOLD_MAX]
    path = cfg.save(tmp_path / "run" / "xylo_config.json")
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["xylo_config.json"]  # no temp file left
    doc = json.loads(path.read_text())
    assert doc["format"] == FORMAT and doc["hidden"]["neurons"][0]["alias_target"] == 4
    back = XyloConfig.load(path)
    assert_same(cfg, back)
    assert back.to_dict() == cfg.to_dict()
    assert back.input_weights.dtype == np.int64


def test_round_trip_keeps_out_of_range_values_for_the_checker(tmp_path):
    """from_dict reads integers without range checks: the DRC reports them all at once."""
    cfg = make_cfg()
    cfg.hidden_weights[0, 0] = 1000
    cfg.readout.threshold[1] = 10**6
    back = XyloConfig.load(cfg.save(tmp_path / "c.json"))
    assert back.hidden_weights[0, 0] == 1000 and back.readout.threshold[1] == 10**6


def test_missing_alias_targets_read_back_as_none(tmp_path):
    cfg = make_cfg()
    cfg.hidden.alias_target = None
    back = XyloConfig.load(cfg.save(tmp_path / "c.json"))
    assert back.hidden.alias_target == [None] * cfg.n_hidden
    assert back.readout.alias_target is None


def test_shape_properties():
    cfg = make_cfg(n_in=3, n_hid=5, n_out=2, n_oen=3)
    assert (cfg.n_inputs, cfg.n_hidden, cfg.n_outputs, cfg.n_input_expansion, cfg.n_output_expansion) == (3, 5, 2, 5, 3)


# ---- threshold scaling -------------------------------------------------------------------------


def test_with_threshold_scale_rounds_and_clips():
    cfg = make_cfg(n_hid=5)
    cfg.hidden.threshold = np.array([100, 7, 30_000, -20_000, 1])
    before = copy.deepcopy(cfg)
    up = cfg.with_threshold_scale(1.3)
    np.testing.assert_array_equal(up.hidden.threshold, [130, 9, chip.THRESHOLD_MAX, -26_000, 1])
    down = cfg.with_threshold_scale(2.0)
    np.testing.assert_array_equal(down.hidden.threshold, [200, 14, chip.THRESHOLD_MAX, chip.THRESHOLD_MIN, 2])
    assert up.metadata["threshold_scale"] == 1.3 and up.metadata["source"] == "test"
    # readout, weights and the original are untouched
    np.testing.assert_array_equal(up.readout.threshold, cfg.readout.threshold)
    assert up.readout.threshold is not cfg.readout.threshold
    up.hidden_weights[0, 0] += 1
    assert_same(cfg, before)
    assert "threshold_scale" not in cfg.metadata


def test_with_threshold_scale_output_is_json_clean(tmp_path):
    back = XyloConfig.load(make_cfg().with_threshold_scale(0.75).save(tmp_path / "s.json"))
    assert back.metadata["threshold_scale"] == 0.75


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_with_threshold_scale_rejects_bad_scales(scale):
    with pytest.raises(ValueError, match="threshold scale must be a positive number"):
        make_cfg().with_threshold_scale(scale)


# ---- malformed documents -----------------------------------------------------------------------


def doc() -> dict:
    return make_cfg().to_dict()


def _set(path: str, value):
    def edit(d: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d[p]
        if value is DELETE:
            del d[last]
        elif isinstance(d, list):
            d[int(last)] = value
        else:
            d[last] = value

    return edit


DELETE = object()


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("format", "aspen-xylo-imu/0"), "'format' must be 'aspen-xylo-imu/1'"),
        (_set("format", DELETE), "'format' must be"),
        (_set("readout", DELETE), "section 'readout'"),
        (_set("hidden", [1, 2]), "section 'hidden'"),
        (_set("input.weights", [[1, 2.5, 3, 4, 5]] * 3), "input.weights must hold integers only"),
        (_set("hidden.weights", [["a"] * 5] * 5), "hidden.weights must be a rectangular list of integer rows"),
        (_set("input.weights", [[1, 2, 3, 4, 5], [1, 2], [1, 2, 3, 4, 5]]), "input.weights must be a rectangular"),
        (_set("readout.weights", [1, 2, 3]), "readout.weights must be a 2-D list of rows, got 1"),
        (_set("input.weights", DELETE), "input.weights must be a 2-D list of rows, got 0"),
        (_set("hidden.weights", [[0] * 4] * 5), "hidden.weights must be square, got (5, 4)"),
        (_set("hidden.neurons", [{"threshold": 1, "v_mem_decay": 1, "i_syn_decay": 1, "v_mem_bias": 0}] * 4),
         "hidden.neurons has 4 entries for 5 hidden neurons"),
        (_set("readout.neurons", []), "readout.neurons has 0 entries for 2 readout columns"),
        (_set("readout.neurons", {}), "readout.neurons must be a list"),
        (_set("hidden.neurons.2", 7), "hidden.neurons[2] must be an object"),
        (_set("hidden.neurons.3.v_mem_bias", DELETE), "hidden.neurons[3] lacks 'v_mem_bias'"),
        (_set("hidden.neurons.1.threshold", 1.5), "hidden.neurons[1].threshold must be an integer, got 1.5"),
        (_set("hidden.neurons.1.threshold", "100"), "hidden.neurons[1].threshold must be an integer"),
        (_set("hidden.neurons.1.alias_target", True), "hidden.neurons[1].alias_target must be an integer"),
        (_set("input.weight_bit_shift", None), "input.weight_bit_shift must be an integer, got None"),
        (_set("readout.weight_bit_shift", float("nan")), "readout.weight_bit_shift must be an integer, got nan"),
        (_set("readout.weight_bit_shift", float("inf")), "readout.weight_bit_shift must be an integer, got inf"),
    ],
)
def test_from_dict_errors(edit, message):
    d = doc()
    edit(d)
    with pytest.raises(ConfigFormatError) as e:
        XyloConfig.from_dict(d)
    assert message in str(e.value)
    assert isinstance(e.value, ValueError)


def test_from_dict_accepts_integral_floats():
    d = doc()
    d["input"]["weights"][0][0] = 4.0
    d["hidden"]["weight_bit_shift"] = 3.0
    cfg = XyloConfig.from_dict(d)
    assert cfg.input_weights[0, 0] == 4 and cfg.hidden_shift == 3 and isinstance(cfg.hidden_shift, int)


def test_from_dict_rejects_a_non_object():
    with pytest.raises(ConfigFormatError, match="top level must be a JSON object"):
        XyloConfig.from_dict([doc()])


def test_load_errors(tmp_path):
    with pytest.raises(ConfigFormatError, match="configuration file not found"):
        XyloConfig.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "aspen-xylo-imu/1",\n "input": [1, 2,]}')
    with pytest.raises(ConfigFormatError, match=r"bad.json is not valid JSON .* at line 2"):
        XyloConfig.load(bad)
    nan_doc = tmp_path / "nan.json"
    d = doc()
    d["hidden"]["weight_bit_shift"] = float("nan")
    nan_doc.write_text(json.dumps(d))  # Python writes NaN, and reads it back
    with pytest.raises(ConfigFormatError, match="hidden.weight_bit_shift must be an integer"):
        XyloConfig.load(nan_doc)
