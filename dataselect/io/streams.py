"""Byte streams of a source: compressed files (gzip, bz2, xz, zstd) with a damaged stream reported where
it broke, and standard input, spooled to a file for the run so it can be read more than once."""
from __future__ import annotations

import contextlib
import gzip
import io
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator


def open_binary(path: Path | str) -> Any:
    """The decompressed bytes of a file (by its suffix), local or at an object-storage URL."""
    from dataselect.io.remote import open_raw

    name = str(path)
    raw = open_raw(path)
    if name.endswith(".gz"):
        return _Owning(gzip.GzipFile(fileobj=raw, mode="rb"), raw)
    if name.endswith(".bz2"):
        import bz2

        return _Owning(bz2.BZ2File(raw, "rb"), raw)
    if name.endswith(".xz"):
        import lzma

        return _Owning(lzma.LZMAFile(raw, "rb"), raw)
    if name.endswith(".zst"):
        return io.BufferedReader(_ZstdReader(raw), 1 << 20)
    return raw


class _Owning(io.BufferedReader):
    """A decompressing reader that closes the raw file under it too (GzipFile and its kin leave a passed
    file object open)."""

    def __init__(self, reader: Any, raw: Any) -> None:
        super().__init__(reader, 1 << 16)
        self._raw_file = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw_file.close()


def disk_offset(handle: Any) -> int | None:
    """Bytes of the file on disk read so far under `handle` (open_binary's; decompressing or not), for a
    progress estimate; None when the handle does not tell."""
    inner = getattr(handle, "raw", handle)  # zstd: the buffered reader over _ZstdReader
    raw = getattr(handle, "_raw_file", None) or getattr(inner, "_file", None) or handle  # _Owning, _ZstdReader, a plain file
    try:
        return int(raw.tell())
    except (AttributeError, OSError, ValueError):
        return None


class _ZstdReader(io.RawIOBase):
    """A .zst file's bytes, frame after frame; a file that ends inside a frame raises EOFError, as gzip,
    bz2 and xz do (zstandard's own stream reader ends quietly there, and the rest is lost without a word)."""

    CHUNK = 1 << 20

    def __init__(self, raw: Any) -> None:
        import zstandard

        self._zstd = zstandard
        self._file = raw
        self._decoder = zstandard.ZstdDecompressor().decompressobj()
        self._pending = b""
        self._in_frame = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = self._file.read(self.CHUNK)
            if not chunk:
                if self._in_frame:
                    raise EOFError("compressed file ended before the end of a zstd frame")
                return 0
            while chunk:
                self._in_frame = True
                self._pending += self._decoder.decompress(chunk)
                chunk = b""
                if self._decoder.eof:  # a frame ended; the next one (if any) starts in its unused data
                    chunk, self._in_frame = self._decoder.unused_data, False
                    self._decoder = self._zstd.ZstdDecompressor().decompressobj()
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        self._file.close()
        super().close()


class Damaged(Exception):
    """A compressed stream stopped decompressing after `lines` lines."""

    def __init__(self, lines: int, error: BaseException) -> None:
        super().__init__(str(error))
        self.lines = lines
        self.error = error


def decompression_errors() -> tuple[type[BaseException], ...]:
    """What gzip, bz2, xz and zstd raise for a damaged or cut stream (bz2 and gzip raise OSError kinds)."""
    import lzma
    import zlib

    errors: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error, lzma.LZMAError)
    try:
        import zstandard

        errors += (zstandard.ZstdError,)
    except ImportError:
        pass
    return errors


LINE_CHUNK = 1 << 20  # bytes read at a time while skipping an over-long line


@dataclass(frozen=True)
class OverLong:
    """A line longer than the byte limit, skipped without being kept in memory: only its size is known."""

    size: int
    limit: int


def read_line(handle: Any, limit: int | None) -> bytes | OverLong:
    """The next line (b"" at the end), holding at most `limit` + 1 bytes in memory: a longer line is read
    on in chunks and dropped, and comes back as OverLong."""
    if limit is None:
        return handle.readline()
    raw = handle.readline(limit + 1)
    if len(raw) <= limit or raw.endswith(b"\n"):
        return raw
    size = len(raw)
    while True:
        more = handle.readline(LINE_CHUNK)
        size += len(more)
        if not more or more.endswith(b"\n"):
            return OverLong(size, limit)


def stream_lines(handle: Any, limit: int | None = None) -> Iterator[bytes | OverLong]:
    """The stream's lines (see read_line); a decompression failure becomes Damaged, carrying how far it got."""
    count = 0
    errors = decompression_errors()
    while True:
        try:
            raw = read_line(handle, limit)
        except errors as error:
            raise Damaged(count, error) from None
        if not raw:
            return
        count += 1
        yield raw


# Standard input, copied once into a file under the cache folder for the run (see spool_stdin): the score
# phase and the selected rows both read it. (path, token): the token makes every run's cache key new.
_STDIN_SPOOL: list[tuple[Path, str] | None] = [None]


@contextlib.contextmanager
def spool_stdin(folder: Path) -> Iterator[None]:
    """Standard input copied to a file in `folder` for the length of the block (then removed), so a run
    can read `input.path: -` more than once; its cache key is new every time (never a cache hit)."""
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    path = folder / f"stdin-{token}"
    try:
        with open(path, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        _STDIN_SPOOL[0] = (path, token)
        yield
    finally:
        _STDIN_SPOOL[0] = None
        path.unlink(missing_ok=True)


def stdin_spool() -> tuple[Path, str] | None:
    """The run's spooled standard input (path, token), or None outside a run."""
    return _STDIN_SPOOL[0]
