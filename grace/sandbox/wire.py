"""The wire format between the host and a sandbox worker, used by both sides.

Requests and replies are length-prefixed pickles (stdlib `multiprocessing.connection`). A call
reply is `b"P" + pickle` or, when it carries large buffers (numpy arrays), `b"B"` + a spans
header + the in-band pickle stream, the buffers themselves lying in the worker's shared-memory
block. The host decodes replies with an allow-listing unpickler (numpy arrays, plain data and
public classes of grace modules only): a worker compromised below the restricted-compile layer
still cannot run code in the host through pickle. Spans are bounds-checked and copied out of
the shared block before unpickling.
"""

from __future__ import annotations

import io
import mmap
import pickle
import struct
from typing import Any

EXIT_MEMORY = 86
"""Exit code of a worker that stopped itself for exceeding its resident-memory cap."""

_SAFE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"), ("builtins", "complex"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "range"),
    ("copyreg", "_reconstructor"), ("builtins", "object"), ("collections", "OrderedDict"),
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickles worker replies: numpy arrays, plain data, and classes of grace modules."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS or module.startswith("numpy.dtypes") or (
                module.startswith("grace.") and not name.startswith("_")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"worker reply refers to {module}.{name}, which is not allowed")


def safe_loads(data: bytes | memoryview, buffers: list[bytearray] | None = None) -> Any:
    """Unpickle a message from a worker with the allow-list."""
    return SafeUnpickler(io.BytesIO(data), buffers=buffers).load()


def encode_reply(obj: Any, shm: mmap.mmap | None) -> bytes:
    """Worker side: pickle a reply. Large contiguous buffers go out of band into the shared
    memory block when they fit; the reply is then b"B" + spans header + the pickle stream."""
    if shm is None:
        return b"P" + pickle.dumps(obj, protocol=5)
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    if sum(v.nbytes for v in views) > len(shm):
        return b"P" + pickle.dumps(obj, protocol=5)
    spans, offset = [], 0
    for v in views:
        shm[offset:offset + v.nbytes] = v
        spans += [offset, v.nbytes]
        offset += v.nbytes
    return b"B" + struct.pack(f"<I{len(spans)}Q", len(views), *spans) + stream


def decode_reply(data: bytes, shm: mmap.mmap | None) -> Any:
    """Host side: decode a call reply; spans bounds-checked, buffers copied before unpickling."""
    if data[:1] == b"P":
        return safe_loads(memoryview(data)[1:])
    if data[:1] != b"B" or shm is None:
        raise ValueError("unknown reply format")
    (n,) = struct.unpack_from("<I", data, 1)
    spans = struct.unpack_from(f"<{2 * n}Q", data, 5)
    buffers = []
    with memoryview(shm) as block:
        for off, length in zip(spans[::2], spans[1::2], strict=True):
            if off + length > len(shm):
                raise ValueError("reply buffer out of bounds")
            buffers.append(bytearray(block[off:off + length]))  # one copy (slicing shm is two)
    return safe_loads(memoryview(data)[5 + 16 * n:], buffers)
