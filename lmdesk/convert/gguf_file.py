"""Read a GGUF file: its metadata as Python values, its tensors as views of
the memory-mapped file.

``gguf.GGUFReader`` builds a numpy array for every part of every metadata
entry: for Gemma 3's 262,144-token vocabulary that takes 15 s and 720 MB.
This reader walks the header once with :mod:`struct`, keeps the values as
plain Python objects and maps the tensor data without copying it (1.5 s and
under 100 MB on the same file). It offers what the converter and
:func:`lmdesk.convert.gguf_tokenizer.tokenizer_from_gguf` use: ``fields``
(key → a field whose ``contents()`` is the value) and ``tensors`` (name,
``tensor_type``, ``shape`` in GGUF order, ``n_bytes``, ``data_offset`` and
``data`` in the layout ``gguf.quants.dequantize`` takes).

Layout (GGUF version 2 and 3): the signature ``GGUF``, a version, the tensor
and entry counts; the entries (a key, a type, a value); the tensor infos (a
name, the dimensions, the type, an offset); the tensor data, aligned to
``general.alignment`` (32 bytes unless the file says otherwise).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_NUMPY = {0: np.uint8, 1: np.int8, 2: np.uint16, 3: np.int16, 4: np.uint32, 5: np.int32, 6: np.float32,
          7: np.bool_, 10: np.uint64, 11: np.int64, 12: np.float64}
_STRING, _ARRAY = 8, 9
_PLAIN = {GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16,
          GGMLQuantizationType.F64: np.float64, GGMLQuantizationType.I8: np.int8,
          GGMLQuantizationType.I16: np.int16, GGMLQuantizationType.I32: np.int32,
          GGMLQuantizationType.I64: np.int64}


class GGUFFormatError(ValueError):
    """The file is not GGUF, or its header is cut short or inconsistent."""


@dataclass(frozen=True)
class Field:
    value: Any

    def contents(self) -> Any:
        return self.value


@dataclass(frozen=True)
class Tensor:
    name: str
    tensor_type: GGMLQuantizationType
    shape: tuple[int, ...]  # GGUF order: ne0 (the row length) first
    n_bytes: int
    data_offset: int  # from the start of the file
    data: np.ndarray  # a view of the mapped file: plain types as themselves, block types as uint8 rows


class GGUFFile:
    """A GGUF file's metadata and tensors (see the module text)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            size = fh.seek(0, 2)
            if size < 24:
                raise GGUFFormatError("the file is too short for a GGUF header")
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        self._pos = 0
        if self._take(4) != b"GGUF":
            raise GGUFFormatError("no GGUF signature")
        self.version = self._scalar("<I")
        if self.version not in (2, 3):
            raise GGUFFormatError(f"GGUF version {self.version} is not one lmdesk reads (2 or 3)")
        n_tensors, n_fields = self._scalar("<Q"), self._scalar("<Q")
        if n_tensors > 1 << 20 or n_fields > 1 << 20:
            raise GGUFFormatError("implausible tensor or entry counts")
        self.fields: dict[str, Field] = {}
        for _ in range(n_fields):
            key = self._string()
            self.fields[key] = Field(self._value(self._scalar("<I")))
        infos = []
        for _ in range(n_tensors):
            name = self._string()
            dims = tuple(int(self._scalar("<Q")) for _ in range(self._scalar("<I")))
            try:
                kind = GGMLQuantizationType(self._scalar("<I"))
            except ValueError as exc:
                raise GGUFFormatError(f"tensor {name} has an unknown type") from exc
            infos.append((name, dims, kind, self._scalar("<Q")))
        alignment = int(self.fields.get("general.alignment", Field(32)).value or 32)
        start = -(-self._pos // alignment) * alignment
        data = np.frombuffer(self._map, dtype=np.uint8)
        self.tensors: list[Tensor] = []
        for name, dims, kind, offset in infos:
            block, nbytes = GGML_QUANT_SIZES[kind]
            count = int(np.prod(dims)) if dims else 1
            if dims and dims[0] % block:
                raise GGUFFormatError(f"tensor {name}'s rows do not fill whole blocks")
            n_bytes = count // block * nbytes
            begin = start + offset
            if begin + n_bytes > size:
                raise GGUFFormatError(f"tensor {name}'s data runs past the end of the file")
            raw = data[begin : begin + n_bytes]
            rows = tuple(reversed(dims))
            if kind in _PLAIN:
                view = raw.view(_PLAIN[kind]).reshape(rows)
            else:
                view = raw.reshape(*rows[:-1], rows[-1] // block * nbytes)
            self.tensors.append(Tensor(name, kind, dims, n_bytes, begin, view))

    # -- reading the header --------------------------------------------------
    def _take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._map):
            raise GGUFFormatError("the file ends inside its header")
        out = self._map[self._pos : end]
        self._pos = end
        return out

    def _scalar(self, fmt: str):
        size = struct.calcsize(fmt)
        if self._pos + size > len(self._map):
            raise GGUFFormatError("the file ends inside its header")
        (value,) = struct.unpack_from(fmt, self._map, self._pos)
        self._pos += size
        return value

    def _string(self) -> str:
        n = self._scalar("<Q")
        if n > len(self._map):
            raise GGUFFormatError("a text in the header is longer than the file")
        return self._take(n).decode("utf-8", errors="replace")

    def _value(self, kind: int) -> Any:
        if kind == _STRING:
            return self._string()
        if kind in _SCALARS:
            return self._scalar(_SCALARS[kind])
        if kind == _ARRAY:
            item, count = self._scalar("<I"), self._scalar("<Q")
            if count > len(self._map):
                raise GGUFFormatError("an array in the header is longer than the file")
            if item in _NUMPY:  # numbers: one read for the whole array
                width = np.dtype(_NUMPY[item]).itemsize
                values = np.frombuffer(self._take(width * count), dtype=_NUMPY[item])
                return values.tolist()
            if item == _STRING:
                return [self._string() for _ in range(count)]
            return [self._value(item) for _ in range(count)]
        raise GGUFFormatError(f"unknown metadata type {kind}")
