"""Design-rule checker: one failing config per rule, fixed configs pass, reports are complete and readable."""

from __future__ import annotations

import numpy as np
import pytest

from aspen_deploy import chip
from aspen_deploy.config import NeuronParams, XyloConfig
from aspen_deploy.drc import RULES, DesignRuleError, Violation, check, require_valid


def neurons(n: int, alias: bool) -> NeuronParams:
    return NeuronParams(
        threshold=np.full(n, 100, dtype=np.int64),
        v_mem_decay=np.full(n, 4, dtype=np.int64),
        i_syn_decay=np.full(n, 3, dtype=np.int64),
        v_mem_bias=np.zeros(n, dtype=np.int64),
        alias_target=[None] * n if alias else None,
    )


def make_cfg(
    n_in: int = 2,
    n_hid: int = 4,
    n_out: int = 2,
    n_ien: int | None = None,
    n_oen: int | None = None,
    rec_density: float = 0.5,
    seed: int = 0,
) -> XyloConfig:
    """A valid-by-construction config (unless the sizes themselves break a limit)."""
    rng = np.random.default_rng(seed)
    n_ien = min(n_hid, chip.MAX_INPUT_EXPANSION) if n_ien is None else n_ien
    n_oen = min(n_hid, chip.MAX_OUTPUT_EXPANSION) if n_oen is None else n_oen
    w_rec = rng.integers(-128, 128, (n_hid, n_hid)) * (rng.random((n_hid, n_hid)) < rec_density)
    return XyloConfig(
        input_weights=rng.integers(-128, 128, (n_in, n_ien)),
        input_shift=1,
        hidden_weights=w_rec.astype(np.int64),
        hidden_shift=0,
        hidden=neurons(n_hid, alias=True),
        readout_weights=rng.integers(-128, 128, (n_oen, n_out)),
        readout_shift=2,
        readout=neurons(n_out, alias=False),
    )


def rules(cfg: XyloConfig) -> set[str]:
    return {v.rule for v in check(cfg)}


def test_small_valid_config_passes():
    cfg = make_cfg()
    assert check(cfg) == []
    assert require_valid(cfg) is cfg


def test_limits_at_the_boundary_pass():
    cfg = make_cfg(n_in=chip.MAX_INPUTS, n_hid=chip.MAX_HIDDEN, n_out=chip.MAX_OUTPUTS, rec_density=0.0)
    cfg.input_shift, cfg.hidden_shift, cfg.readout_shift = 0, chip.WEIGHT_SHIFT_MAX, chip.WEIGHT_SHIFT_MAX
    cfg.hidden.threshold[:2] = [chip.THRESHOLD_MIN, chip.THRESHOLD_MAX]
    cfg.hidden.v_mem_bias[:2] = [chip.BIAS_MIN, chip.BIAS_MAX]
    cfg.hidden.v_mem_decay[:2] = [chip.DASH_MIN, chip.DASH_MAX]  # v_mem_decay 0 is legal (memoryless vmem)
    cfg.input_weights[0, :2] = [chip.WEIGHT_MIN, chip.WEIGHT_MAX]
    cfg.hidden.alias_target[0] = chip.MAX_HIDDEN - 1
    assert cfg.n_input_expansion == chip.MAX_INPUT_EXPANSION and cfg.n_output_expansion == chip.MAX_OUTPUT_EXPANSION
    assert check(cfg) == []


# ---- one rule at a time: break it, see exactly it, fix it, see nothing ---------------------------


@pytest.mark.parametrize(
    "rule, broken, fixed",
    [
        ("inputs", dict(n_in=chip.MAX_INPUTS + 1), dict(n_in=chip.MAX_INPUTS)),
        ("hidden-neurons", dict(n_hid=chip.MAX_HIDDEN + 1, rec_density=0), dict(n_hid=chip.MAX_HIDDEN, rec_density=0)),
        ("outputs", dict(n_out=chip.MAX_OUTPUTS + 1), dict(n_out=chip.MAX_OUTPUTS)),
        (
            "input-expansion",
            dict(n_hid=130, n_ien=chip.MAX_INPUT_EXPANSION + 1, rec_density=0),
            dict(n_hid=130, n_ien=chip.MAX_INPUT_EXPANSION, rec_density=0),
        ),
        (
            "output-expansion",
            dict(n_hid=130, n_oen=chip.MAX_OUTPUT_EXPANSION + 1, rec_density=0),
            dict(n_hid=130, n_oen=chip.MAX_OUTPUT_EXPANSION, rec_density=0),
        ),
    ],
)
def test_size_rules(rule, broken, fixed):
    bad = check(make_cfg(**broken))
    assert {v.rule for v in bad} == {rule}
    assert len(bad) == 1 and bad[0].needed.startswith(str(RULE_LIMITS[rule] + 1))
    assert check(make_cfg(**fixed)) == []


RULE_LIMITS = {
    "inputs": chip.MAX_INPUTS,
    "hidden-neurons": chip.MAX_HIDDEN,
    "outputs": chip.MAX_OUTPUTS,
    "input-expansion": chip.MAX_INPUT_EXPANSION,
    "output-expansion": chip.MAX_OUTPUT_EXPANSION,
}


def test_expansion_hint_when_extra_columns_or_rows_are_zero():
    cfg = make_cfg(n_hid=140, n_ien=135, n_oen=131, rec_density=0)
    cfg.input_weights[:, 100:] = 0  # only 100 columns are used
    cfg.readout_weights[:3] = 0  # 128 rows are used
    msgs = {v.rule: v.message() for v in check(cfg)}
    assert "first 100 columns" in msgs["input-expansion"]
    assert "first 3 rows are all zero" in msgs["output-expansion"]


def test_fan_out_counts_hidden_and_readout_targets():
    # 498 hidden neurons (the hidden-neurons rule breaks too: with <= 496 hidden and <= 16
    # outputs, a hidden neuron reaches at most 512 targets, so fan-out cannot break alone).
    n_hid, n_out = chip.MAX_HIDDEN + 2, chip.MAX_OUTPUTS
    cfg = make_cfg(n_hid=n_hid, n_out=n_out, rec_density=0)
    cfg.readout_weights[:] = 1
    cfg.hidden_weights[0, :] = 1  # neuron 0 does not project to the readout: 498 targets
    cfg.hidden_weights[n_hid - 1, :] = 1  # the last neuron does: 498 + 16 = 514 targets
    bad = [v for v in check(cfg) if v.rule == "fan-out"]
    assert len(bad) == 1
    assert bad[0].needed.startswith(f"{n_hid + n_out} ") and f"hidden neuron {n_hid - 1}" in bad[0].where
    assert rules(cfg) == {"fan-out", "hidden-neurons"}
    cfg.hidden_weights[n_hid - 1, :2] = 0  # exactly 512
    assert rules(cfg) == {"hidden-neurons"}


def test_fan_out_of_input_channels():
    n = chip.MAX_FANOUT + 1
    cfg = make_cfg(n_in=2, n_hid=n, n_ien=n, rec_density=0)
    cfg.input_weights[0, :] = 3
    cfg.input_weights[1, : chip.MAX_FANOUT] = 3
    cfg.input_weights[1, chip.MAX_FANOUT :] = 0
    fan = [v for v in check(cfg) if v.rule == "fan-out"]
    assert len(fan) == 1 and "input channel 0" in fan[0].where and fan[0].needed.startswith(f"{n} ")
    assert {"input-expansion", "hidden-neurons"} <= rules(cfg)
    cfg.input_weights[0, 0] = 0
    assert "fan-out" not in rules(cfg)


def test_fan_out_reports_the_worst_of_many():
    n_hid = chip.MAX_HIDDEN + 10
    cfg = make_cfg(n_hid=n_hid, n_out=16, rec_density=0)
    cfg.readout_weights[:] = 1
    cfg.hidden_weights[n_hid - 5 :, :] = 1  # five neurons with 506 + 16 targets
    cfg.hidden_weights[n_hid - 3, 0] = 0  # one of them with one fewer
    fan = [v for v in check(cfg) if v.rule == "fan-out"]
    assert len(fan) == 1 and "5 hidden neurons" in fan[0].detail
    assert fan[0].needed.startswith(f"{n_hid + 16} ") and fan[0].where.startswith(f"hidden neuron {n_hid - 5},")


def test_recurrent_weights():
    n = 180  # 32,400 recurrent weights if dense, fan-out 180 + 2 per neuron
    cfg = make_cfg(n_hid=n, rec_density=0)
    cfg.hidden_weights[:] = 1
    bad = check(cfg)
    assert [v.rule for v in bad] == ["recurrent-weights"] and bad[0].needed.startswith(f"{n * n} ")
    cfg.hidden_weights.reshape(-1)[: n * n - chip.MAX_RECURRENT_WEIGHTS] = 0
    assert check(cfg) == []


@pytest.mark.parametrize("matrix", ["input_weights", "hidden_weights", "readout_weights"])
@pytest.mark.parametrize("value", [chip.WEIGHT_MAX + 1, chip.WEIGHT_MIN - 1])
def test_weight_range(matrix, value):
    cfg = make_cfg()
    getattr(cfg, matrix)[1, 0] = value
    bad = check(cfg)
    assert [v.rule for v in bad] == ["weight-range"]
    assert bad[0].where == f"{matrix.replace('_', '.')}[1][0]" and str(value) in bad[0].message()
    getattr(cfg, matrix)[1, 0] = chip.WEIGHT_MAX
    assert check(cfg) == []


def test_weight_range_rejects_fractional_and_nonfinite_values():
    cfg = make_cfg()
    cfg.input_weights = cfg.input_weights.astype(np.float64)
    cfg.input_weights[0, 1] = 2.5
    cfg.input_weights[1, 2] = np.nan
    bad = check(cfg)
    assert [v.rule for v in bad] == ["weight-range"] and "2 out-of-range values" in bad[0].needed
    assert bad[0].where == "input.weights[0][1]"
    cfg.input_weights[0, 1], cfg.input_weights[1, 2] = 2.0, -7.0
    assert check(cfg) == []


def test_weight_range_aggregates_one_line_per_matrix():
    cfg = make_cfg(n_hid=12, rec_density=0)
    rows, cols = np.divmod(np.arange(37) + 3 * 12 + 5, 12)  # 37 cells in row-major order from [3][5]
    cfg.hidden_weights[rows, cols] = 300
    cfg.input_weights[0, 0] = -200
    bad = [v for v in check(cfg) if v.rule == "weight-range"]
    assert len(bad) == 2
    hid = next(v for v in bad if v.where.startswith("hidden"))
    assert hid.where == "hidden.weights[3][5]" and "37 out-of-range values in hidden.weights, the first 300" in hid.needed
    assert "int8 -128..127" in hid.message()


@pytest.mark.parametrize("field", ["input_shift", "hidden_shift", "readout_shift"])
@pytest.mark.parametrize("value", [chip.WEIGHT_SHIFT_MAX + 1, -1, 1.5])
def test_weight_shift(field, value):
    cfg = make_cfg()
    setattr(cfg, field, value)
    bad = check(cfg)
    assert [v.rule for v in bad] == ["weight-shift"]
    assert bad[0].where == field.replace("_shift", ".weight_bit_shift") and "0..7" in bad[0].message()
    setattr(cfg, field, chip.WEIGHT_SHIFT_MAX)
    assert check(cfg) == []


@pytest.mark.parametrize(
    "rule, register, value, ok",
    [
        ("threshold-range", "threshold", chip.THRESHOLD_MAX + 1, chip.THRESHOLD_MAX),
        ("threshold-range", "threshold", chip.THRESHOLD_MIN - 1, chip.THRESHOLD_MIN),
        ("bias-range", "v_mem_bias", chip.BIAS_MIN - 1, chip.BIAS_MIN),
        ("bias-range", "v_mem_bias", chip.BIAS_MAX + 1, chip.BIAS_MAX),
        ("decay-range", "v_mem_decay", chip.DASH_MAX + 1, chip.DASH_MAX),
        ("decay-range", "i_syn_decay", -1, 1),
    ],
)
@pytest.mark.parametrize("pop", ["hidden", "readout"])
def test_neuron_register_ranges(rule, register, value, ok, pop):
    cfg = make_cfg()
    getattr(getattr(cfg, pop), register)[1] = value
    bad = check(cfg)
    assert [v.rule for v in bad] == [rule]
    assert bad[0].where == f"{pop}.neurons[1].{register}" and str(value) in bad[0].message()
    getattr(getattr(cfg, pop), register)[1] = ok
    assert check(cfg) == []


def test_decay_zero_on_a_neuron_with_input():
    cfg = make_cfg(rec_density=0)
    cfg.input_weights[:, 2] = [5, 0]
    cfg.hidden.i_syn_decay[2] = 0
    bad = check(cfg)
    assert [v.rule for v in bad] == ["decay-zero"] and bad[0].where == "hidden.neurons[2].i_syn_decay"
    # a neuron without incoming weights may have dash 0; so may v_mem_decay (vmem = isyn + bias)
    cfg.input_weights[:, 2] = 0
    cfg.hidden.v_mem_decay[:] = 0
    assert check(cfg) == []
    # recurrent and readout weights count as input too
    cfg.hidden_weights[0, 2] = 1
    assert rules(cfg) == {"decay-zero"}
    cfg.hidden.i_syn_decay[2] = 1
    cfg.readout.i_syn_decay[1] = 0
    bad = check(cfg)
    assert [v.where for v in bad] == ["readout.neurons[1].i_syn_decay"]
    cfg.readout_weights[:, 1] = 0
    assert check(cfg) == []


@pytest.mark.parametrize("alias, why", [(1, "itself"), (4, "4"), (-1, "-1"), (2.5, "2.5")])
def test_alias_target(alias, why):
    cfg = make_cfg()
    cfg.hidden.alias_target[1] = alias
    bad = check(cfg)
    assert [v.rule for v in bad] == ["alias-target"]
    assert bad[0].where == "hidden.neurons[1].alias_target" and bad[0].needed.endswith(f"aliased to {why}")
    cfg.hidden.alias_target[1] = 3
    assert check(cfg) == []


@pytest.mark.parametrize(
    "breaks",
    [
        lambda c: setattr(c, "input_weights", np.zeros((2, 5), dtype=np.int64)),  # 5 columns, 4 hidden
        lambda c: setattr(c, "readout_weights", np.zeros((5, 2), dtype=np.int64)),  # 5 rows, 4 hidden
        lambda c: setattr(c.hidden, "threshold", np.full(3, 100)),
        lambda c: setattr(c.readout, "i_syn_decay", np.full(3, 2)),
        lambda c: setattr(c.hidden, "alias_target", [None] * 5),
        lambda c: setattr(c, "hidden_weights", np.zeros((4, 3), dtype=np.int64)),
        lambda c: setattr(c, "input_weights", np.zeros(8, dtype=np.int64)),
    ],
)
def test_shape(breaks):
    cfg = make_cfg()
    breaks(cfg)
    assert rules(cfg) == {"shape"}  # and check() did not crash on the inconsistent shapes
    assert all("\n" not in v.message() for v in check(cfg))
    assert check(make_cfg()) == []


@pytest.mark.parametrize("dt", [0.0, -0.005, float("nan"), float("inf")])
def test_dt(dt):
    cfg = make_cfg()
    cfg.dt = dt
    assert [v.rule for v in check(cfg)] == ["dt"]
    cfg.dt = 0.01
    assert check(cfg) == []


# ---- reports -----------------------------------------------------------------------------------


def broken_everywhere() -> XyloConfig:
    cfg = make_cfg(n_in=chip.MAX_INPUTS + 3)
    cfg.hidden_weights[0, 1] = 999
    cfg.readout_shift = 9
    cfg.hidden.threshold[0] = 40_000
    cfg.readout.v_mem_bias[1] = -40_000
    cfg.hidden.v_mem_decay[3] = 20
    cfg.hidden.alias_target[2] = 2
    cfg.dt = -1.0
    return cfg


def test_several_violations_are_all_reported():
    cfg = broken_everywhere()
    found = rules(cfg)
    assert found == {"inputs", "weight-range", "weight-shift", "threshold-range", "bias-range", "decay-range",
                     "alias-target", "dt"}
    with pytest.raises(DesignRuleError) as e:
        require_valid(cfg)
    assert isinstance(e.value, ValueError)
    assert len(e.value.violations) == len(check(cfg)) == len(found)
    assert str(e.value).splitlines() == [v.message() for v in e.value.violations]


def test_messages_are_one_line_and_name_the_limit():
    cfg = broken_everywhere()
    cfg.hidden.i_syn_decay[0] = 0
    cfg.hidden_weights[1, 0] = 4  # neuron 0 receives input
    vs = check(cfg) + check(make_cfg(n_hid=chip.MAX_HIDDEN + 1, rec_density=0))
    assert "decay-zero" in {v.rule for v in vs}
    for v in vs:
        m = v.message()
        assert "\n" not in m and m.startswith(f"{v.rule}: the model needs ")
        assert v.where in m and str(v.needed) in m
        if isinstance(v.limit, int):
            assert f"has at most {v.limit}" in m
        else:
            assert v.limit in m
            if v.rule != "dt":  # the only rule without a number: dt must be positive
                assert any(ch.isdigit() for ch in v.limit), v.limit  # the phrase carries the chip's number
    hid = next(v for v in vs if v.rule == "hidden-neurons")
    assert hid.message() == "hidden-neurons: the model needs 497 hidden neurons; Xylo IMU has at most 496 (hidden.weights)"


def test_violation_vocabulary_for_importers():
    v = Violation("unsupported", "no convolution", "a Conv2d node", "nir node 'conv1'", "flatten it first\nplease")
    assert v.message() == (
        "unsupported: the model needs a Conv2d node; Xylo IMU allows no convolution (nir node 'conv1'); flatten it first please"
    )
    assert str(DesignRuleError([v])) == v.message()
    with pytest.raises(ValueError, match="unknown design rule 'fanout'"):
        Violation("fanout", 512, 600, "x")
    with pytest.raises(AttributeError):
        v.rule = "shape"  # frozen
    assert {"unsupported", "decay-zero", "shape"} <= set(RULES)


def test_design_rule_error_survives_pickling():
    import pickle

    err = DesignRuleError(check(broken_everywhere()))
    back = pickle.loads(pickle.dumps(err))
    assert back.violations == err.violations and str(back) == str(err)


def test_scalar_registers_do_not_crash_the_checker():
    cfg = make_cfg()
    cfg.hidden.threshold = np.int64(40_000)
    assert rules(cfg) == {"shape", "threshold-range"}
