"""The preset figures, `extends`, and one test per kind of bad input (checking the message)."""
import pytest

from attn_dse import load_hardware
from attn_dse.hardware.loader import preset_names
from attn_dse.errors import AttnDseError

MINIMAL = """
name: toy
description: a toy chip
kind: gpu
compute: {cores: 10, clock: 1 GHz, matmul: {bf16: 100 TFLOP/s}, vector: 10 TFLOP/s, exp: 1 Top/s}
memory:
  - {name: smem, per_core: true, capacity: 100 KiB, bandwidth: 10 TB/s}
  - {name: hbm, capacity: 16 GiB, bandwidth: 1 TB/s}
interconnect: {link_bandwidth: 100 GB/s, devices_per_node: 4}
launch_overhead: 3 us
"""

REQUIRED_PRESETS = {"h100", "h100-pcie", "h20", "h200", "b200", "a100", "mi300x",
                    "tpu-v5e", "tpu-v5p", "tpu-v6e"}


def test_all_required_presets_exist():
    assert REQUIRED_PRESETS <= set(preset_names())


@pytest.mark.parametrize("name,bf16,hbm,cap", [
    ("h100", 989.4e12, 3.35e12, 80e9), ("h20", 148e12, 4.0e12, 96e9),
    ("h200", 989.4e12, 4.8e12, 141e9), ("a100", 312e12, 2.039e12, 80e9),
    ("mi300x", 1307.4e12, 5.3e12, 192e9), ("tpu-v5e", 197e12, 819e9, 16e9),
    ("tpu-v6e", 918e12, 1640e9, 32e9), ("b200", 2250e12, 8e12, 180e9)])
def test_dense_datasheet_figures(name, bf16, hbm, cap):
    hw = load_hardware(name)
    assert hw.peak_flop_per_s["bf16"] == pytest.approx(bf16)
    assert hw.hbm.bytes_per_s == pytest.approx(hbm)
    assert hw.hbm.capacity_bytes == pytest.approx(cap)


def test_every_number_has_a_source():
    for name in preset_names():
        hw = load_hardware(name)
        for key in ("compute.matmul", "compute.cores", "compute.exp", "memory.hbm",
                    "interconnect", "launch_overhead"):
            assert hw.source_of(key), f"{name}: {key} has no source"


def test_h20_ridge_point_is_37():
    assert load_hardware("h20").ridge_point("bf16") == pytest.approx(37.0, abs=0.1)


def test_h200_extends_h100_and_overrides_hbm():
    h100, h200 = load_hardware("h100"), load_hardware("h200")
    assert h200.peak_flop_per_s == h100.peak_flop_per_s
    assert h200.hbm.bytes_per_s == 4.8e12 and h200.hbm.capacity_bytes == 141e9
    assert h200.level("smem") == h100.level("smem")
    assert h200.achievable.hbm_bytes_per_s == 4.3e12


def test_path_and_alias_resolve_to_same_spec():
    import pathlib
    repo_file = pathlib.Path(__file__).resolve().parents[2] / "hw" / "h20.yaml"
    assert load_hardware(str(repo_file)).peak_flop_per_s == load_hardware("h20").peak_flop_per_s
    assert load_hardware("h100-sxm").name == "h100"


def test_units_are_exact(write_yaml):
    hw = load_hardware(write_yaml("toy.yaml", MINIMAL))
    assert hw.hbm.capacity_bytes == 16 * 2**30
    assert hw.core_memory.capacity_bytes == 100 * 1024
    assert hw.launch_overhead_s == pytest.approx(3e-6)
    assert hw.clock_hz == 1e9


def test_user_chip_extends_a_preset_in_a_few_lines(write_yaml):
    path = write_yaml("fast.yaml", "name: h100-fast\ndescription: what if\nextends: h100\n"
                                   "memory:\n  - {name: hbm, bandwidth: 6.7 TB/s}\n")
    hw = load_hardware(path)
    assert hw.hbm.bytes_per_s == 6.7e12 and hw.hbm.capacity_bytes == 80e9
    assert hw.peak_flop_per_s["bf16"] == 989.4e12


def _error(path) -> str:
    with pytest.raises(AttnDseError) as info:
        load_hardware(path)
    return str(info.value)


def test_missing_field(write_yaml):
    msg = _error(write_yaml("m.yaml", MINIMAL.replace("launch_overhead: 3 us\n", "")))
    assert "m.yaml" in msg and "launch_overhead: missing field" in msg and "add it" in msg


def test_unknown_field_did_you_mean(write_yaml):
    msg = _error(write_yaml("u.yaml", MINIMAL.replace("launch_overhead", "launch_overhed")))
    assert "launch_overhed: unknown field" in msg and "did you mean 'launch_overhead'" in msg


def test_unknown_nested_field(write_yaml):
    msg = _error(write_yaml("n.yaml", MINIMAL.replace("cores: 10", "corse: 10")))
    assert "compute.corse: unknown field" in msg and "'cores'" in msg


def test_wrong_unit(write_yaml):
    msg = _error(write_yaml("w.yaml", MINIMAL.replace("bandwidth: 1 TB/s", "bandwidth: 4 TBps")))
    assert "memory[hbm].bandwidth" in msg and '"4 TBps" is not a bandwidth' in msg and "TB/s" in msg


def test_missing_unit(write_yaml):
    msg = _error(write_yaml("x.yaml", MINIMAL.replace("clock: 1 GHz", "clock: 1000000000")))
    assert "compute.clock" in msg and "has no unit" in msg and "GHz" in msg


@pytest.mark.parametrize("bad", ["-1 TB/s", "0 TB/s"])
def test_negative_or_zero(write_yaml, bad):
    msg = _error(write_yaml("z.yaml", MINIMAL.replace("bandwidth: 1 TB/s", f"bandwidth: {bad}")))
    assert "memory[hbm].bandwidth" in msg and "must be positive" in msg


def test_malformed_yaml_gives_line(write_yaml):
    msg = _error(write_yaml("bad.yaml", "name: toy\ncompute: {cores: 10\nmemory: [\n"))
    assert "bad.yaml" in msg and "malformed YAML at line" in msg


def test_unknown_preset_lists_known():
    with pytest.raises(AttnDseError) as info:
        load_hardware("h1000")
    msg = str(info.value)
    assert "unknown hardware preset 'h1000'" in msg and "h100" in msg


def test_extends_cycle(write_yaml):
    a = write_yaml("a.yaml", "name: a\nextends: b.yaml\n")
    write_yaml("b.yaml", "name: b\nextends: a.yaml\n")
    msg = _error(a)
    assert "extends: cycle" in msg and "a -> b -> a" in msg


def test_scaled_what_if():
    hw = load_hardware("h100")
    fast = hw.scaled(hbm_bandwidth=2.0, matmul=0.5)
    assert fast.hbm.bytes_per_s == 2 * hw.hbm.bytes_per_s
    assert fast.hbm_bytes_per_s() == 2 * hw.hbm_bytes_per_s()
    assert fast.peak_flop_per_s["bf16"] == 0.5 * hw.peak_flop_per_s["bf16"]


def test_duplicate_key_is_refused_with_file_line_and_key(write_yaml):
    text = MINIMAL + "launch_overhead: 5 us\n"  # what an appended calibration block once did
    path = write_yaml("dup.yaml", text)
    msg = _error(path)
    line = text.splitlines().index("launch_overhead: 5 us") + 1
    assert "dup.yaml" in msg and "duplicate key 'launch_overhead'" in msg and f"line {line}" in msg
    assert "keep one of them" in msg


def test_duplicate_key_in_a_nested_mapping_is_refused(write_yaml):
    path = write_yaml("dup2.yaml", MINIMAL.replace("cores: 10,", "cores: 10, cores: 12,"))
    assert "duplicate key 'cores'" in _error(path)


def test_presets_hold_no_calibration_knobs():
    """Knobs live in calibration/knobs/, not in the hardware presets."""
    from attn_dse.hardware.loader import preset_dir
    for path in preset_dir().glob("*.yaml"):
        assert "\nmodel:" not in path.read_text(), path


def test_a_what_if_that_changes_a_datasheet_figure_moves_the_measured_ceiling(write_yaml):
    """The README's what-if: the inherited measured copy rate scales with the new datasheet
    bandwidth (same achieved fraction), so the model's ceiling really changes."""
    h100 = load_hardware("h100")
    hbm = load_hardware(write_yaml("hbm4.yaml", "name: h100-hbm4\ndescription: x\nextends: h100\n"
                                                "memory:\n  - {name: hbm, bandwidth: 6.7 TB/s}\n"))
    assert hbm.hbm_bytes_per_s() == pytest.approx(2 * h100.hbm_bytes_per_s())
    assert "scaled by hbm4.yaml" in hbm.achievable.source
    mm = load_hardware(write_yaml("mm.yaml", "name: h100-2x\ndescription: x\nextends: h100\n"
                                             "compute: {matmul: {bf16: 1978.8 TFLOP/s}}\n"))
    assert mm.matmul_flop_per_s("bf16") == pytest.approx(2 * h100.matmul_flop_per_s("bf16"))
    # a preset that measures its own ceiling keeps it (the H200's 4.3 TB/s)
    assert load_hardware("h200").hbm_bytes_per_s() == pytest.approx(4.3e12)
