"""The online-softmax step every attention kernel shares (FlashAttention's rescaling), in the
log2 domain: scores arrive multiplied by log2(e) * scale and already masked with -inf."""
import triton
import triton.language as tl


@triton.jit
def start_state(ROWS: tl.constexpr, D: tl.constexpr):
    """The running (acc, l, m) before the first key tile: nothing summed, every max at -inf."""
    return (tl.zeros([ROWS, D], tl.float32), tl.zeros([ROWS], tl.float32),
            tl.full([ROWS], float("-inf"), tl.float32))


@triton.jit
def online_softmax_step(acc, l_i, m_i, qk, v):
    """Fold one tile of scores qk [M, N] and values v [N, D] into the running (acc, l, m)."""
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing visible yet
    p = tl.math.exp2(qk - m_safe[:, None])
    alpha = tl.math.exp2(m_i - m_safe)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return acc, l_i, m_new


@triton.jit
def softmax_rescale(acc, l_i, m_i, qk, qk_scale):
    """The first half of online_softmax_step for raw scores qk (masked with -inf), the scale
    folded into the exp's FMA: (P, acc rescaled, l, m); the caller adds P V to acc. For kernels
    where every row sees a key in its first tile (no max stays at -inf)."""
    m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
    p = tl.math.exp2(qk * qk_scale - m_new[:, None])
    alpha = tl.math.exp2(m_i - m_new)
    return p, acc * alpha[:, None], l_i * alpha + tl.sum(p, 1), m_new


@triton.jit
def finish(acc, l_i, m_i):
    """Normalized output and its log2-sum-exp (-inf for rows that saw no key)."""
    seen = l_i > 0
    l_safe = tl.where(seen, l_i, 1.0)
    return acc / l_safe[:, None], tl.where(seen, m_i + tl.math.log2(l_safe), float("-inf"))
