"""Bounded, eager reading of untrusted array files: .npz (zip), HDF5, and the size of a folder.

Every array is read here, inside the error handling, and nothing is inflated before its declared
size is known: a zip member's declared size and its .npy header must agree, the total must stay
under a cap (`load_demos(..., max_mb=)`, default 1024 MiB; `grace demos show --max-mb`,
`--set data.max_demo_mb=` for a run), and only plain numeric / bool / string
dtypes are accepted (never pickles). Any failure is a `DemoError` with one line.
"""

from __future__ import annotations

import zipfile
import zlib
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MAX_MB = 1024.0
MAX_MB: ContextVar[float] = ContextVar("grace_demo_max_mb", default=DEFAULT_MAX_MB)
"""The cap of the read in progress (set by `grace.data.trajectories.load_demos`)."""
_KINDS = "biuf"  # numeric and bool arrays; "U"/"S" only for 0-d strings (meta_json)
_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_CHUNK = 16 * 2**20


class DemoError(ValueError):
    """A dataset is missing, unreadable, or does not match the task. One-line message."""


def max_bytes() -> int:
    """The cap on a demo file's uncompressed arrays, in bytes."""
    mb = MAX_MB.get()
    if not mb > 0:
        raise DemoError(f"the demo size cap must be a positive number of MiB, not {mb!r}")
    return int(mb * 2**20)


def _too_big(path: Path | str, n: int, cap: int) -> DemoError:
    return DemoError(
        f"{path}: its arrays would take {n / 2**20:.0f} MiB in memory, over the "
        f"{cap / 2**20:.0f} MiB limit (raise it with --max-mb, or --set data.max_demo_mb=...)"
    )


def sniff(path: Path) -> str:
    """"npz", "hdf5" or "" from a file's first bytes; raises on an empty or unreadable file."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise DemoError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise DemoError(f"{path} is empty (0 bytes)")
    if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        return "npz"
    if head == HDF5_MAGIC:
        return "hdf5"
    return ""


def read_npz(path: Path, needed: frozenset[str], cap: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of an .npz file, read eagerly and bounded by `cap` bytes. Object (pickled)
    members are never read: refused when their name is in `needed`, skipped otherwise (e.g.
    imitation's `infos`)."""
    cap = max_bytes() if cap is None else cap
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            total = sum(i.file_size for i in infos)
            if total > cap:
                raise _too_big(path, total, cap)
            out = {}
            for info in infos:
                arr = _read_member(zf, info, path, _key(info.filename) in needed)
                if arr is not None:
                    out[_key(info.filename)] = arr
            return out
    except DemoError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
        raise DemoError(f"{path} is not a readable .npz dataset ({_one_line(exc)})") from None


def _key(name: str) -> str:
    return name[:-4] if name.endswith(".npy") else name


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, needed: bool) -> np.ndarray | None:
    name = _key(info.filename)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise DemoError(f"{path}: array {name!r} uses an unsupported zip compression")
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise DemoError(f"{path}: array {name!r} has an unknown .npy version {version}")
        if dtype.hasobject and not needed:
            return None
        check_dtype(dtype, shape, f"{path}: array {name!r}")
        want = int(np.prod(shape, dtype=object)) * dtype.itemsize
        have = info.file_size - fh.tell()
        if want != have:
            raise DemoError(
                f"{path}: array {name!r} has a malformed header (shape {shape} needs {want} "
                f"bytes, the file holds {have})"
            )
        flat = np.empty(int(np.prod(shape, dtype=object)), dtype=dtype)
        buf = flat.view(np.uint8).reshape(-1) if want else np.empty(0, np.uint8)
        got = 0
        while got < want:  # in chunks, into the array itself: peak memory is the array
            chunk = fh.read(min(_CHUNK, want - got))
            if not chunk:
                raise DemoError(f"{path}: array {name!r} is truncated")
            buf[got : got + len(chunk)] = np.frombuffer(chunk, np.uint8)
            got += len(chunk)
    return flat.reshape(shape, order="F" if fortran else "C")


def check_dtype(dtype: np.dtype, shape: tuple[int, ...], what: str) -> None:
    if dtype.hasobject:
        raise DemoError(f"{what} holds Python objects (dtype object); grace never unpickles data")
    if dtype.kind in "US" and shape == ():
        return
    if dtype.kind not in _KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise DemoError(f"{what} has dtype {dtype}; expected numbers or booleans")


def read_hdf5(path: Path, keys: tuple[str, ...], cap: int | None = None) -> dict[str, np.ndarray]:
    """The root datasets `keys` (those present) of an HDF5 file, bounded by `cap` bytes."""
    cap = max_bytes() if cap is None else cap
    try:
        import h5py
    except ImportError:
        raise DemoError(
            f"{path} is an HDF5 file; reading it needs h5py: pip install 'grace[minari]'"
        ) from None
    try:
        with h5py.File(path, "r") as f:
            present = [k for k in keys if k in f and isinstance(f[k], h5py.Dataset)]
            total = 0
            for k in present:
                ds = f[k]
                check_dtype(ds.dtype, ds.shape, f"{path}: dataset {k!r}")
                total += int(np.prod(ds.shape, dtype=object)) * ds.dtype.itemsize
            if total > cap:
                raise _too_big(path, total, cap)
            return {k: np.asarray(f[k][()]) for k in present}
    except DemoError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, ValueError, RuntimeError, ...
        raise DemoError(f"{path} is not a readable HDF5 dataset ({_one_line(exc)})") from None


def folder_bytes(path: Path, cap: int | None = None) -> int:
    """Total size of the files under `path`; raises once it passes `cap`."""
    cap = max_bytes() if cap is None else cap
    total = 0
    for p in path.rglob("*"):
        if p.is_file():
            total += p.stat().st_size
            if total > cap:
                raise _too_big(path, total, cap)
    return total


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def as_str(value: Any) -> str:
    """A 0-d string array (or bytes) as str."""
    v = value.item() if isinstance(value, np.ndarray) else value
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
