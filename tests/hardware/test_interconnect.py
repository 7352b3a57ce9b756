"""The interconnect keys: parsed in SI units, inherited, and strict about unknown keys and kinds."""
import pytest

from attn_dse.errors import AttnDseError
from attn_dse.hardware.loader import load_hardware


def write(tmp_path, text, base="h100"):
    p = tmp_path / "x.yaml"
    p.write_text(f"name: x\nextends: {base}\n" + text)
    return p


def test_parsed_and_inherited(tmp_path):
    hw = load_hardware(write(tmp_path, "interconnect: {call_latency: 12 us, scale_out: {kind: roce, bandwidth: 50 GB/s}}\n"))
    ic = hw.interconnect
    assert ic.call_latency_s == pytest.approx(12e-6)
    assert ic.scale_out.kind == "roce" and ic.scale_out.bytes_per_s == pytest.approx(50e9)
    assert ic.bus_bytes_per_s == pytest.approx(18 * 20.6e9) and ic.kind == "nvswitch"  # from h100
    assert hw.scaled(interconnect=2.0).interconnect.bus_bytes_per_s == pytest.approx(2 * 18 * 20.6e9)


@pytest.mark.parametrize("text,needle", [
    ("interconnect: {kind: nvlinc}\n", "not a known link kind"),
    ("interconnect: {scale_out: {kind: infiniband, bandwith: 50 GB/s}}\n", "unknown field"),
    ("interconnect: {scale_out: {bandwidth: 50 GB/s}}\n", "scale_out.kind: missing"),
    ("interconnect: {bus_bandwidth: 370 GBps}\n", "bus_bandwidth"),
])
def test_bad_interconnect(tmp_path, text, needle):
    with pytest.raises(AttnDseError, match=needle):
        load_hardware(write(tmp_path, text, base="h20"))  # h20 has no scale-out to inherit
