"""Upload parsers: rows come out the same whatever the chunking; malformed rows become row errors."""

from __future__ import annotations

from typing import Any

import pytest

from modelwire.errors import InvalidInputError, UnsupportedMediaTypeError
from modelwire.jobs.uploads import CsvRows, MultipartRows, NdjsonRows, RowParser, parser_for


def run(parser: RowParser, data: bytes, step: int) -> list[Any]:
    rows: list[Any] = []
    for start in range(0, len(data), step):
        rows.extend(parser.feed(data[start : start + step]))
    rows.extend(parser.close())
    return rows


def plain(rows: list[Any]) -> list[Any]:
    return [f"error: {r.message}" if isinstance(r, InvalidInputError) else r for r in rows]


@pytest.mark.parametrize("step", [1, 3, 7, 1 << 20])
def test_ndjson_rows_any_chunking(step: int) -> None:
    data = b'"first"\n{"text": "second", "label": 1}\n\nnot json\n"caf\xc3\xa9"\n"no newline at the end"'
    rows = plain(run(NdjsonRows(), data, step))
    assert rows[0] == "first"
    assert rows[1] == {"text": "second", "label": 1}
    assert rows[2].startswith("error: line 4 is not valid JSON")  # line numbers count blank lines
    assert rows[3:] == ["café", "no newline at the end"]


@pytest.mark.parametrize("step", [1, 5, 1 << 20])
def test_csv_with_a_text_header_and_quoted_newlines(step: int) -> None:
    data = 'id,Text\r\n1,plain\r\n2,"with, comma"\r\n3,"two\nlines ""quoted"""\r\n\r\n4,é\r\n'.encode()
    assert run(CsvRows(), data, step) == ["plain", "with, comma", 'two\nlines "quoted"', "é"]


def test_csv_without_a_header_uses_the_first_column() -> None:
    assert run(CsvRows(), b"great,1\nawful,0\n", 4) == ["great", "awful"]


def test_csv_training_columns_by_header_or_position() -> None:
    assert run(CsvRows(("text", "label")), b"label,text\n1,good\n0,bad\n", 3) == [
        {"text": "good", "label": "1"},
        {"text": "bad", "label": "0"},
    ]
    rows = run(CsvRows(("text", "label")), b"good,1\nshort\n", 100)
    assert rows[0] == {"text": "good", "label": "1"}
    assert isinstance(rows[1], InvalidInputError)


def test_csv_strips_a_byte_order_mark_and_refuses_an_unclosed_quote() -> None:
    assert run(CsvRows(), b"\xef\xbb\xbftext\nhello\n", 2) == ["hello"]
    with pytest.raises(InvalidInputError, match="quoted field"):
        run(CsvRows(), b'text\n"never closed\n', 100)


def multipart(parts: list[tuple[str, str | None, str | None, bytes]], boundary: str = "b0und") -> bytes:
    out = b""
    for name, filename, content_type, content in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if content_type:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize("step", [1, 16, 1 << 20])
def test_multipart_reads_the_file_part_by_its_type(step: int) -> None:
    body = multipart(
        [
            ("note", None, None, b"ignored field"),
            ("upload", "reviews.csv", "text/csv", b'text\nnice\n"multi\nline"\n'),
        ]
    )
    parser = parser_for("multipart/form-data", boundary="b0und")
    assert run(parser, body, step) == ["nice", "multi\nline"]


def test_multipart_ndjson_by_file_extension() -> None:
    body = multipart([("file", "rows.jsonl", "application/octet-stream", b'"a"\n"b"\n')])
    assert run(parser_for("multipart/form-data", boundary="b0und"), body, 10) == ["a", "b"]


def test_multipart_refusals() -> None:
    with pytest.raises(InvalidInputError, match="no file part"):
        run(parser_for("multipart/form-data", boundary="b0und"), multipart([("x", None, None, b"1")]), 100)
    two = multipart([("file", "a.csv", "text/csv", b"a\n"), ("file", "b.csv", "text/csv", b"b\n")])
    with pytest.raises(InvalidInputError, match="one file part"):
        run(parser_for("multipart/form-data", boundary="b0und"), two, 100)
    with pytest.raises(InvalidInputError, match="boundary"):
        parser_for("multipart/form-data")
    with pytest.raises(InvalidInputError, match="malformed multipart"):
        run(MultipartRows("b0und", lambda m, n: NdjsonRows()), b"--other\r\ngarbage", 100)
    with pytest.raises(UnsupportedMediaTypeError):
        run(
            parser_for("multipart/form-data", boundary="b0und"),
            multipart([("file", "a.bin", "image/png", b"")]),
            100,
        )


def test_unknown_media_types_are_refused() -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="text/plain"):
        parser_for("text/plain")
