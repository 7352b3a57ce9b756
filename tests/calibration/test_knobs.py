"""The knob store: lookup along `extends:`, per implementation, defaults, round trip, errors."""
import re

import pytest

from attn_dse import load_hardware
from attn_dse.calibration import knobs as store
from attn_dse.cost.family import families
from attn_dse.cost.knobs import default_knobs, knobs_for
from attn_dse.errors import AttnDseError
from attn_dse.validation.compare import measured_families
from attn_dse.validation.fit import parameters


def test_stored_h100_knobs_round_trip_through_the_dumper(tmp_path):
    k = knobs_for(load_hardware("h100"))
    path = store.write(tmp_path / "h100" / "triton.yaml", k, "h100", "test")
    again = store.merge(default_knobs(load_hardware("h100")), store.strict_yaml.read(path), str(path))
    assert again.flat() == k.flat() and again.source == k.source


def test_families_left_at_their_defaults_are_not_stored_and_stay_the_loaders_defaults(tmp_path, write_yaml):
    h100 = load_hardware("h100")
    fitted = knobs_for(h100).with_values({"compute_efficiency.decode_widen": 0.123})
    path = store.write(tmp_path / "h100" / "triton.yaml", fitted, "h100", "test", default_knobs(h100))
    stored = store.strict_yaml.read(path)["families"]
    assert "decode_widen" in stored and "prefill_ws" not in stored and "gemm" not in stored
    # a preset with twice the HBM reads the file: the families it does not store scale with it
    fast = load_hardware(write_yaml("h100-fast.yaml", "name: h100-fast\ndescription: x\nextends: h100\n"
                                                      "memory:\n  - {name: hbm, bandwidth: 6.7 TB/s}\n"))
    again = store.merge(default_knobs(fast), store.strict_yaml.read(path), str(path))
    assert again.family("decode_widen").compute_efficiency == 0.123
    assert again.family("prefill_ws").core_bytes_per_s == default_knobs(fast).family("prefill_ws").core_bytes_per_s \
        > 1.9 * default_knobs(h100).family("prefill_ws").core_bytes_per_s


def test_a_what_if_preset_inherits_the_knobs_of_what_it_extends(write_yaml):
    path = write_yaml("h100-hbm4.yaml", "name: h100-hbm4\ndescription: x\nextends: h100\n"
                                         "memory:\n  - {name: hbm, bandwidth: 6.7 TB/s}\n")
    hw = load_hardware(path)
    assert hw.ancestry == ("h100-hbm4", "h100")
    raw, _ = store.stored(("h100",), "triton")  # what the H100 file stores (the rest are HBM-scaled defaults)
    fitted = {n for n, *_ in parameters(measured_families()) if n.partition(".")[2] in ("", *raw["families"])}
    assert len(fitted) == 8 * 3 + 1 + 5  # eight stored families (decode_widen: its own tile overhead too), the shared knobs
    mine, h100 = knobs_for(hw).flat(), knobs_for(load_hardware("h100")).flat()
    assert {k: mine[k] for k in fitted} == {k: h100[k] for k in fitted}
    assert knobs_for(hw).source == knobs_for(load_hardware("h100")).source


def test_an_unknown_implementation_runs_on_the_family_defaults():
    hw = load_hardware("h100")
    k = knobs_for(hw, "somebody-elses-kernel")
    assert k.source.startswith("defaults") and k.implementation == "somebody-elses-kernel"
    for name, fam in families().items():
        assert k.family(name).compute_efficiency == fam.compute_efficiency
    assert k.launch_overhead_s == hw.launch_overhead_s  # the preset's own figure


def test_user_knob_directory_is_searched_first(tmp_path, monkeypatch):
    hw = load_hardware("h100")
    mine = knobs_for(hw).with_values({"compute_efficiency.prefill": 0.5}, source="mine")
    store.write(tmp_path / "h100" / "triton.yaml", mine, "h100", "test")
    monkeypatch.setenv("ATTN_DSE_KNOBS", str(tmp_path))
    assert knobs_for(hw).family("prefill").compute_efficiency == 0.5 and knobs_for(hw).source == "mine"


def test_a_declared_profile_survives_a_refit_and_the_dumper(tmp_path):
    """The profile is declared (read from the kernel's source), not fitted: a knob file written
    from refitted knobs keeps it, with its source."""
    hw = load_hardware("h200")
    k = knobs_for(hw, "flash")
    assert k.profile.decode_block_m == 128 and k.profile.split_rows == 64 and "flash_api.cpp" in k.profile.source
    refit = k.with_values({"compute_efficiency.decode": 0.3}, source="refit")
    path = store.write(tmp_path / "h200" / "flash.yaml", refit, "h200", "test")
    again = store.merge(default_knobs(hw, "flash"), store.strict_yaml.read(path), str(path))
    assert again.profile == k.profile and again.family("decode").compute_efficiency == 0.3
    assert default_knobs(hw).profile.decode_block_m == 0  # our own kernel declares none


@pytest.mark.parametrize("text,words", [
    ("profile: {decode_rows: 128}\n", ["profile.decode_rows: unknown property", "did you mean 'decode_block_m'"]),
    ("profile: {split_block_m: -64}\n", ["profile.split_block_m: -64 is not a non-negative number"]),
    ("l2_reus: 0.9\n", ["l2_reus: unknown knob", "did you mean 'l2_reuse'"]),
    ("families: {prefil: {compute_efficiency: 0.5}}\n", ["families.prefil: unknown kernel family"]),
    ("families: {prefill: {compute_efficiency: fast}}\n", ["compute_efficiency: 'fast' is not a non-negative number"]),
    ("l2_reuse: 0.9\nl2_reuse: 0.8\n", ["duplicate key 'l2_reuse'", "line 2"]),
    ("measured: [prefill, prefil_gluon]\n", ["measured: 'prefil_gluon' is not a kernel family"]),
])
def test_bad_knob_files_name_the_file_and_the_knob(tmp_path, monkeypatch, text, words):
    (tmp_path / "h100").mkdir()
    (tmp_path / "h100" / "triton.yaml").write_text(text)
    monkeypatch.setenv("ATTN_DSE_KNOBS", str(tmp_path))
    with pytest.raises(AttnDseError) as info:
        knobs_for(load_hardware("h100"))
    msg = str(info.value)
    assert "triton.yaml" in msg and all(w in msg for w in words), msg


def test_the_families_fitted_on_measurements_round_trip_and_grow_with_each_fit(tmp_path, monkeypatch):
    """`measured` names the families a file's knobs were fitted on (what the prefill family's
    dispatch asks before timing a kernel with them); written, read back, and a fit of one
    family adds it to those already there."""
    from attn_dse.validation import fit
    from attn_dse.validation.compare import data_dir, load_measurements
    hw = load_hardware("h200")
    k = knobs_for(hw)
    assert {"prefill_gluon", "prefill_ws", "decode_regs"} <= k.measured and "block_sparse" not in k.measured
    # the H100's first fit predates the list; its refits of the decode kernels and the fp8 ones named them
    assert knobs_for(load_hardware("h100")).measured == {"decode", "mla_decode", "mla_decode_wgmma", "mla_decode_ws",
                                                         "decode_regs", "decode_widen"}
    path = store.write(tmp_path / "h200" / "triton.yaml", k, "h200", "test")
    assert store.merge(default_knobs(hw), store.strict_yaml.read(path), str(path)).measured == k.measured
    import dataclasses
    store.write(path, dataclasses.replace(k, measured=k.measured - {"prefill_gluon"}), "h200", "test")
    monkeypatch.setenv("ATTN_DSE_KNOBS", str(tmp_path))
    assert "prefill_gluon" not in knobs_for(hw).measured
    rows = load_measurements(data_dir() / "h200-prefill-gluon-measurements.csv")
    refit, _ = fit.calibrate(hw, rows, "triton", max_evals=5, only=("prefill_gluon",))
    assert refit.measured == k.measured


def test_a_knob_file_written_during_the_process_is_read_by_the_next_lookup(tmp_path, monkeypatch):
    """The store is listed once and re-listed when a file or folder of it changes: a file the
    dumper writes reaches the next knobs_for at once; one edited behind its back once the
    listing is older than RECHECK_S (no stale cache, no walk per lookup)."""
    import os
    hw = load_hardware("h100")
    monkeypatch.setenv("ATTN_DSE_KNOBS", str(tmp_path))
    monkeypatch.setattr(store, "RECHECK_S", 3600.0)
    packaged = knobs_for(hw).family("prefill").compute_efficiency
    path = store.write(tmp_path / "h100" / "triton.yaml",
                       knobs_for(hw).with_values({"compute_efficiency.prefill": 0.5}), "h100", "test")
    assert knobs_for(hw).family("prefill").compute_efficiency == 0.5 != packaged
    mtime = path.stat().st_mtime_ns
    path.write_text(path.read_text().replace("compute_efficiency: 0.5", "compute_efficiency: 0.25"))
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))  # a coarse clock may not have moved
    assert knobs_for(hw).family("prefill").compute_efficiency == 0.5  # checked less than an hour ago
    monkeypatch.setattr(store, "RECHECK_S", 0.0)
    assert knobs_for(hw).family("prefill").compute_efficiency == 0.25
    assert "triton" in store.implementations_stored()


def test_a_familys_own_tile_step_round_trips_and_only_where_it_has_one(tmp_path):
    """The warp-specialized prefills have a tile step of their own (their producer/consumer
    hand-off), and so has the widening fp8 decode (its softmax per 16-row slice): the fit varies
    it, the file stores it, and the other families keep the shared knob (no key of theirs)."""
    import yaml
    hw = load_hardware("h200")
    k = knobs_for(hw)
    flat = k.flat()
    own = [key for key in flat if key.startswith("tile_overhead_cycles.")]
    assert sorted(own) == ["tile_overhead_cycles.decode_widen", "tile_overhead_cycles.prefill_gluon",
                           "tile_overhead_cycles.prefill_ws"]
    assert "tile_overhead_cycles.prefill_ws" in {n for n, *_ in parameters(("prefill", "prefill_ws"))}
    assert "tile_overhead_cycles.prefill" not in {n for n, *_ in parameters(("prefill", "prefill_ws"))}
    mine = k.with_values({"tile_overhead_cycles.prefill_ws": 123.0})
    path = store.write(tmp_path / "h200" / "triton.yaml", mine, "h200", "test")
    raw = yaml.safe_load(path.read_text())
    assert raw["families"]["prefill_ws"]["tile_overhead_cycles"] == 123.0
    assert all("tile_overhead_cycles" not in v for n, v in raw["families"].items()
               if n not in ("prefill_ws", "prefill_gluon", "decode_widen"))
    again = store.merge(default_knobs(hw), store.strict_yaml.read(path), str(path))
    assert again.family("prefill_ws").tile_overhead_cycles == 123.0 and again.family("prefill").tile_overhead_cycles is None


def test_the_tile_step_a_family_has_replaces_the_shared_one():
    from attn_dse.cost import tiled
    from attn_dse.cost.roofline import ceilings
    hw = load_hardware("h200")
    c = ceilings(hw, "bf16", True)
    k = knobs_for(hw).with_values({"tile_overhead_cycles": 10.0, "tile_overhead_cycles.prefill_ws": 1000.0})

    def t_mm(family, iterations):
        return tiled.finish(hw, c, k, k.family(family), 0.0, 0.0, 1.0, 1.0, 0.0, hw.cores, iterations, 0.0, True,
                            2)["t_mm"]
    # one step on each core (`iterations` counts them over all cores): one step's cycles at the clock
    assert t_mm("prefill_ws", hw.cores) == pytest.approx(1000.0 / hw.clock_hz)
    assert t_mm("prefill", hw.cores) == pytest.approx(10.0 / hw.clock_hz)


def test_a_refit_of_some_families_replaces_their_note_in_the_source(tmp_path, monkeypatch):
    """Each family's note in the stored source says how its knobs were last fitted: writing a
    refit of prefill_gluon twice leaves one prefill_gluon note (the last), and the notes of the
    other families as they were."""
    from attn_dse.validation import fit
    from attn_dse.validation.compare import data_dir, load_measurements
    monkeypatch.setenv("ATTN_DSE_KNOBS", str(tmp_path))
    hw = load_hardware("h200")
    before = knobs_for(hw).source
    rows = load_measurements(data_dir() / "h200-prefill-gluon-measurements.csv")
    for evals in (3, 5):
        refit, report = fit.calibrate(hw, rows, "triton", max_evals=evals, only=("prefill_gluon",))
        fit.write_knobs(hw, refit, "h200-prefill-gluon-measurements.csv", report)
    after = knobs_for(hw).source
    assert after.count("prefill_gluon: calibrated") == 1 and after.count("backward: calibrated") == 1
    assert after.endswith(fit.provenance_note("h200-prefill-gluon-measurements.csv", report))
    notes = re.findall(r"(?:^|; )([a-z_, ]+: calibrated [^;]*; held-out [^;]*?worst \d+%)", before)
    others = [n for n in notes if not n.startswith("prefill_gluon:")]
    assert len(others) == len(notes) - 1 >= 5 and all(n in after for n in others)
    # a refit of two families supersedes the notes on either: one note stays, theirs
    refit, report = fit.calibrate(hw, rows, "triton", max_evals=3, only=("prefill_gluon", "prefill_ws"))
    fit.write_knobs(hw, refit, "h200-prefill-gluon-measurements.csv", report)
    last = knobs_for(hw).source
    keys = re.findall(r"(?:^|; )([a-z_, ]+): calibrated", last)
    assert "prefill_gluon" not in keys and "prefill_ws" not in keys and keys.count("prefill_gluon, prefill_ws") == 1
    assert all(n in last for n in others if not n.startswith("prefill_ws:"))


def test_a_knob_no_row_determines_stays_where_the_defaults_start_it(monkeypatch):
    """Rows whose time follows the compute efficiency alone (a stand-in for compare: measured x
    0.5 / efficiency) fit it to 0.5; the memory efficiency, which no row sees, stays at the
    family's default and the core's rate at its fair share of HBM, where the fit starts them."""
    from types import SimpleNamespace as NS

    import numpy as np

    from attn_dse.validation import fit
    from attn_dse.validation.compare import data_dir, load_measurements
    hw = load_hardware("h200")
    rows = [r for r in load_measurements(data_dir() / "h200-mla-seesaw-measurements.csv") if "seesaw" in r["config"]]

    def compare(hw, rows, knobs):
        eff = knobs.family("mla_decode_seesaw").compute_efficiency
        return NS(predicted=np.array([float(r["median_s"]) * 0.5 / eff for r in rows]),
                  summary=lambda mask=None: {"all": {"mape": 0.0, "worst": 0.0, "n": len(rows)}})
    monkeypatch.setattr(fit, "compare", compare)
    fitted, _ = fit.calibrate(hw, rows, "triton", max_evals=200, only=("mla_decode_seesaw",))
    got, start = fitted.family("mla_decode_seesaw"), default_knobs(hw).family("mla_decode_seesaw")
    assert got.compute_efficiency == pytest.approx(0.5, rel=1e-3)
    assert got.memory_efficiency == pytest.approx(start.memory_efficiency, rel=1e-6)
    assert got.core_bytes_per_s == pytest.approx(hw.achievable.hbm_bytes_per_s / hw.cores, rel=1e-6)
