"""Convert a GGUF model file into an lmdesk model folder.

A model folder holds ``model.onnx`` (see :mod:`onnx_decoder`) and
``inspect.onnx`` (the inspection graph; both share ``model.onnx.data``),
``tokenizer.json`` (built from the GGUF metadata with the ``tokenizers``
library), ``chat_template.jinja`` and ``manifest.json`` describing the rest.
It is written into a hidden staging folder beside its destination
(``.NAME.importing-HOST-PID-XXXXXXXX``) and renamed into place only when
complete, so a failure or a stop never leaves half a model behind; the staging
folder of an import that was killed outright is removed by the next import
into the same folder (see :func:`remove_stale_imports`).

Architectures are described in :mod:`lmdesk.convert.architectures`, one
module per family. The file is read by :mod:`lmdesk.convert.gguf_file`
(a fraction of a second, where gguf's own reader takes 15 s on a large
vocabulary), and its architecture checked before any slow work.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from gguf import GGMLQuantizationType as QType

from .. import __version__
from ..engine.errors import Cancelled, ModelImportError
from ..engine.model_format import (
    ATTENTION_MASK, CHAT_TEMPLATE_FILE, CONVERTER_REVISION, INPUT_IDS, INSPECT_FILE, KNOWN_END_OF_TURN, LOGITS,
    MANIFEST,
    MANIFEST_FORMAT, MANIFEST_VERSION, MODEL_FILE, PAST_KEY, PAST_VALUE, PRESENT_KEY, PRESENT_VALUE,
    TOKENIZER_FILE, WEIGHTS_FILE,
)
from .architectures import ARCHITECTURES, ArchSpec
from .gguf_file import GGUFFile
from .gguf_tokenizer import TokenizerImportError, tokenizer_from_gguf
from .onnx_decoder import DecoderConfig, DecoderWeights, LayerWeights, build_graphs
from .quant_repack import (
    BlockEmbedding, Int4Weight, LinearWeight, dequantize, repack_embedding, repack_linear, shares_nibbles,
)

# A tied output product from an 8-bit embedding table is one float32 matrix
# (the fastest exact product here) up to this size, and 4-bit pieces beyond it:
# SmolLM2's 113 MB table stays float, Gemma 3's 671 MB one does not.
TIED_FLOAT_BYTES = 256 << 20

# The number type of an imported model's KV cache ("float32" or "float16",
# see onnx_decoder): float16 halves the cache (SmolLM2 at 8,192 positions:
# 377 -> 189 MB) and rounds the attention's q, k, v and output to float16.
KV_CACHE_TYPES = ("float32", "float16")
KV_CACHE_DEFAULT = "float32"  # (lmdesk import-gguf --help names it too)

# The rotary cache holds one row per position; beyond this many positions it
# would cost more memory than a classroom document will ever need.
MAX_POSITIONS_CAP = 32768

Progress = Callable[[float, str], None]
ShouldCancel = Callable[[], bool]


@dataclass
class ImportResult:
    folder: Path
    seconds: float
    manifest: dict
    # one sentence each, for the person who imported: the model works, but not all of it (its chat template)
    warnings: tuple[str, ...] = ()


STOPPED = "The model import was stopped; nothing was written."


def sha256_file(path: Path, chunk: int = 1 << 22, should_cancel: ShouldCancel | None = None) -> str:
    """The sha256 of the file ``path``; :class:`Cancelled` as soon as
    ``should_cancel()`` says so (it is asked every 4 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            if should_cancel is not None and should_cancel():
                raise Cancelled(STOPPED)
            digest.update(block)
    return digest.hexdigest()


# -- reading ----------------------------------------------------------------

def _field(reader: GGUFFile, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    value = f.contents()
    return value


def _require(reader: GGUFFile, key: str, path: Path):
    value = _field(reader, key)
    if value is None:
        raise ModelImportError(f"{path.name} lacks the metadata entry '{key}' that a model needs.")
    return value


_PART_NAME = re.compile(r"\.part\d+$", re.IGNORECASE)  # model.gguf.part00: a chunk of a file cut in pieces


def check_gguf_file(path: Path) -> tuple[ArchSpec, GGUFFile]:
    """The architecture and contents of the GGUF file ``path``, checked before
    any slow work: a part of a split download, a foreign or damaged file or an
    architecture lmdesk cannot import is one sentence (:class:`ModelImportError`)."""
    path = Path(path)
    if not path.is_file():
        raise ModelImportError(f"There is no file at {path}.")
    if _PART_NAME.search(path.name):
        raise ModelImportError(
            f"{path.name} is one part of a model split into several files; join the parts into one "
            "GGUF file first (in the order of their numbers), then import that file."
        )
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise ModelImportError(f"{path.name} is not a GGUF model file (it does not start with the GGUF signature).")
    try:
        reader = GGUFFile(path)
    except (OSError, ValueError) as exc:
        raise ModelImportError(f"{path.name} is damaged or incomplete and cannot be read as a GGUF file ({exc}).") from exc
    count = _field(reader, "split.count", 1)
    if isinstance(count, int) and count > 1:
        raise ModelImportError(
            f"{path.name} is one of {count} files of a split model; join them into one file first "
            "(llama.cpp's gguf-split --merge does), then import that file."
        )
    name = _field(reader, "general.architecture")
    if name is None:
        raise ModelImportError(f"{path.name} does not say which model architecture it holds.")
    spec = ARCHITECTURES.get(str(name))
    if spec is None:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ModelImportError(
            f"{path.name} holds a '{name}' model; lmdesk can import these architectures: {known}."
        )
    return spec, reader


def _config(reader: GGUFFile, spec: ArchSpec, path: Path, tensors: dict, accuracy_level: int,
            kv_cache: str = KV_CACHE_DEFAULT) -> DecoderConfig:
    a = spec.name
    n_layer = int(_require(reader, f"{a}.block_count", path))
    d_model = int(_require(reader, f"{a}.embedding_length", path))
    n_head = int(_require(reader, f"{a}.attention.head_count", path))
    n_head_kv = int(_field(reader, f"{a}.attention.head_count_kv", n_head))
    head_dim = int(_field(reader, f"{a}.attention.key_length", d_model // n_head))
    d_ff = int(_require(reader, f"{a}.feed_forward_length", path))
    ctx = int(_field(reader, f"{a}.context_length", 2048))
    eps = float(_field(reader, f"{a}.attention.layer_norm_rms_epsilon", 1e-5))
    base = float(_field(reader, f"{a}.rope.freq_base", 10000.0))
    rope_dim = int(_field(reader, f"{a}.rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise ModelImportError(f"{path.name} rotates only part of each attention head, which lmdesk cannot import yet.")
    if head_dim % 16:  # what onnxruntime's GroupQueryAttention accepts
        raise ModelImportError(
            f"{path.name} has attention heads of {head_dim} numbers; lmdesk needs a multiple of 16."
        )
    if n_head % n_head_kv:
        raise ModelImportError(f"{path.name} has {n_head} attention heads for {n_head_kv} key/value heads, which do not divide.")
    embd = tensors.get("token_embd.weight")
    if embd is None:
        raise ModelImportError(f"{path.name} has no token embedding tensor (token_embd.weight).")
    vocab = int(embd.shape[1])

    inv_freq = base ** (-np.arange(0, rope_dim, 2, dtype=np.float64) / rope_dim)
    scaling = _field(reader, f"{a}.rope.scaling.type")
    if scaling == "linear":
        inv_freq = inv_freq / float(_field(reader, f"{a}.rope.scaling.factor", 1.0))
    elif scaling not in (None, "none"):
        raise ModelImportError(f"{path.name} uses '{scaling}' rotary scaling, which lmdesk cannot import yet.")
    freqs = tensors.get("rope_freqs.weight")
    mscale = 1.0
    if freqs is None and "rope_factors_short.weight" in tensors:
        # Phi-3 long-context: the short divisors within the original context (see architectures.phi)
        freqs = tensors["rope_factors_short.weight"]
        original = _field(reader, f"{a}.rope.scaling.original_context_length")
        if original:
            ctx = min(ctx, int(original))
        mscale = float(_field(reader, f"{a}.rope.scaling.attn_factor", 1.0) or 1.0)
    if freqs is not None:  # llama 3.1+ per-frequency factors (and Phi-3's), as llama.cpp divides by them
        inv_freq = inv_freq / dequantize(freqs.data, freqs.tensor_type, (rope_dim // 2,)).astype(np.float64)

    extras = {}
    if spec.configure is not None:
        extras = spec.configure(lambda key, default=None: _field(reader, f"{a}.{key}", default),
                                n_layer, d_model, n_head, head_dim)
    return DecoderConfig(
        n_layer=n_layer, d_model=d_model, n_head=n_head, n_head_kv=n_head_kv, head_dim=head_dim,
        d_ff=d_ff, vocab_size=vocab, max_positions=min(ctx, MAX_POSITIONS_CAP), rms_eps=eps,
        inv_freq=inv_freq, rope_interleaved=spec.rope_interleaved, accuracy_level=accuracy_level,
        rope_mscale=mscale, kv_dtype=kv_cache, **extras,
    )


def _weights(tensors: dict, cfg: DecoderConfig, spec: ArchSpec, path: Path, tick: Callable[[str], None],
             check: Callable[[], None] = lambda: None) -> DecoderWeights:
    """The repacked weights; ``check()`` is called before each tensor (it
    raises :class:`Cancelled` when the import is to stop)."""

    def get(name: str):
        check()
        t = tensors.get(name)
        if t is None:
            raise ModelImportError(f"{path.name} is missing the tensor '{name}'.")
        return t

    def vector(name: str, size: int) -> np.ndarray:
        t = get(name)
        v = dequantize(t.data, t.tensor_type, (size,))
        _check_finite(v, name, path)
        return v

    def linear(name: str, out_f: int, in_f: int, rows: tuple[int, int] | None = None) -> LinearWeight:
        """The matrix ``name`` (``out_f`` x ``in_f``), or the output rows ``rows``
        of a fused one (``out_f`` is then the fused matrix's height)."""
        t = get(name)
        if tuple(int(x) for x in t.shape) != (in_f, out_f):
            raise ModelImportError(
                f"{path.name}: tensor '{name}' has shape {list(t.shape)}, expected {[in_f, out_f]}."
            )
        data = t.data.reshape(out_f, -1)
        if rows is not None:
            data, out_f = data[rows[0] : rows[1]], rows[1] - rows[0]
        w = repack_linear(data, t.tensor_type, (out_f, in_f), eight_bit=cfg.accuracy_level == 4)
        _check_finite(w.scales if isinstance(w, Int4Weight) else w.matrix, name, path)
        if isinstance(w, Int4Weight) and w.correction is not None:
            _check_finite(w.correction, name, path)
        return w

    d, hd = cfg.d_model, cfg.head_dim

    def qkv_bias(block: str) -> np.ndarray | None:
        names = [f"{block}.attn_{x}.bias" for x in "qkv"]
        present = [n in tensors for n in names]
        if not any(present):
            return None
        if not all(present):
            raise ModelImportError(f"{path.name} has biases for only some of q, k and v in {block}.")
        sizes = (cfg.n_head * hd, cfg.n_head_kv * hd, cfg.n_head_kv * hd)
        return np.concatenate([vector(n, size) for n, size in zip(names, sizes)])

    embd = get("token_embd.weight")
    embed = repack_embedding(embd.data, embd.tensor_type, (cfg.vocab_size, d))
    for values in ([embed.scales, embed.offset] if isinstance(embed, BlockEmbedding) else [embed]):
        if values is not None:
            _check_finite(values, "token_embd.weight", path)
    nq, nkv = cfg.n_head * hd, cfg.n_head_kv * hd

    def qkv(b: str) -> dict:
        if not spec.fused_qkv:
            return {"q": linear(f"{b}.attn_q.weight", nq, d), "k": linear(f"{b}.attn_k.weight", nkv, d),
                    "v": linear(f"{b}.attn_v.weight", nkv, d)}
        fused, height = f"{b}.attn_qkv.weight", nq + 2 * nkv
        return {"q": linear(fused, height, d, (0, nq)), "k": linear(fused, height, d, (nq, nq + nkv)),
                "v": linear(fused, height, d, (nq + nkv, height))}

    def gate_up(b: str) -> dict:
        if not spec.fused_gate_up:
            return {"gate": linear(f"{b}.ffn_gate.weight", cfg.d_ff, d), "up": linear(f"{b}.ffn_up.weight", cfg.d_ff, d)}
        fused, f = f"{b}.ffn_up.weight", cfg.d_ff
        return {"gate": linear(fused, 2 * f, d, (0, f)), "up": linear(fused, 2 * f, d, (f, 2 * f))}

    def layer(i: int) -> LayerWeights:
        tick(f"Converting layer {i + 1} of {cfg.n_layer}")
        b = f"blk.{i}"
        return LayerWeights(
            attn_norm=vector(f"{b}.attn_norm.weight", d),
            qkv_bias=qkv_bias(b),
            **qkv(b),
            o=linear(f"{b}.attn_output.weight", d, cfg.n_head * hd),
            ffn_norm=vector(f"{b}.ffn_norm.weight", d),
            **gate_up(b),
            down=linear(f"{b}.ffn_down.weight", d, cfg.d_ff),
            q_norm=vector(f"{b}.attn_q_norm.weight", hd) if spec.qk_norm else None,
            k_norm=vector(f"{b}.attn_k_norm.weight", hd) if spec.qk_norm else None,
            post_attn_norm=vector(f"{b}.post_attention_norm.weight", d) if spec.post_norms else None,
            post_ffn_norm=vector(f"{b}.post_ffw_norm.weight", d) if spec.post_norms else None,
        )

    layers = (layer(i) for i in range(cfg.n_layer))  # repacked as the graph builder reaches each
    shared = False
    if "output.weight" in tensors:
        output: LinearWeight | None = linear("output.weight", cfg.vocab_size, d)
    elif isinstance(embed, BlockEmbedding) and embed.bits == 4:
        # tied to a 4-bit table (Q4_0, Q4_1, Q4_K): the product keeps its 4 bits
        # (MatMulNBits), and the lookup reads the product's bytes: stored once
        output = linear("token_embd.weight", cfg.vocab_size, d)
        if isinstance(output, Int4Weight) and shares_nibbles(embed, output):
            embed.data, shared = output.packed, True
    else:
        output = None  # tied: the graph multiplies by the embedding table itself (see onnx_decoder)
    # with int8 activations (--fast), a tied 8-bit table is the 8-bit product's own weight
    eight = output is None and isinstance(embed, BlockEmbedding) and embed.bits == 8 and cfg.accuracy_level == 4
    # a large tied 8-bit table: the product in 4-bit pieces made from it, not a float copy (TIED_FLOAT_BYTES)
    pieces = (output is None and not eight and isinstance(embed, BlockEmbedding)
              and 4 * cfg.vocab_size * d > TIED_FLOAT_BYTES)
    return DecoderWeights(embed=embed, layers=layers, out_norm=vector("output_norm.weight", d), output=output,
                          tied_pieces=pieces, embed_in_output=shared, tied_eight=eight)


def _check_finite(values: np.ndarray, name: str, path: Path) -> None:
    if not np.isfinite(values).all():
        raise ModelImportError(f"{path.name} is damaged: tensor '{name}' holds invalid numbers (NaN or infinity).")


def _stop_ids(tok_info, vocab_tokens: list[str], special: set[int]) -> list[int]:
    stops = {tok_info.eos_id} if tok_info.eos_id is not None else set()
    for i in special:
        if vocab_tokens[i] in KNOWN_END_OF_TURN:
            stops.add(i)
    return sorted(stops)


# -- writing ----------------------------------------------------------------

# Bytes per weight that a matrix of each GGUF type takes in model.onnx.data, at
# most (see quant_repack and onnx_decoder.init_compact; a Q4_0 matrix stacked
# with a Q4_1 one, which no known file has, takes a float32 correction more).
# Measured: SmolLM2's folder is 99.3 MB for an estimate of 110.5 MB (the
# estimate before these counts asked 234.6 MB), Gemma 3 270M's 312.5 MB for
# 349.8 MB (661.9 MB); every tiny test model's weights are 0.50 to 1.00 of
# their estimate.
_INT4_TYPES = (QType.Q4_0, QType.Q4_1, QType.Q4_K)
_PIECE_TYPES = (QType.Q5_0, QType.Q5_1, QType.Q8_0, QType.Q5_K, QType.Q6_K, QType.IQ4_NL, QType.IQ4_XS)
_MATRIX_BYTES = {
    QType.Q4_0: (16 + 2) / 32,  # 4-bit weights and the float16 scale of each block of 32
    QType.Q4_1: (16 + 2 + 4) / 32,  # ... and the block's minimum (float16, or a float32 correction)
    QType.Q4_K: (16 + 4 + 4) / 32,  # ... with a float32 scale and correction per run of 32
    **{t: 1 + 16 / 32 for t in _PIECE_TYPES},  # two 4-bit pieces, two scales and a correction of two terms
    QType.Q6_K: 1 + 16 / 16,  # ... per block of 16
    QType.F16: 2, QType.BF16: 2,  # kept in 16 bits
}
# embedding tables kept in blocks (quant_repack.BlockEmbedding): a byte a weight, or 4 bits
_EMBED8_TYPES = (QType.Q8_0, QType.Q5_0, QType.Q6_K, QType.IQ4_NL, QType.IQ4_XS, QType.Q5_1, QType.Q5_K)
_BLOCK_OF = {QType.Q6_K: 16}
# model.onnx (the nodes and small constants) and manifest.json: measured 313 kB
# and 2 kB for SmolLM2's 30 layers, 187 kB and 91 kB for Gemma 3's 18;
# inspect.onnx beside them (the same nodes and the inspection's): 459 kB for SmolLM2
_GRAPH_BYTES, _GRAPH_BYTES_PER_LAYER = 2 << 20, 32 << 10


def _estimate_bytes(reader: GGUFFile, cfg: DecoderConfig, extra_files: int = 0) -> int:
    """What the model folder will take, at most: each tensor as the converter
    stores it (:data:`_MATRIX_BYTES`; 4 bytes a number for what is kept as
    float32), the embedding table once or twice as the output product needs
    it, and ``extra_files`` (the tokenizer and the chat template). The import
    writes each weight once, straight into the folder, so this is also the
    most disk space it uses at any moment."""
    total = 0
    tensors = {t.name: t for t in reader.tensors}
    for t in reader.tensors:
        elements = int(np.prod([int(x) for x in t.shape]))
        kind = t.tensor_type
        if t.name == "token_embd.weight":
            block = _BLOCK_OF.get(kind, 32)
            tied = "output.weight" not in tensors
            if kind in _EMBED8_TYPES:  # bytes, scales and offsets; a tied product adds at most a zero point a block
                total += int(elements * (1 + 8 / block + (1 / block if tied else 0)))
            elif kind in _INT4_TYPES:  # 4 bits, scales and offsets, and the 4-bit product when it is tied
                total += int(elements * (0.5 + 8 / block + (_MATRIX_BYTES[kind] if tied else 0)))
            else:  # a float table, in 16 bits when it is F16 or BF16
                total += int(elements * _MATRIX_BYTES.get(kind, 4))
        elif len(t.shape) >= 2 and kind in _MATRIX_BYTES:
            total += int(elements * _MATRIX_BYTES[kind])
        else:
            total += 4 * elements
    return total + extra_files + _GRAPH_BYTES + _GRAPH_BYTES_PER_LAYER * cfg.n_layer


# -- staging folders --------------------------------------------------------

# .NAME.importing-HOST-PID-XXXXXXXX, and the .NAME.importing-XXXXXXXX of lmdesk before it named its process
_STAGING = re.compile(r"^\..+\.importing-(?P<host>[A-Za-z0-9]*)-(?P<pid>[0-9]+)-[a-z0-9_]{8}$")
_OLD_STAGING = re.compile(r"^\..+\.importing-[a-z0-9_]{8}$")
# a staging folder whose process cannot be asked (another computer's, or unnamed)
# is left alone until nothing in it has changed for this long: an import writes all the time
STALE_AFTER_SECONDS = 3600


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:40]


def staging_prefix(name: str) -> str:
    """The start of the name of a hidden folder that work on ``name`` fills
    before it is renamed into place (mkdtemp adds 8 characters): what
    :func:`remove_stale_imports` recognises."""
    return f".{name}.importing-{_host()}-{os.getpid()}-"


def _pid_running(pid: int) -> bool:
    """Whether a process ``pid`` runs on this computer (True when unsure)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    if sys.platform.startswith("win"):  # os.kill(pid, 0) would end the process there
        import ctypes

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() != 87  # ERROR_INVALID_PARAMETER: there is no such process
        try:
            code = ctypes.c_ulong()
            return not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)) or code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's process, alive
        return True
    return True


def _idle_for(folder: Path, seconds: float) -> bool:
    """Whether nothing in ``folder`` (a staging folder: files only) changed for ``seconds``."""
    try:
        newest = max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.iterdir())])
    except OSError:
        return False
    return time.time() - newest > seconds


def remove_stale_imports(parent: Path | str) -> list[Path]:
    """Remove the staging folders in ``parent`` that imports killed outright
    (SIGKILL, a power cut) left behind, and return them. Only folders named as
    lmdesk names them are touched, and only once their import has certainly
    ended: its process (named in the folder) no longer runs on this computer,
    or, for a folder of another computer or of an older lmdesk, nothing in it
    changed for :data:`STALE_AFTER_SECONDS`."""
    parent = Path(parent)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    host = _host()
    for entry in entries:
        if not entry.name.startswith(".") or ".importing-" not in entry.name:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
        except OSError:
            continue
        folder = Path(entry.path)
        named = _STAGING.match(entry.name)
        if named is not None and named["host"] == host:
            stale = not _pid_running(int(named["pid"]))
        elif named is not None or _OLD_STAGING.match(entry.name):
            stale = _idle_for(folder, STALE_AFTER_SECONDS)
        else:
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                removed.append(folder)
    return removed


# -- the chat template ----------------------------------------------------------

def _template_warning(source: str, bos_token: str | None, eos_token: str | None) -> str | None:
    """One sentence if the chat template ``source`` cannot write a short
    conversation (it does not compile, or fails on it), else None."""
    try:
        from ..engine.chat_template import check_template  # bounded in time and size
    except ImportError:  # an lmdesk whose templates render unbounded
        check_template = None
    from ..engine.chat_template import ChatTemplate, ChatTemplateError, Message

    if check_template is not None:
        problem = check_template(source, bos_token, eos_token)
    else:
        probe = [Message("user", "Hello!"), Message("assistant", "Hello! How can I help?"),
                 Message("user", "What is the capital of France?")]
        try:
            ChatTemplate(source, bos_token=bos_token, eos_token=eos_token).render(probe, add_generation_prompt=True)
            problem = None
        except ChatTemplateError as exc:
            problem = str(exc)
    if problem is None:
        return None
    return (" ".join(problem.split()).rstrip(".") + "; the model was imported all the same, and for conversations "
            "needs its family's chat format or a chat template file of your own.")


def import_gguf(
    src: Path | str,
    out_dir: Path | str,
    *,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
    accuracy_level: int = 0,
    kv_cache: str = KV_CACHE_DEFAULT,
    overwrite: bool = False,
    source_sha256: str | None = None,
    name: str | None = None,
    chat_template: str | None = None,
) -> ImportResult:
    """Convert ``src`` (a GGUF file) into the model folder ``out_dir``.

    ``progress(fraction, message)`` is called as work advances;
    ``should_cancel()`` returning True stops the import with :class:`Cancelled`.
    Raises :class:`ModelImportError` with a one-sentence reason on bad input.
    ``source_sha256`` spares hashing the file again when the caller already did;
    ``name`` replaces the name the file gives itself (``general.name``);
    ``chat_template`` (jinja2 source) replaces the file's chat template, or
    gives one to a file without. ``kv_cache``: the number type of the KV
    cache, one of :data:`KV_CACHE_TYPES`.
    """
    started = time.perf_counter()
    src, out_dir = Path(src), Path(out_dir)
    report = progress or (lambda fraction, message: None)

    def check() -> None:
        if should_cancel is not None and should_cancel():
            raise Cancelled(STOPPED)

    def step(fraction: float, message: str) -> None:
        check()
        report(fraction, message)

    if kv_cache not in KV_CACHE_TYPES:
        raise ModelImportError(f"The KV cache can be kept in {' or '.join(KV_CACHE_TYPES)}, not in {kv_cache!r}.")
    if out_dir.exists() and not overwrite:
        raise ModelImportError(f"{out_dir} already exists; choose another folder or remove it first.")

    step(0.0, f"Reading {src.name}")
    spec, reader = check_gguf_file(src)
    tensors = {t.name: t for t in reader.tensors}
    cfg = _config(reader, spec, src, tensors, accuracy_level, kv_cache)
    try:
        tok = tokenizer_from_gguf(reader)
    except TokenizerImportError as exc:
        raise ModelImportError(str(exc)) from exc
    template = chat_template if chat_template is not None else tok.chat_template
    template_origin = ("given at import" if chat_template is not None
                       else "the GGUF file" if tok.chat_template else None)

    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelImportError(f"Cannot create the folder {parent}: {exc.strerror or exc}.") from exc
    remove_stale_imports(parent)  # before counting the free space: they hold some of it
    files = len(tok.tokenizer_json.encode("utf-8")) + len((template or "").encode("utf-8"))
    need = _estimate_bytes(reader, cfg, files)
    free = shutil.disk_usage(parent).free
    if free < need:
        raise ModelImportError(
            f"Not enough disk space in {parent}: the model needs about {need / 1e6:.0f} MB "
            f"and only {free / 1e6:.0f} MB are free."
        )

    step(0.02, "Computing the file's checksum")
    digest = source_sha256 or sha256_file(src, should_cancel=should_cancel)

    n_steps = cfg.n_layer + 4
    done = [0]

    def tick(message: str) -> None:
        done[0] += 1
        step(0.05 + 0.6 * done[0] / n_steps, message)

    vocab_tokens = list(_require(reader, "tokenizer.ggml.tokens", src))
    special = set(tok.special_ids)
    kinds = Counter(t.tensor_type.name for t in reader.tensors)
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "name": name or str(_field(reader, "general.name", src.stem)),
        "architecture": spec.name,
        "dimensions": {
            "n_layer": cfg.n_layer, "d_model": cfg.d_model, "n_head": cfg.n_head, "n_head_kv": cfg.n_head_kv,
            "head_dim": cfg.head_dim, "d_ff": cfg.d_ff, "vocab_size": cfg.vocab_size,
        },
        "context_length": cfg.max_positions,
        "trained_context_length": int(_field(reader, f"{spec.name}.context_length", cfg.max_positions)),
        "rms_eps": cfg.rms_eps,
        "tokens": {
            "bos_id": tok.bos_id, "eos_id": tok.eos_id, "pad_id": tok.pad_id, "unk_id": tok.unk_id,
            "add_bos": tok.add_bos, "add_eos": tok.add_eos, "bos_token": tok.bos_token, "eos_token": tok.eos_token,
            "stop_ids": _stop_ids(tok, vocab_tokens, special), "special_ids": sorted(special),
        },
        "io": {
            "input_ids": INPUT_IDS, "attention_mask": ATTENTION_MASK, "logits": LOGITS,
            "past_key": PAST_KEY, "past_value": PAST_VALUE, "present_key": PRESENT_KEY, "present_value": PRESENT_VALUE,
            "kv_layout": "batch, kv_heads, sequence, head_dim", "kv_dtype": cfg.kv_dtype, "position_ids": False,
        },
        "weights": {
            "gguf_tensor_types": dict(sorted(kinds.items())),
            "matmul_accuracy_level": accuracy_level,
            "exact": accuracy_level == 0,
        },
        "source": {"file": src.name, "sha256": digest, "bytes": src.stat().st_size},
        "converter": {"name": "lmdesk import-gguf", "version": __version__, "revision": CONVERTER_REVISION,
                      "onnx": onnx.__version__},
        "files": {"model": MODEL_FILE, "inspect": INSPECT_FILE, "weights": WEIGHTS_FILE, "tokenizer": TOKENIZER_FILE,
                  "chat_template": CHAT_TEMPLATE_FILE if template else None},
        "chat_template_origin": template_origin,
    }

    try:
        tmp = Path(tempfile.mkdtemp(prefix=staging_prefix(out_dir.name), dir=parent))
    except OSError as exc:
        raise ModelImportError(f"Cannot write into the folder {parent} ({exc.strerror or exc}).") from exc
    try:
        # streaming: each weight goes to model.onnx.data as soon as it is repacked, and
        # the layers are repacked one at a time as the graph reaches them
        with open(tmp / WEIGHTS_FILE, "wb") as sink:
            model, inspector = build_graphs(cfg, _weights(tensors, cfg, spec, src, tick, check), sink=sink,
                                            location=WEIGHTS_FILE)
        step(0.75, "Writing the model folder")
        onnx.save_model(model, tmp / MODEL_FILE)
        onnx.save_model(inspector, tmp / INSPECT_FILE)
        del model, inspector
        manifest["files"]["weights_bytes"] = (tmp / WEIGHTS_FILE).stat().st_size  # to recognise a cut-off copy
        step(0.95, "Writing the tokenizer")
        (tmp / TOKENIZER_FILE).write_text(tok.tokenizer_json, encoding="utf-8")
        if template:
            (tmp / CHAT_TEMPLATE_FILE).write_text(template, encoding="utf-8")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        step(0.99, "Finishing")
        os.chmod(tmp, 0o755)  # mkdtemp made it private; a model folder is readable like any other
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        if out_dir.exists():  # overwrite: move the old folder aside only once the new one is whole
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=parent))
            os.replace(out_dir, old / "model")
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise ModelImportError(f"The disk holding {parent} became full while writing the model; nothing was kept.") from exc
        raise ModelImportError(f"Could not write the model folder {out_dir}: {exc.strerror or exc}.") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    warning = _template_warning(template, tok.bos_token, tok.eos_token) if template else None
    report(1.0, "Done")
    return ImportResult(out_dir, time.perf_counter() - started, manifest, (warning,) if warning else ())
