"""MoBA's released implementation (`block_sparse(execution=gather)`): the PyTorch passes around
its FlashAttention calls, counted kernel by kernel here from moba/wrapper.py and
moba/moba_efficient.py and checked against the variant's grouped ops."""
import numpy as np
import pytest

from attn_dse import attention
from attn_dse.workloads.shape import make_shape

S, H, HKV, D, BLOCK, TOP_K, b = 8, 2, 1, 4, 2, 3, 2
SIDE = ("kv_prepare", "gate_pool", "gate_cast", "gate", "gate_mask", "top_k", "selection_mask", "gather_q",
        "merge_lse", "merge_out")


def selections_by_enumeration():
    """(query, head, earlier block) selections: each query takes top_k - 1 of the blocks before its own."""
    return H * sum(min(TOP_K - 1, q // BLOCK) for q in range(S))


def kernels_by_hand(nnz):
    """(read bytes, write bytes) of every kernel the released code launches, in its order."""
    n = -(-S // BLOCK) - 1  # filtered blocks: all but the last
    Q, HS, nHS, k1 = S * H * D, H * S, n * H * S, TOP_K - 1
    kv = 2 * n * BLOCK * H * D * b
    return [
        (2 * S * HKV * D * b, 2 * S * H * D * b),  # repeat_interleave K and V to the query heads
        (2 * S * H * D * b, 2 * S * H * D * b),  # torch.stack((k, v))
        (kv, kv),  # index_select of the filtered blocks
        (kv, kv),  # rearrange + split + cat into (block, head) batches
        (kv / 2, n * H * D * 4),  # mean-pooled keys, .float()
        (Q * b, Q * 4), (Q * 4, Q * b),  # q.float(), q.type_as(k)
        (Q * 4 + n * H * D * 4, nHS * 4),  # fp32 einsum gate
        (0, 4 * n * S), (4 * n * S, n * S), (4 * n * S, n * S), (2 * n * S, n * S),  # positions, 2 masks, or
        (4 * nHS + n * S, 4 * nHS),  # masked_fill_
        (4 * nHS, k1 * HS * 12),  # topk values fp32 + indices int64
        (4 * nHS, nHS), (nHS, nHS), (0, nHS), (8 * k1 * HS, k1 * HS), (2 * nHS, nHS),  # isinf, not, zeros, scatter, and
        (nHS, 16 * nnz), (nHS, 0),  # nonzero, sum
        (nnz * (8 + D * b), nnz * D * b),  # index_select of the selected queries
        (8 * nnz, 8 * nnz), (8 * nnz, 8 * nnz), (8 * nnz, 8 * nnz), (16 * nnz, 8 * nnz),  # %, *, //, +
        (4 * HS, 4 * HS), (4 * nnz, 4 * nnz),  # LSE transposes
        (4 * HS, 4 * HS), (16 * nnz, 4 * nnz),  # index_reduce: copy, then amax
        (8 * HS, 4 * HS), (12 * nnz, 4 * nnz), (8 * nnz, 4 * nnz),  # subtract max; index_select; subtract
        (4 * HS, 4 * HS), (4 * nnz, 4 * nnz),  # exp, exp
        (16 * nnz, 4 * nnz), (4 * HS, 4 * HS),  # index_add_ of the sums, log
        (8 * HS, 4 * HS), (4 * HS, 4 * HS),  # own-block factor
        (12 * nnz, 4 * nnz), (8 * nnz, 4 * nnz), (4 * nnz, 4 * nnz),  # selected factor
        (8 * HS, 4 * HS),  # lse + max
        (0, 4 * Q), (Q * b + 4 * HS, 4 * Q), (8 * Q, 4 * Q),  # zeros, own output rescaled (fp32), +=
        (nnz * D * b + 4 * nnz, 4 * nnz * D),  # selected outputs rescaled (promoted to fp32)
        (8 * nnz + 8 * nnz * D, 4 * nnz * D),  # index_add_ into the fp32 output (read-modify-write)
        (4 * Q, Q * b),  # .to(bf16)
    ]


@pytest.fixture(scope="module")
def side_ops():
    wl = attention("block_sparse", n_heads=H, n_kv_heads=HKV, head_dim=D, block_size=BLOCK, top_k=TOP_K,
                   execution="gather")
    ops = {op.name: op for op in wl.ops(make_shape("prefill", 1, S, None, True, "bf16"), "core")}
    assert set(SIDE) <= set(ops)
    return [ops[name] for name in SIDE]


def test_gather_passes_match_the_kernel_by_kernel_count(side_ops):
    nnz = selections_by_enumeration()
    hand = kernels_by_hand(nnz)
    assert sum(op.repeat for op in side_ops) == len(hand)  # one launch per kernel
    moved = sum(float(np.sum(t.bytes)) for op in side_ops for t in op.reads + op.writes)
    assert moved == pytest.approx(sum(r + w for r, w in hand), rel=1e-12)


def test_gate_is_an_fp32_product_of_every_query_with_every_earlier_block(side_ops):
    gate = next(op for op in side_ops if op.name == "gate")
    n = -(-S // BLOCK) - 1
    assert gate.flops == 0 and gate.vector_flops == pytest.approx(2 * n * H * S * D)  # FP32 units, not tensor cores


def test_without_the_gate_the_data_movement_stays():
    """gate=false (the indices given): the gate passes go, the copies and the merge stay."""
    wl = attention("block_sparse", n_heads=H, n_kv_heads=HKV, head_dim=D, block_size=BLOCK, top_k=TOP_K,
                   execution="gather", gate=False)
    names = {op.name for op in wl.ops(make_shape("prefill", 1, S, None, True, "bf16"), "core")}
    assert {"kv_prepare", "gather_q", "merge_lse", "merge_out"} <= names
    assert not names & {"gate_pool", "gate_cast", "gate", "gate_mask", "top_k", "selection_mask"}


def test_gather_has_no_decode_path():
    from attn_dse import predict
    from attn_dse.errors import AttnDseError
    wl = attention("block_sparse", n_heads=H, n_kv_heads=HKV, head_dim=D, block_size=BLOCK, top_k=TOP_K,
                   execution="gather")
    with pytest.raises(AttnDseError, match="prefill path.*dense"):
        predict("h100", wl, phase="decode", batch=1, context=64)
