"""The uploaded photo from a multipart/form-data body, parsed in memory.

Starlette's `MultiPartParser` spools every part over 1 MiB to a temporary file, which breaks the
promise that no uploaded image touches disk. The body is already in memory (read under the upload
limit by the server), so this parser only cuts the one file part out of it, with
python-multipart's streaming parser and plain callbacks: no temporary file, no copy beyond the
part itself. It is also stricter than Starlette's: two image parts are an error (not "last one
wins"), and a body without its closing boundary is reported as cut off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from hypoderm.errors import HypodermError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

IMAGE_FIELDS = ("image", "file")  # the photo's field; `file` is accepted for curl-style clients
MAX_PARTS = 10
MAX_HEADER_BYTES = 8192  # all the headers of one part together
MAX_FIELD_BYTES = 65536  # a non-file field (none is used today; kept small)

# python-multipart logs each framing error at WARNING; the client gets the error in its JSON answer,
# so the server's terminal needs no second copy (an app that configures logging still sees them).
logging.getLogger("python_multipart").addHandler(logging.NullHandler())


class UploadError(HypodermError, ValueError):
    """A multipart body we cannot take the photo from. `.code` is the API error code, `.status` the HTTP status."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str | None = None
    data: bytearray = field(default_factory=bytearray)


def _bad(detail: str) -> UploadError:
    return UploadError(400, "bad_multipart", f"malformed multipart upload: {detail}")


class _Collector:
    """python-multipart's callbacks: collect the parts in memory, enforcing the limits as bytes arrive."""

    def __init__(self, max_file_bytes: int) -> None:
        self.max_file_bytes = max_file_bytes
        self.parts: list[_Part] = []
        self.header_field, self.header_value = bytearray(), bytearray()
        self.header_bytes = 0
        self.ended = False

    def callbacks(self) -> MultipartCallbacks:
        return {"on_part_begin": self.on_part_begin, "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value, "on_header_end": self.on_header_end,
                "on_headers_finished": self.on_headers_finished, "on_part_data": self.on_part_data,
                "on_end": self.on_end}

    def on_part_begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise _bad(f"more than {MAX_PARTS} parts")
        self.parts.append(_Part())
        self.header_bytes = 0

    def _header(self, into: bytearray, data: bytes, start: int, end: int) -> None:
        self.header_bytes += end - start
        if self.header_bytes > MAX_HEADER_BYTES:
            raise _bad(f"part headers longer than {MAX_HEADER_BYTES} bytes")
        into.extend(data[start:end])

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header(self.header_field, data, start, end)

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header(self.header_value, data, start, end)

    def on_header_end(self) -> None:
        self.parts[-1].headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        part = self.parts[-1]
        disposition, options = parse_options_header(part.headers.get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            raise _bad("a part has no 'Content-Disposition: form-data; name=...' header")
        part.name = options[b"name"].decode("utf-8", "replace")
        if part.name in IMAGE_FIELDS and sum(p.name in IMAGE_FIELDS for p in self.parts) > 1:
            raise UploadError(400, "duplicate_image", "more than one photo in the upload (fields 'image'/'file'); "
                              "send exactly one")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        limit = self.max_file_bytes if part.name in IMAGE_FIELDS else MAX_FIELD_BYTES
        if len(part.data) + (end - start) > limit:
            if part.name in IMAGE_FIELDS:
                raise UploadError(413, "upload_too_large", f"upload too large: more than the limit of {limit} bytes")
            raise _bad(f"field {part.name!r} is longer than {limit} bytes")
        part.data.extend(data[start:end])

    def on_end(self) -> None:
        self.ended = True


def image_from_multipart(body: bytes, content_type: str, max_file_bytes: int) -> bytes:
    """The bytes of the single part named `image` (or `file`) of a multipart/form-data body.

    Raises UploadError: 400 bad_multipart (no boundary, broken framing, no closing boundary, too
    many parts, oversized headers), 400 duplicate_image (two image parts), 422 missing_image (no
    image part), 413 upload_too_large (the part is over `max_file_bytes`)."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise _bad("the Content-Type header has no boundary parameter")
    if len(boundary) > 200:
        raise _bad("the boundary is longer than 200 characters")
    collector = _Collector(max_file_bytes)
    parser = MultipartParser(boundary, collector.callbacks())
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as e:
        raise _bad(str(e) or type(e).__name__) from None
    if not collector.ended or parser.state != MultipartState.END:
        raise _bad("the body ends before its closing boundary (the upload was cut off?)")
    images = [p for p in collector.parts if p.name in IMAGE_FIELDS]
    if not images:
        raise UploadError(422, "missing_image", "no file in the multipart field 'image'")
    return bytes(images[0].data)
