"""Snapshots, pickling and continuous operation (autosnapshot + journal).

Snapshot file format, version 1.0 (all integers little-endian)::

    offset  size  field
    0       8     magic            b"\\x89HCSNAP\\n"
    8       2     format major     u16; a reader refuses a newer major
    10      2     format minor     u16; newer minors only add optional sections
    12      2     L                u16, length of the library version string
    14      L     library version  ASCII, the heatcore version that wrote the file
    14+L    ...   sections         tag(4) major(u16) minor(u16) flags(u32) length(u64) payload
    end-4   4     CRC-32           IEEE (as zlib.crc32) of every byte before it

File sections: ``META`` (required, JSON: what the Python :class:`heatcore.Engine`
needs to rebuild itself) and ``CORE`` (required: the C++ engine's own sections,
``CONF GRID ENGN VENU BOOK`` plus one per learner; see cpp/heatcore/serialize.hpp
for their layout and compatibility rules). Unknown optional sections are
skipped; an unknown required one, a newer major version, a bad magic, a
truncated file or a checksum mismatch raise :class:`SnapshotError`.

Saving is atomic: the bytes go to a temporary file in the same directory, which
is flushed, fsync'ed and renamed over the target, and the directory is fsync'ed.
A crash at any point leaves either the previous snapshot or the new one.

Continuous operation: :meth:`heatcore.Engine.autosnapshot` writes a snapshot
every N events or S seconds and, between snapshots, appends every input to a
journal (``<path>.journal``) *before* applying it. :meth:`heatcore.Engine.resume`
loads the snapshot and replays the journal's records; a torn last record (a
crash in the middle of an append) is dropped, as that input was never applied.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, Union

import numpy as np

from . import _core
from .events import EVENT_DTYPE

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["FORMAT_VERSION", "MAGIC", "SnapshotError", "dumps", "loads", "read_header"]

PathLike = Union[str, "os.PathLike[str]"]

MAGIC = b"\x89HCSNAP\n"
#: (major, minor) of the snapshot files this version writes.
FORMAT_VERSION = (1, 0)
_SECTION = struct.Struct("<4sHHIQ")
_REQUIRED = 1
# Versions of the file-level sections this library reads and writes.
_META_VERSION = (1, 0)
_CORE_VERSION = (1, 0)

JOURNAL_MAGIC = b"\x89HCJRNL\n"
_JOURNAL_HEADER = struct.Struct("<8sHH16s")
_RECORD = struct.Struct("<III")  # kind, count, crc32 of the payload
_REC_EVENTS = 0
_REC_UNKNOWN_VENUE = 1


class SnapshotError(ValueError):
    """A snapshot that cannot be loaded: not a heatcore snapshot, truncated,
    corrupt (checksum mismatch), written by a newer format, or inconsistent."""


def _library_version() -> str:
    return str(getattr(sys.modules.get("heatcore"), "__version__", "unknown"))


def _section(tag: bytes, version: tuple[int, int], payload: bytes, required: bool = True) -> bytes:
    return _SECTION.pack(tag, version[0], version[1], _REQUIRED if required else 0, len(payload)) + payload


def dumps(eng: Engine) -> bytes:
    """The engine's snapshot as bytes (the caller holds the engine's lock)."""
    meta = json.dumps(eng._persist_meta(), sort_keys=True).encode()
    lib = _library_version().encode("ascii", "replace")
    body = bytearray(MAGIC)
    body += struct.pack("<HHH", FORMAT_VERSION[0], FORMAT_VERSION[1], len(lib)) + lib
    body += _section(b"META", _META_VERSION, meta)
    body += _section(b"CORE", _CORE_VERSION, eng._core.state_bytes())
    body += struct.pack("<I", _core.crc32(bytes(body)))
    return bytes(body)


def read_header(data: bytes) -> dict[str, Any]:
    """Format version and library version of a snapshot (checks magic only)."""
    if len(data) < 14 or data[:8] != MAGIC:
        raise SnapshotError("not a heatcore snapshot (bad magic)")
    major, minor, n = struct.unpack_from("<HHH", data, 8)
    if len(data) < 14 + n:
        raise SnapshotError("truncated snapshot header")
    return {"format": (major, minor), "library": data[14:14 + n].decode("ascii", "replace"), "offset": 14 + n}


def _sections(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int, int, bytes]]:
    pos = start
    while pos < end:
        if end - pos < _SECTION.size:
            raise SnapshotError("truncated section header")
        tag, major, minor, flags, length = _SECTION.unpack_from(data, pos)
        pos += _SECTION.size
        if length > end - pos:
            raise SnapshotError(f"section {tag!r} is truncated")
        yield tag, major, minor, flags, data[pos:pos + length]
        pos += length


def loads(data: bytes) -> tuple[dict[str, Any], Any]:
    """Parse and check a snapshot: ``(meta, core_engine)``. Raises SnapshotError."""
    data = bytes(data)
    head = read_header(data)
    major, minor = head["format"]
    if major > FORMAT_VERSION[0]:
        raise SnapshotError(
            f"snapshot format {major}.{minor} (written by heatcore {head['library']}) is newer than this "
            f"heatcore {_library_version()} reads ({FORMAT_VERSION[0]}.x); upgrade heatcore to load it")
    if major == 0:
        raise SnapshotError("snapshot format version 0 is invalid")
    if len(data) < head["offset"] + 4:
        raise SnapshotError("truncated snapshot (no checksum)")
    (stored,) = struct.unpack_from("<I", data, len(data) - 4)
    actual = _core.crc32(data[:-4])
    if stored != actual:
        raise SnapshotError(f"snapshot checksum mismatch (stored {stored:08x}, computed {actual:08x}): "
                            "the file is corrupt or truncated")
    meta: dict[str, Any] | None = None
    core_bytes: bytes | None = None
    for tag, smajor, sminor, flags, payload in _sections(data, head["offset"], len(data) - 4):
        if tag in (b"META", b"CORE"):
            supported = _META_VERSION if tag == b"META" else _CORE_VERSION
            if smajor > supported[0]:
                raise SnapshotError(f"section {tag.decode()} version {smajor}.{sminor} is newer than this heatcore "
                                    f"reads ({supported[0]}.x)")
            if tag == b"META":
                try:
                    meta = json.loads(payload.decode())
                except (UnicodeDecodeError, ValueError) as e:
                    raise SnapshotError(f"META section is not valid JSON: {e}") from None
            else:
                core_bytes = payload
        elif flags & _REQUIRED:
            raise SnapshotError(f"required section {tag!r} is unknown to heatcore {_library_version()}")
    if not isinstance(meta, dict) or core_bytes is None:
        raise SnapshotError("snapshot lacks its META or CORE section")
    try:
        core = _core.Engine.from_state(core_bytes)
    except _core.SnapshotError as e:
        raise SnapshotError(str(e)) from None
    return meta, core


# -- files -----------------------------------------------------------------------

def _fsync_dir(directory: str) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _process_umask()  # read once, at import: os.umask() cannot be read without setting it


def write_atomic(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one."""
    target = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(target)
    try:
        mode = os.stat(target).st_mode & 0o777
    except FileNotFoundError:
        mode = 0o666 & ~_UMASK
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600; a snapshot gets a normal file's mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def read_file(path: PathLike) -> bytes:
    """The bytes of a snapshot file."""
    with open(os.fspath(path), "rb") as f:
        return f.read()


def remove_stale_temporaries(path: PathLike) -> int:
    """Delete temporary files a killed save left beside ``path``; returns how many.
    Only safe while no other process is saving to the same path."""
    target = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(target)
    n = 0
    for entry in os.listdir(directory):
        if entry.startswith("." + name + ".") and entry.endswith(".tmp"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, entry))
                n += 1
    return n


# -- continuous operation -----------------------------------------------------------

class AutoSnapshot:
    """Snapshot schedule and journal of one engine (held by :class:`heatcore.Engine`)."""

    def __init__(self, path: PathLike, every_events: int | None, every_seconds: float | None,
                 fsync_journal: bool) -> None:
        if every_events is None and every_seconds is None:
            raise ValueError("autosnapshot needs every_events or every_seconds (the journal would grow forever)")
        if every_events is not None and int(every_events) <= 0:
            raise ValueError("every_events must be positive")
        if every_seconds is not None and not float(every_seconds) > 0:
            raise ValueError("every_seconds must be positive")
        self.path = os.path.abspath(os.fspath(path))
        self.journal_path = self.path + ".journal"
        self.every_events = None if every_events is None else int(every_events)
        self.every_seconds = None if every_seconds is None else float(every_seconds)
        self.fsync_journal = bool(fsync_journal)
        self.pending = 0
        self.last = time.monotonic()
        self.token = b""
        self.journal: BinaryIO | None = None
        self.snapshots = 0

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    def __del__(self) -> None:  # an engine dropped while autosnapshotting: every record is flushed already
        self.close()

    def snapshot(self, eng: Engine) -> None:
        """Write a snapshot, then start a new journal that follows it."""
        token = secrets.token_bytes(16)
        eng._journal_token = token.hex()
        write_atomic(self.path, dumps(eng))
        # The new snapshot is durable: the old journal's records are all in it.
        self.close()
        header = _JOURNAL_HEADER.pack(JOURNAL_MAGIC, 1, 0, token)
        write_atomic(self.journal_path, header)
        self.journal = open(self.journal_path, "ab")
        self.token = token
        self.pending = 0
        self.last = time.monotonic()
        self.snapshots += 1

    def _append(self, kind: int, payload: bytes, count: int) -> None:
        assert self.journal is not None
        self.journal.write(_RECORD.pack(kind, count, _core.crc32(payload)) + payload)
        self.journal.flush()  # in the OS: survives the process dying
        if self.fsync_journal:
            os.fsync(self.journal.fileno())  # on disk: survives the machine dying

    def record_events(self, events: np.ndarray) -> None:
        self._append(_REC_EVENTS, events.tobytes(), len(events))

    def record_unknown_venue(self) -> None:
        self._append(_REC_UNKNOWN_VENUE, b"", 1)

    def after(self, eng: Engine, n: int) -> None:
        self.pending += n
        if ((self.every_events is not None and self.pending >= self.every_events)
                or (self.every_seconds is not None and time.monotonic() - self.last >= self.every_seconds)):
            self.snapshot(eng)


def read_journal(path: PathLike, token: str) -> tuple[list[tuple[int, np.ndarray | None]], int]:
    """Records of a journal that follows the snapshot with ``token``:
    ``([(kind, events or None), ...], dropped_bytes)``. A journal of another
    snapshot (an older one, left by a crash before the journal was rotated)
    yields nothing; a torn or corrupt tail ends the records."""
    try:
        data = read_file(path)
    except FileNotFoundError:
        return [], 0
    if len(data) < _JOURNAL_HEADER.size:
        return [], len(data)
    magic, version, _, jtoken = _JOURNAL_HEADER.unpack_from(data, 0)
    if magic != JOURNAL_MAGIC or version != 1 or jtoken.hex() != token:
        return [], 0
    out: list[tuple[int, np.ndarray | None]] = []
    pos = _JOURNAL_HEADER.size
    while len(data) - pos >= _RECORD.size:
        kind, count, crc = _RECORD.unpack_from(data, pos)
        size = count * EVENT_DTYPE.itemsize if kind == _REC_EVENTS else 0
        end = pos + _RECORD.size + size
        if kind not in (_REC_EVENTS, _REC_UNKNOWN_VENUE) or end > len(data):
            break
        payload = data[pos + _RECORD.size:end]
        if _core.crc32(payload) != crc:
            break
        out.append((kind, np.frombuffer(payload, dtype=EVENT_DTYPE).copy() if kind == _REC_EVENTS else None))
        pos = end
    return out, len(data) - pos
