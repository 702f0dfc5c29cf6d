"""Writer of tiny random llama-architecture GGUF models for tests.

``write_tiny_gguf(path, ...)`` produces a complete, loadable GGUF file: all
hyper-parameter metadata, a small but real GPT-2 style byte-level BPE
tokenizer (3 ChatML control tokens, the 256 byte-level symbols, ~50 merges), a
ChatML chat template and random weights quantized with ``gguf.quants``.

Deliberately independent of ``lmdesk``.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType

__all__ = [
    "write_tiny_gguf",
    "bytes_to_unicode",
    "tiny_tokenizer_vocab",
    "CHATML_TEMPLATE",
    "SPECIAL_TOKENS",
    "MERGES",
]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Merge rules, in priority order, written as the two byte-level pieces.
# Every piece must be a byte-level symbol or the result of an earlier merge.
MERGES: list[tuple[str, str]] = [
    ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "i"), ("i", "n"), ("Ġ", "a"),
    ("e", "r"), ("o", "n"), ("r", "e"), ("a", "t"), ("e", "n"),
    ("Ġ", "s"), ("Ġ", "w"), ("o", "u"), ("i", "s"), ("Ġ", "o"),
    ("Ġ", "c"), ("a", "n"), ("e", "s"), ("o", "r"), ("in", "g"),
    ("u", "s"), ("Ġ", "b"), ("Ġ", "f"), ("Ġ", "p"), ("Ġ", "m"),
    ("l", "l"), ("a", "r"), ("Ġ", "h"), ("Ġ", "d"), ("Ġo", "f"),
    ("n", "d"), ("Ġa", "nd"), ("Ġi", "s"), ("Ġt", "o"), ("Ġw", "h"),
    ("Ġwh", "at"), ("Ġc", "a"), ("Ġca", "p"), ("i", "t"), ("a", "l"),
    ("it", "al"), ("Ġcap", "ital"), ("Ġ", "F"), ("r", "an"), ("Ġ", "P"),
    ("ar", "is"), ("Ġ", "Ġ"), ("Ċ", "Ċ"), ("us", "er"), ("Ġ", "y"),
    ("Ġy", "ou"), ("Ġ", "I"), ("Ġ", "T"), ("Ġ", "W"), ("o", "w"),
]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character mapping."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _checked_merges() -> list[tuple[str, str]]:
    """MERGES, asserting each uses known pieces and yields a new token."""
    symbols = set(bytes_to_unicode().values())
    for a, b in MERGES:
        assert a in symbols and b in symbols, f"merge {a!r} {b!r} uses an unknown piece"
        assert a + b not in symbols, f"merge {a!r} {b!r} duplicates an existing token"
        symbols.add(a + b)
    return list(MERGES)


def tiny_tokenizer_vocab() -> tuple[list[str], list[int], list[str]]:
    """(tokens, token_types, merges) of the tiny byte-level BPE tokenizer."""
    b2u = bytes_to_unicode()
    tokens = list(SPECIAL_TOKENS)
    types = [int(gguf.TokenType.CONTROL)] * len(SPECIAL_TOKENS)
    for byte in range(256):
        tokens.append(b2u[byte])
        types.append(int(gguf.TokenType.NORMAL))
    merges = []
    for a, b in _checked_merges():
        tokens.append(a + b)
        types.append(int(gguf.TokenType.NORMAL))
        merges.append(f"{a} {b}")
    assert len(set(tokens)) == len(tokens)
    return tokens, types, merges


_BLOCK_TYPES = {
    GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1,
    GGMLQuantizationType.Q5_0, GGMLQuantizationType.Q5_1,
    GGMLQuantizationType.Q8_0,
}
# Types gguf-py cannot quantize: random blocks (see random_blocks), offsets of
# their float16 scale fields in each block.
_RANDOM_BLOCK_SCALES = {
    GGMLQuantizationType.Q5_K: (0, 2),
    GGMLQuantizationType.Q6_K: (208,),
    GGMLQuantizationType.IQ4_NL: (0,),
    GGMLQuantizationType.IQ4_XS: (0,),
}
SUPPORTED_TYPES = (
    GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16,
    *sorted(_BLOCK_TYPES, key=int), GGMLQuantizationType.Q4_K, *_RANDOM_BLOCK_SCALES,
)
# What each architecture's blocks have besides llama's (as llama.cpp loads them).
QK_NORM_ARCHS = ("qwen3", "gemma3")
POST_NORM_ARCHS = ("gemma2", "gemma3")
FUSED_ARCHS = ("phi3",)


def _add_weight(writer: gguf.GGUFWriter, name: str, arr: np.ndarray, qtype: GGMLQuantizationType) -> None:
    """Add a (numpy layout) float tensor, quantized to qtype."""
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    qtype = GGMLQuantizationType(qtype)
    if qtype == GGMLQuantizationType.F32:
        writer.add_tensor(name, arr)
    elif qtype == GGMLQuantizationType.F16:
        writer.add_tensor(name, arr.astype(np.float16))
    elif qtype in _BLOCK_TYPES or qtype == GGMLQuantizationType.BF16:
        block, _ = gguf.GGML_QUANT_SIZES[qtype]
        if arr.shape[-1] % block != 0:
            raise ValueError(f"{name}: row length {arr.shape[-1]} not a multiple of {block} for {qtype.name}")
        q = gguf.quants.quantize(arr, qtype)  # uint8, shape (*rows, bytes_per_row)
        assert q.dtype == np.uint8
        # raw_shape is the numpy *byte* shape; the writer converts it to the
        # element shape (quant_shape_from_byte_shape) and reverses to GGUF order.
        writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
    elif qtype == GGMLQuantizationType.Q4_K:
        q = quantize_q4_k(arr)
        writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
    elif qtype in _RANDOM_BLOCK_SCALES:
        q = random_blocks(arr, qtype)
        writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
    else:
        raise NotImplementedError(f"tiny_gguf does not write {qtype!r}")


def quantize_q4_k(arr: np.ndarray) -> np.ndarray:
    """A plain Q4_K quantizer (gguf-py only dequantizes K-quants): per run of
    32, scale = range / 15 and minimum = -low; per super-block of 256, the
    runs' scales and minimums in 6 bits under float16 ``d`` and ``dmin``.
    Returns uint8 ``(*rows, K/256 * 144)`` as llama.cpp lays the blocks out."""
    rows = arr.shape[:-1]
    x = arr.reshape(-1, 8, 32).astype(np.float32)  # [super-blocks, runs, 32]
    lo = np.minimum(x.min(-1), 0.0)
    scale = (x.max(-1) - lo) / 15.0
    minimum = -lo
    d = (scale.max(-1) / 63.0).astype(np.float16)
    dmin = (minimum.max(-1) / 63.0).astype(np.float16)
    df, dminf = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    sc = np.clip(np.round(np.divide(scale, df, out=np.zeros_like(scale), where=df > 0)), 0, 63).astype(np.uint8)
    mn = np.clip(np.round(np.divide(minimum, dminf, out=np.zeros_like(minimum), where=dminf > 0)), 0, 63).astype(np.uint8)
    step = (df * sc)[..., None]
    q = np.clip(np.round(np.divide(x + (dminf * mn)[..., None], step, out=np.zeros_like(x), where=step > 0)), 0, 15)
    q = q.astype(np.uint8)
    packed_scales = np.concatenate([
        sc[:, :4] | ((sc[:, 4:] & 0x30) << 2),
        mn[:, :4] | ((mn[:, 4:] & 0x30) << 2),
        (sc[:, 4:] & 0x0F) | ((mn[:, 4:] & 0x0F) << 4),
    ], axis=1).astype(np.uint8)
    pairs = q.reshape(-1, 4, 2, 32)
    qs = (pairs[:, :, 0] | (pairs[:, :, 1] << 4)).reshape(-1, 128).astype(np.uint8)
    blocks = np.concatenate([d.reshape(-1, 1).view(np.uint8), dmin.reshape(-1, 1).view(np.uint8), packed_scales, qs],
                            axis=1)
    return blocks.reshape(*rows, -1)


def llama3_rope_factors(head_dim: int, base: float, old_ctx: int, factor: float = 8.0, low: float = 1.0,
                        high: float = 4.0) -> np.ndarray:
    """Llama 3.1's per-frequency rotary divisors: 1 for short wavelengths,
    ``factor`` for long ones, a smooth blend between (llama.cpp's converter)."""
    freqs = 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    wavelen = 2 * np.pi / freqs
    smooth = (old_ctx / wavelen - low) / (high - low)
    out = np.where(wavelen < old_ctx / high, 1.0,
                   np.where(wavelen > old_ctx / low, factor, 1.0 / ((1 - smooth) / factor + smooth)))
    return out.astype(np.float32)


def random_blocks(arr: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """Blocks of ``qtype`` holding random integers and sub-scales (from a generator
    seeded by ``arr``), their float16 scales set so the weights have ``arr``'s
    standard deviation: real blocks of a type gguf-py cannot quantize, for
    random test models (the values are not ``arr``'s, only their size)."""
    block, nbytes = gguf.GGML_QUANT_SIZES[qtype]
    rows, k = int(np.prod(arr.shape[:-1])), arr.shape[-1]
    if k % block:
        raise ValueError(f"row length {k} not a multiple of {block} for {qtype.name}")
    rng = np.random.default_rng(zlib.crc32(arr.tobytes()))
    raw = rng.integers(0, 256, (rows, k // block, nbytes), dtype=np.uint8)

    def set_scales(value: float) -> None:
        half = np.full((rows, k // block, 1), value, np.float16).view(np.uint8)
        for offset in _RANDOM_BLOCK_SCALES[qtype]:
            raw[..., offset:offset + 2] = half

    set_scales(1.0)
    unit = float(gguf.quants.dequantize(raw.reshape(rows, -1), qtype).std())
    set_scales(float(arr.std()) / unit)
    return raw.reshape(*arr.shape[:-1], -1)


def write_tiny_gguf(
    path,
    *,
    n_layer: int = 2,
    d_model: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    d_ff: int = 128,
    vocab: int | None = None,
    ctx: int = 128,
    rope_base: float = 10000.0,
    eps: float = 1e-5,
    weight_type: GGMLQuantizationType = GGMLQuantizationType.F32,
    embed_type: GGMLQuantizationType | None = None,
    output_type: GGMLQuantizationType | None = None,
    tied: bool = True,
    seed: int = 0,
    chat_template: str | None = CHATML_TEMPLATE,
    arch: str = "llama",
    extra_metadata: dict | None = None,
    weight_scale: float | None = None,
    qkv_bias: bool = False,
    head_dim: int | None = None,
    add_bos: bool = False,
    rope_factors: bool = False,
    llama3_rope: int | None = None,
) -> Path:
    """Write a tiny random llama GGUF model to ``path`` and return the path.

    * ``vocab``: None -> exactly the tokenizer's size (``len(tokens)`` == 315).
      A larger value pads the vocab with NORMAL tokens ``<|pad_N|>`` (no
      merges); smaller values are rejected.
    * ``weight_type``: type of every 2-D matrix in the blocks.
    * ``embed_type``: type of ``token_embd.weight`` (default: ``weight_type``).
    * ``output_type``: type of ``output.weight`` when ``tied=False``
      (default: ``embed_type`` or ``weight_type``).
    * Norm weights are always F32 (``1 + 0.1*N(0,1)``).  Matrices are
      ``N(0, weight_scale)`` with ``weight_scale`` defaulting to
      ``0.4/sqrt(in_features)``; q/k get 2.5x that so attention is clearly
      non-uniform (score std ~1) and RoPE matters; attn_output/ffn_down get
      5x so each block changes the residual stream about as much as the
      embedding (otherwise a tied model just predicts its input token).
      Embedding (and untied output) rows are ``N(0, 2/sqrt(d_model))`` so
      logits have std ~2: they vary a lot but softmax does not saturate.
    * ``extra_metadata``: {key: value} added after everything else. Values
      may be ``(value, GGUFValueType)`` tuples to force a type; otherwise
      bool/int/float/str/list are mapped to BOOL/UINT32/FLOAT32/STRING/ARRAY.
      ``{arch}`` in keys is formatted with the architecture name.
    * ``qkv_bias``: F32 biases on q, k and v (``blk.N.attn_{q,k,v}.bias``), as
      qwen2 files have them; large enough to move the logits visibly.
    * ``llama3_rope``: a ``rope_freqs.weight`` as llama.cpp's converter makes it
      for Llama 3.1+ ("llama3" rope scaling: factor 8, low 1, high 4), with
      this original context (small, so that the tiny model's frequencies feel it).
    * ``rope_factors``: Phi-3 long-context divisors ``rope_factors_short`` /
      ``rope_factors_long`` (F32, 1 … 3) beside the weights.
    * ``add_bos``: the tokenizer puts ``<|endoftext|>`` (the BOS) before every text.
    * ``head_dim``: numbers per attention head (``{arch}.attention.key_length``
      and ``value_length``), when not ``d_model / n_head`` (Gemma's are wider).
    * ``arch`` decides the extra tensors of a block: per-head q/k norms for
      qwen3 and gemma3, post-attention and post-feed-forward norms for gemma2
      and gemma3 (F32, like the other norms).
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    weight_type = GGMLQuantizationType(weight_type)
    embed_type = GGMLQuantizationType(embed_type) if embed_type is not None else weight_type
    output_type = GGMLQuantizationType(output_type) if output_type is not None else embed_type
    if head_dim is None and d_model % n_head != 0:
        raise ValueError("d_model must be divisible by n_head")
    if n_head % n_head_kv != 0:
        raise ValueError("n_head must be divisible by n_head_kv")
    explicit_head_dim = head_dim is not None
    head_dim = head_dim if explicit_head_dim else d_model // n_head

    tokens, token_types, merges = tiny_tokenizer_vocab()
    if vocab is None:
        vocab = len(tokens)
    if vocab < len(tokens):
        raise ValueError(f"vocab must be >= {len(tokens)} (the tokenizer's size)")
    for i in range(vocab - len(tokens)):
        tokens.append(f"<|pad_{i}|>")
        token_types.append(int(gguf.TokenType.NORMAL))

    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"tiny-{arch}-{n_layer}L-{d_model}d-seed{seed}")
    w.add_type("model")
    w.add_context_length(ctx)
    w.add_embedding_length(d_model)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(d_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_freq_base(float(rope_base))
    w.add_rope_dimension_count(head_dim)
    if explicit_head_dim:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(float(eps))
    w.add_vocab_size(vocab)
    w.add_file_type(_file_type(weight_type))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_bos_token_id(0)  # <|endoftext|>; add_bos_token is False anyway
    w.add_eos_token_id(2)  # <|im_end|>
    w.add_unk_token_id(0)
    w.add_pad_token_id(2)
    w.add_add_bos_token(add_bos)
    w.add_add_eos_token(False)
    if chat_template is not None:
        w.add_chat_template(chat_template)

    for key, value in (extra_metadata or {}).items():
        _add_kv(w, key.format(arch=arch), value)

    # ---- weights ----
    def mat(out_f, in_f, gain=1.0):
        scale = weight_scale if weight_scale is not None else 0.4 / np.sqrt(in_f)
        return rng.normal(0.0, gain * scale, size=(out_f, in_f)).astype(np.float32)

    embed_scale = 2.0 / np.sqrt(d_model)

    def norm(n):
        return (1.0 + 0.1 * rng.normal(size=(n,))).astype(np.float32)

    _add_weight(w, "token_embd.weight", rng.normal(0.0, embed_scale, size=(vocab, d_model)).astype(np.float32), embed_type)
    for L in range(n_layer):
        p = f"blk.{L}."
        _add_weight(w, p + "attn_norm.weight", norm(d_model), GGMLQuantizationType.F32)
        q, k, v = mat(n_head * head_dim, d_model, 2.5), mat(n_head_kv * head_dim, d_model, 2.5), mat(n_head_kv * head_dim, d_model)
        if arch in FUSED_ARCHS:  # phi3: one matrix, q then k then v
            _add_weight(w, p + "attn_qkv.weight", np.concatenate([q, k, v]), weight_type)
        else:
            _add_weight(w, p + "attn_q.weight", q, weight_type)
            _add_weight(w, p + "attn_k.weight", k, weight_type)
            _add_weight(w, p + "attn_v.weight", v, weight_type)
        if qkv_bias:
            for name, n in (("q", n_head), ("k", n_head_kv), ("v", n_head_kv)):
                bias = rng.normal(0.0, 0.5, size=(n * head_dim,)).astype(np.float32)
                _add_weight(w, p + f"attn_{name}.bias", bias, GGMLQuantizationType.F32)
        if arch in QK_NORM_ARCHS:
            _add_weight(w, p + "attn_q_norm.weight", norm(head_dim), GGMLQuantizationType.F32)
            _add_weight(w, p + "attn_k_norm.weight", norm(head_dim), GGMLQuantizationType.F32)
        _add_weight(w, p + "attn_output.weight", mat(d_model, n_head * head_dim, 5.0), weight_type)
        _add_weight(w, p + "ffn_norm.weight", norm(d_model), GGMLQuantizationType.F32)
        gate, up = mat(d_ff, d_model), mat(d_ff, d_model)
        if arch in FUSED_ARCHS:  # phi3: ffn_up holds the gate's rows, then up's
            _add_weight(w, p + "ffn_up.weight", np.concatenate([gate, up]), weight_type)
        else:
            _add_weight(w, p + "ffn_gate.weight", gate, weight_type)
            _add_weight(w, p + "ffn_up.weight", up, weight_type)
        _add_weight(w, p + "ffn_down.weight", mat(d_model, d_ff, 5.0), weight_type)
        if arch in POST_NORM_ARCHS:
            _add_weight(w, p + "post_attention_norm.weight", norm(d_model), GGMLQuantizationType.F32)
            _add_weight(w, p + "post_ffw_norm.weight", norm(d_model), GGMLQuantizationType.F32)
    _add_weight(w, "output_norm.weight", norm(d_model), GGMLQuantizationType.F32)
    if llama3_rope is not None:
        _add_weight(w, "rope_freqs.weight", llama3_rope_factors(head_dim, rope_base, llama3_rope), GGMLQuantizationType.F32)
    if rope_factors:
        short = np.linspace(1.0, 3.0, head_dim // 2).astype(np.float32)
        _add_weight(w, "rope_factors_short.weight", short, GGMLQuantizationType.F32)
        _add_weight(w, "rope_factors_long.weight", short * 4, GGMLQuantizationType.F32)
    if not tied:
        # scaled like the embedding so untied logits have a similar range
        _add_weight(w, "output.weight", rng.normal(0.0, embed_scale, size=(vocab, d_model)).astype(np.float32), output_type)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _file_type(t: GGMLQuantizationType) -> int:
    ft = gguf.LlamaFileType
    return int({
        GGMLQuantizationType.F32: ft.ALL_F32,
        GGMLQuantizationType.F16: ft.MOSTLY_F16,
        GGMLQuantizationType.BF16: ft.MOSTLY_BF16,
        GGMLQuantizationType.Q4_0: ft.MOSTLY_Q4_0,
        GGMLQuantizationType.Q4_1: ft.MOSTLY_Q4_1,
        GGMLQuantizationType.Q5_0: ft.MOSTLY_Q5_0,
        GGMLQuantizationType.Q5_1: ft.MOSTLY_Q5_1,
        GGMLQuantizationType.Q8_0: ft.MOSTLY_Q8_0,
        GGMLQuantizationType.Q4_K: ft.MOSTLY_Q4_K_M,
        GGMLQuantizationType.Q5_K: ft.MOSTLY_Q5_K_M,
        GGMLQuantizationType.Q6_K: ft.MOSTLY_Q6_K,
        GGMLQuantizationType.IQ4_NL: ft.MOSTLY_IQ4_NL,
        GGMLQuantizationType.IQ4_XS: ft.MOSTLY_IQ4_XS,
    }[t])


def _add_kv(w: gguf.GGUFWriter, key: str, value) -> None:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], gguf.GGUFValueType):
        w.add_key_value(key, value[0], value[1])
        return
    if isinstance(value, bool):
        w.add_bool(key, value)
    elif isinstance(value, int):
        w.add_uint32(key, value)
    elif isinstance(value, float):
        w.add_float32(key, value)
    elif isinstance(value, str):
        w.add_string(key, value)
    elif isinstance(value, (list, tuple)):
        w.add_array(key, list(value))
    else:
        raise TypeError(f"cannot write metadata {key}={value!r}")
