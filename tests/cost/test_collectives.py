"""The collective model against hand arithmetic from NCCL's published tuning constants."""
import numpy as np
import pytest

from attn_dse.cost.collectives import Fabric, Topology, collective
from attn_dse.errors import AttnDseError
from attn_dse.hardware.loader import load_hardware
from attn_dse.cost.collectives import fabric

NV = Fabric("nvlink", 370.8e9, 50e9, name="test")


def test_small_all_reduce_two_gpus_is_ring_ll():
    # ring LL: base 6.6 us + 2(p-1)=2 steps x 0.6 us + 2*(1/2)*16384 B / (370.8e9 * 0.5)
    expect = 6.6e-6 + 2 * 0.6e-6 + 16384 / (370.8e9 * 0.5)
    r = collective("all_reduce", 16384, Topology(2, 1), NV)
    assert (r.algorithm, r.protocol) == ("ring", "LL")
    assert r.time_s == pytest.approx(expect, rel=1e-9)


def test_large_all_reduce_eight_gpus_is_bandwidth_bound():
    n = 2**30
    simple = 8.4e-6 + 14 * 3.4e-6 + 2 * 7 / 8 * n / 370.8e9
    r = collective("all_reduce", n, Topology(8, 1), NV)
    assert r.protocol == "Simple" and r.time_s == pytest.approx(simple, rel=1e-9)
    assert r.bus_bytes == pytest.approx(2 * 7 / 8 * n)


def test_all_gather_and_send_recv():
    n = 64 * 2**20
    ag = collective("all_gather", n, Topology(4, 1), NV, protocol="Simple").time_s
    assert ag == pytest.approx(8.4e-6 + 3 * 3.4e-6 + 3 / 4 * n / 370.8e9)
    sr = collective("send_recv", n, Topology(2, 1), NV, protocol="Simple").time_s
    assert sr == pytest.approx(8.4e-6 + 3.4e-6 + n / 370.8e9)


def test_two_nodes_ring_uses_the_nic_and_tree_wins_small():
    n = 2**30
    # 16 ranks: 2 inter-node steps (2(m-1)) at 14 us, 28 intra steps at max(3.4 us, net overhead 1 us x 3)
    ring = 8.4e-6 + 28 * 3.4e-6 + 2 * 14e-6 + 2 * 15 / 16 * n / 50e9
    assert collective("all_reduce", n, Topology(8, 2), NV, algorithm="ring", protocol="Simple").time_s == pytest.approx(ring)
    small = collective("all_reduce", 4096, Topology(8, 4), NV)
    assert small.algorithm == "tree"


def test_vectorized_and_monotone():
    sizes = np.logspace(12, 30, 40, base=2)
    t = collective("all_reduce", sizes, Topology(4, 1), NV).time_s
    assert t.shape == (40,) and np.all(np.diff(t) >= 0)


def test_call_latency_adds_once():
    f = Fabric("nvlink", 370.8e9, call_latency_s=10e-6)
    a = collective("all_reduce", 16384, Topology(2, 1), NV).time_s
    assert collective("all_reduce", 16384, Topology(2, 1), f).time_s == pytest.approx(a + 10e-6)


def test_preset_fabric_and_errors():
    fab = fabric(load_hardware("h200"))
    assert fab.intra_bytes_per_s == pytest.approx(18 * 20.6e9) and fab.inter_bytes_per_s == pytest.approx(50e9)
    with pytest.raises(AttnDseError, match="no link between nodes"):
        collective("all_reduce", 1, Topology(8, 2), fabric(load_hardware("h20")))
    with pytest.raises(AttnDseError, match="unknown collective"):
        collective("allreduce", 1, Topology(2, 1), NV)
    with pytest.raises(AttnDseError, match="no tree"):
        collective("all_gather", 1, Topology(2, 1), NV, algorithm="tree")
