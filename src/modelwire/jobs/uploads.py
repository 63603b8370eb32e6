"""Reading uploaded rows as they stream in: NDJSON, CSV, and a multipart/form-data file part. No I/O.

Each parser is fed bytes in whatever chunks arrive (``feed``) and returns the rows completed so far; ``close``
returns the rest. A row is an instance, or an ``InvalidInputError`` for a row that could not be read (a
malformed NDJSON line): it becomes that row's error result, and one bad row does not refuse the upload.
Memory stays bounded by the longest row, never the upload.
"""

from __future__ import annotations

import codecs
import csv
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from modelwire.core.nesting import DEFAULT_MAX_DEPTH, check_json_depth, too_deep
from modelwire.errors import InvalidInputError, UnsupportedMediaTypeError

__all__ = ["NDJSON_TYPES", "CsvRows", "MultipartRows", "NdjsonRows", "RowParser", "parser_for"]

NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines", "application/ndjson")
_decode = msgspec.json.Decoder().decode


class RowParser(Protocol):
    def feed(self, data: bytes) -> list[Any]: ...

    def close(self) -> list[Any]: ...


class NdjsonRows:
    """One JSON value per line (a string for text models, an object for training rows); blank lines skip.
    A line that is not JSON, or nests deeper than ``max_depth``, becomes that row's error."""

    def __init__(self, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        self._buffer = b""
        self._line = 0
        self.max_depth = max_depth

    def feed(self, data: bytes) -> list[Any]:
        self._buffer += data
        if b"\n" not in data:
            return []
        *lines, self._buffer = self._buffer.split(b"\n")
        return [row for line in lines if (row := self._row(line)) is not _SKIP]

    def close(self) -> list[Any]:
        line, self._buffer = self._buffer, b""
        row = self._row(line)
        return [] if row is _SKIP else [row]

    def _row(self, line: bytes) -> Any:
        self._line += 1
        if not line.strip():
            return _SKIP
        try:
            row = _decode(line)
            check_json_depth(line, self.max_depth)
        except msgspec.DecodeError as exc:
            return InvalidInputError(f"line {self._line} is not valid JSON: {exc}")
        except RecursionError:
            return too_deep(self.max_depth)
        except InvalidInputError as exc:
            return exc
        return row


_SKIP = object()


class CsvRows:
    """CSV rows as ``columns`` pick them: one column gives the value itself, several give a dict.

    The first record is a header when it names every wanted column (any case); otherwise the columns are
    taken by position (``text`` = first column, ``label`` = second). Records may span lines inside quotes:
    lines are handed to the csv module only once the quotes seen so far balance.
    """

    def __init__(self, columns: Sequence[str] = ("text",)) -> None:
        self.columns = tuple(columns)
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        self._text = ""
        self._pending: list[str] = []
        self._quotes = 0
        self._where: list[int] | None = None
        self._record = 0
        csv.field_size_limit(sys.maxsize)

    def feed(self, data: bytes) -> list[Any]:
        self._text += self._decoder.decode(data)
        if "\n" not in self._text:
            return []
        *lines, self._text = self._text.split("\n")
        return self._lines(lines)

    def close(self) -> list[Any]:
        tail = self._text + self._decoder.decode(b"", final=True)
        self._text = ""
        rows = self._lines([tail]) if tail else []
        if self._pending:
            raise InvalidInputError(f"the CSV ends inside a quoted field (record {self._record + 1})")
        return rows

    def _lines(self, lines: list[str]) -> list[Any]:
        complete: list[str] = []
        for line in lines:
            self._pending.append(line)
            self._quotes += line.count('"')
            if self._quotes % 2 == 0:
                complete.append("\n".join(self._pending))
                self._pending.clear()
                self._quotes = 0
        rows = []
        for record in csv.reader(complete):
            if not record or not any(cell.strip() for cell in record):
                continue
            self._record += 1
            if self._where is None:
                lowered = [cell.strip().lower() for cell in record]
                if all(c in lowered for c in self.columns):
                    self._where = [lowered.index(c) for c in self.columns]
                    continue
                self._where = list(range(len(self.columns)))
            rows.append(self._pick(record))
        return rows

    def _pick(self, record: list[str]) -> Any:
        assert self._where is not None
        if max(self._where) >= len(record):
            return InvalidInputError(
                f"CSV record {self._record} has {len(record)} columns; {self.columns} needed"
            )
        if len(self.columns) == 1:
            return record[self._where[0]]
        return {name: record[i] for name, i in zip(self.columns, self._where, strict=True)}


class MultipartRows:
    """The rows of the one file part of a ``multipart/form-data`` body (other fields are ignored).

    The file part's own ``Content-Type`` (or its file name's extension) picks CSV or NDJSON.
    """

    def __init__(self, boundary: str, inner: Callable[[str, str], RowParser]) -> None:
        self._inner_for = inner
        self._inner: RowParser | None = None
        self._files = 0
        self._rows: list[Any] = []
        self._headers: dict[str, str] = {}
        self._field = b""
        self._value = b""
        self._in_file = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": lambda d, s, e: self._add("_field", d[s:e]),
                "on_header_value": lambda d, s, e: self._add("_value", d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    def _add(self, name: str, data: bytes) -> None:
        setattr(self, name, getattr(self, name) + data)

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = self._value.decode("latin-1")
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        filename = options.get(b"filename")
        self._in_file = filename is not None or options.get(b"name") == b"file"
        if self._in_file:
            self._files += 1
            if self._files > 1:
                raise InvalidInputError("send one file part per job", field="file")
            media = self._headers.get("content-type", "").split(";")[0].strip().lower()
            self._inner = self._inner_for(media, (filename or b"").decode("utf-8", "replace"))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file and self._inner is not None:
            self._rows.extend(self._inner.feed(data[start:end]))

    def _part_end(self) -> None:
        if self._in_file and self._inner is not None:
            self._rows.extend(self._inner.close())
        self._in_file = False

    def feed(self, data: bytes) -> list[Any]:
        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            raise InvalidInputError(f"malformed multipart body: {exc}") from None
        rows, self._rows = self._rows, []
        return rows

    def close(self) -> list[Any]:
        try:
            self._parser.finalize()
        except MultipartParseError as exc:
            raise InvalidInputError(f"malformed multipart body: {exc}") from None
        if self._files == 0:
            raise InvalidInputError("the multipart body has no file part (name it 'file')", field="file")
        rows, self._rows = self._rows, []
        return rows


def parser_for(
    media_type: str,
    *,
    columns: Sequence[str] = ("text",),
    boundary: str | None = None,
    filename: str = "",
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> RowParser:
    """The parser for an upload of ``media_type`` (``UnsupportedMediaTypeError`` for anything else)."""
    media = media_type.lower()
    if media in NDJSON_TYPES or filename.endswith((".ndjson", ".jsonl")):
        return NdjsonRows(max_depth)
    if media in ("text/csv", "application/csv") or filename.endswith(".csv"):
        return CsvRows(columns)
    if media == "multipart/form-data":
        if not boundary:
            raise InvalidInputError("multipart/form-data needs a boundary parameter")
        return MultipartRows(
            boundary,
            lambda inner, name: parser_for(inner, columns=columns, filename=name, max_depth=max_depth),
        )
    raise UnsupportedMediaTypeError(
        f"content type {media_type!r} is not an upload modelwire reads: send application/json, "
        "application/x-ndjson, text/csv or multipart/form-data (a .csv or .ndjson file part)"
    )
