"""The op graph's matmul FLOPs equal FlopCounterMode's count on independent references.

For every variant and phase, at three small shapes: prefill non-causal and causal (the
references apply the causal mask by attending only visible keys, so the count is the exact
pair count), decode with 1 and 2 query tokens, and training (forward + backward of a
non-causal prefill, compared with the unfused graph: autograd keeps P instead of recomputing).
"""
import pytest

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from attn_dse import attention  # noqa: E402

from . import references as R  # noqa: E402

CASES = {
    "gqa": (dict(n_heads=4, n_kv_heads=2, head_dim=8), R.gqa),
    "mha": (dict(n_heads=4, head_dim=8), lambda L, **p: R.gqa(L, n_kv_heads=p["n_heads"], **p)),
    "mqa": (dict(n_heads=4, head_dim=8), lambda L, **p: R.gqa(L, n_kv_heads=1, **p)),
    "sqa": (dict(n_heads=8, n_query_heads=4, n_kv_heads=2, head_dim=8), R.gqa),
    "swa": (dict(n_heads=4, n_kv_heads=2, head_dim=8, window=3), R.gqa),
    "mla-naive": (dict(n_heads=4, kv_lora_rank=16, qk_rope_dim=4, qk_nope_dim=8, v_head_dim=8,
                       q_lora_rank=12, d_model=32, scheme="naive"), R.mla),
    "mla-absorbed": (dict(n_heads=4, kv_lora_rank=16, qk_rope_dim=4, qk_nope_dim=8, v_head_dim=8,
                          q_lora_rank=12, d_model=32, scheme="absorbed"), R.mla),
    "mla-recompute": (dict(n_heads=4, kv_lora_rank=16, qk_rope_dim=4, qk_nope_dim=8, v_head_dim=8,
                           q_lora_rank=12, d_model=32, scheme="recompute"), R.mla),
    "tpla": (dict(n_heads=4, kv_lora_rank=16, qk_rope_dim=4, qk_nope_dim=8, v_head_dim=8,
                  q_lora_rank=12, d_model=32, tp=2), lambda L, **p: R.mla(L, scheme="absorbed", latent_slice=8, **p)),
    "dsa": (dict(n_heads=4, kv_lora_rank=16, qk_rope_dim=4, qk_nope_dim=8, v_head_dim=8, q_lora_rank=12, d_model=32,
                 index_n_heads=2, index_head_dim=8, index_topk=3), R.dsa),
    "block_sparse": (dict(n_heads=4, n_kv_heads=2, head_dim=8, block_size=2, top_k=2), R.block_sparse),
    "nsa": (dict(n_heads=4, n_kv_heads=2, head_dim=8, cmp_block=4, cmp_stride=2, sel_block=2, n_sel=2,
                 window=3), R.nsa),
    "linear": (dict(n_heads=2, head_dim=8, chunk=3), R.linear_attention),
    "cca": (dict(d_model=32, n_heads=2, compression=2, conv_kernel=3),
            lambda L, **p: R.ccgqa(L, q_compression=p["compression"], kv_compression=p["compression"], **p)),
    "ccgqa": (dict(d_model=32, n_heads=4, q_compression=2, kv_compression=4, conv_kernel=3), R.ccgqa),
    "mfa": (dict(d_model=32, n_heads=4, latent=8), R.mfa),
    "mfa_kr": (dict(d_model=32, n_heads=4, latent=8), lambda L, **p: R.mfa(L, key_reuse=True, **p)),
}
CAUSAL_ONLY = {"nsa"}

# (phase, batch, seq, past, causal)
SHAPES = [("prefill", 1, 8, 0, False), ("prefill", 2, 6, 0, False), ("prefill", 1, 10, 0, False),
          ("prefill", 1, 8, 0, True), ("prefill", 2, 7, 0, True), ("prefill", 1, 11, 0, True),
          ("decode", 2, 1, 6, True), ("decode", 1, 2, 9, True), ("decode", 3, 1, 12, True),
          ("train", 1, 8, 0, False), ("train", 2, 6, 0, False), ("train", 1, 4, 0, False)]


def counted(fn, train):
    with FlopCounterMode(display=False) as fc:
        out = fn()
        if train:
            out.sum().backward()
    return fc.get_total_flops()


def variant_name(case):
    return case.split("-")[0]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("phase,batch,seq,past,causal", SHAPES)
def test_layer_matmul_flops_match_reference(case, phase, batch, seq, past, causal):
    params, ref = CASES[case]
    if case in CAUSAL_ONLY:
        causal = True  # its non-causal shapes run causally (train too)
    wl = attention(variant_name(case), **params)
    kw = dict(context=past) if phase == "decode" else {}
    model = wl.cost(phase=phase, batch=batch, seq=seq, causal=causal, scope="layer", fused=False, **kw).flops
    train = phase == "train"
    ref_params = {k: v for k, v in params.items() if k not in ("scheme", "tp")}
    if "scheme" in params:
        ref_params["scheme"] = params["scheme"]
    L = R.Layer(batch, seq, past, causal, train)
    assert model == counted(lambda: ref(L, **ref_params), train)


def test_cla_model_flops_and_kv_match_reference():
    p = dict(n_heads=4, n_kv_heads=2, head_dim=8)
    for phase, seq, past in (("prefill", 8, 0), ("decode", 1, 5), ("train", 6, 0)):
        wl = attention("cla", base="gqa", share=2, n_layers=4, **p)
        kw = dict(context=past) if phase == "decode" else {}
        model = wl.cost(phase=phase, batch=2, seq=seq, causal=False, scope="model", fused=False, **kw)
        L = R.Layer(2, seq, past, False, phase == "train")
        assert model.flops == counted(lambda: R.cla_model(L, share=2, n_layers=4, **p), phase == "train")


def test_fused_train_adds_flashattention_recompute():
    wl = attention("gqa", n_heads=4, n_kv_heads=2, head_dim=8)
    fused = wl.cost(phase="train", batch=1, seq=8, causal=False, fused=True)
    unfused = wl.cost(phase="train", batch=1, seq=8, causal=False, fused=False)
    pairs = 8 * 8
    # one extra QK^T per head: 2 * h_q * pairs * d_qk
    assert fused.flops - unfused.flops == 2 * 4 * pairs * 8
    # forward + backward core = 3.5x forward with recompute (variants.md section 0)
    fwd = wl.cost(phase="prefill", batch=1, seq=8, causal=False).flops
    assert fused.flops == 3.5 * fwd
