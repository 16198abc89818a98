"""Netstrings (`LEN:payload,`), the framing of Kamailio's evapi module.

Pure: no sockets. `NetstringDecoder` is fed whatever a read returned (half a
frame, several frames, a frame and a half) and gives back the complete payloads.
A framing error means the byte stream can no longer be trusted (there is no way
to find the start of the next frame), so the decoder raises `FrameError` and
stays broken: the caller resets the connection.
"""

from __future__ import annotations

# Kamailio's own parser skips these between frames; so do we.
_WHITESPACE = b" \t\r\n"
_DIGITS = b"0123456789"


class FrameError(ValueError):
    """The stream is not a valid sequence of netstrings; the message says where and why.

    `frames` holds the complete frames that the failing read delivered before the
    error, so that their events can still be answered before the reset.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.frames: list[bytes] = []


def encode(payload: bytes) -> bytes:
    """One netstring frame carrying `payload`."""
    return b"%d:%s," % (len(payload), payload)


class NetstringDecoder:
    """Incremental netstring decoder with a maximum frame size."""

    def __init__(self, max_frame: int = 65536) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be at least 1 byte")
        self.max_frame = max_frame
        # The longest length prefix a frame within the limit can have.
        self._max_digits = len(str(max_frame))
        self._buffer = bytearray()
        self._offset = 0  # bytes of the stream consumed before _buffer[0], for messages
        self._error: FrameError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet form a complete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add `data` to the stream; return the payloads of the frames it completed.

        Raises FrameError on a malformed stream, now and on every later call.
        """
        if self._error is not None:
            self._error.frames = []
            raise self._error
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        position = 0
        size = len(buffer)
        try:
            while position < size:
                if buffer[position] in _WHITESPACE:
                    position += 1
                    continue
                colon = buffer.find(b":", position, position + self._max_digits + 1)
                if colon < 0:
                    self._check_prefix(buffer, position, size)
                    break  # the length prefix is not complete yet
                length = self._length(buffer, position, colon)
                end = colon + 1 + length
                if end >= size:
                    break  # payload or trailing comma not arrived yet
                if buffer[end] != 0x2C:  # ","
                    raise self._fail(
                        end,
                        f"frame of {length} bytes does not end with ',' "
                        f"(found {bytes(buffer[end : end + 1])!r})",
                    )
                frames.append(bytes(buffer[colon + 1 : end]))
                position = end + 1
        except FrameError as exc:
            exc.frames = frames
            raise
        finally:
            if position:
                del buffer[:position]
                self._offset += position
        return frames

    def _check_prefix(self, buffer: bytearray, start: int, size: int) -> None:
        """No ':' yet: fail early on a prefix that can never become a valid length."""
        self._check_digits(buffer, start, min(size, start + self._max_digits + 1))
        if size - start > self._max_digits:
            raise self._fail(
                start,
                f"length prefix longer than {self._max_digits} digits: "
                f"frame over the maximum of {self.max_frame} bytes",
            )

    def _length(self, buffer: bytearray, start: int, colon: int) -> int:
        if colon == start:
            raise self._fail(start, "empty length prefix before ':'")
        self._check_digits(buffer, start, colon)
        if colon - start > 1 and buffer[start] == 0x30:
            raise self._fail(start, "length prefix has a leading zero")
        length = int(buffer[start:colon])
        if length > self.max_frame:
            raise self._fail(
                start, f"frame of {length} bytes is over the maximum of {self.max_frame}"
            )
        return length

    def _check_digits(self, buffer: bytearray, start: int, end: int) -> None:
        for index in range(start, end):
            if buffer[index] not in _DIGITS:
                found = bytes(buffer[index : index + 1])
                raise self._fail(index, f"expected a length digit or ':', got {found!r}")

    def _fail(self, index: int, message: str) -> FrameError:
        self._error = FrameError(f"bad netstring at byte {self._offset + index}: {message}")
        return self._error
