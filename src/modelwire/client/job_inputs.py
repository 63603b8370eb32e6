"""What ``submit_job`` accepts, made ready to send: rows inline, a file to stream, or rows to stream.

Pure classification (``to_source``) plus the two readers a wire streams from: ``read_file`` (a file's bytes in
bounded chunks, each read on a worker thread) and the chunks of rows an iterable becomes. Nothing is read
before a wire asks, and nothing is ever held whole.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from modelwire.errors import InvalidInputError

__all__ = [
    "CHUNK_ROWS",
    "FILE_CHUNK_BYTES",
    "INLINE_ROWS",
    "JobInputs",
    "JobKind",
    "RowChunks",
    "Source",
    "from_thread",
    "media_type_for",
    "read_file",
    "to_source",
]

INLINE_ROWS = 1000
"""Up to this many rows in a sequence are sent in one request; more are streamed."""
CHUNK_ROWS = 1000
FILE_CHUNK_BYTES = 64 * 1024

JobKind = Literal["predict", "train"]
RowChunks = AsyncGenerator[list[Any]]
Source = Sequence[Any] | Path | RowChunks
"""Rows inline (a short sequence), a file to upload, or chunks of rows to stream."""
JobInputs = Sequence[Any] | Iterable[Any] | AsyncIterable[Any] | os.PathLike[str]
"""Rows (a list, any iterable or async iterable) or a ``.csv`` / ``.ndjson`` file path."""


def media_type_for(path: Path) -> str:
    """The upload's content type, by the file's extension."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "text/csv"
    if suffix in (".ndjson", ".jsonl"):
        return "application/x-ndjson"
    raise InvalidInputError(
        f"{path.name}: upload a .csv (a text column) or .ndjson/.jsonl file (one JSON value per line)",
        field="inputs",
    )


async def read_file(path: Path) -> AsyncGenerator[bytes]:
    """The file's bytes in chunks, each read on a worker thread (the loop never blocks on the disk)."""
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, FILE_CHUNK_BYTES):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)


async def _chunks(rows: Iterable[Any] | AsyncIterable[Any], kind: JobKind) -> RowChunks:
    chunk: list[Any] = []
    index = 0
    if isinstance(rows, AsyncIterable):
        try:
            async for row in rows:
                chunk.append(_row(row, kind, index))
                index += 1
                if len(chunk) >= CHUNK_ROWS:
                    yield chunk
                    chunk = []
        finally:
            aclose = getattr(rows, "aclose", None)  # an upload that stops early stops its source too
            if aclose is not None:
                await aclose()
    else:
        for row in rows:
            chunk.append(_row(row, kind, index))
            index += 1
            if len(chunk) >= CHUNK_ROWS:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def _row(row: Any, kind: JobKind, index: int) -> Any:
    """A training row as ``{"text", "label"}`` (a ``(text, label)`` pair is accepted too)."""
    if kind == "train" and isinstance(row, tuple | list) and len(row) == 2:
        return {"text": row[0], "label": row[1]}
    if kind == "train" and not isinstance(row, Mapping):
        raise InvalidInputError(
            f"training row {index} must be {{'text': ..., 'label': 0 or 1}} or a (text, label) pair",
            field=f"$.rows[{index}]",
        )
    return row


async def from_thread(rows: Iterable[Any]) -> AsyncIterator[Any]:
    """A blocking iterable as an async one: each ``next()`` runs on a worker thread (the sync client's
    rows may come from a slow generator; its loop must keep the upload moving)."""
    iterator = iter(rows)
    while batch := await asyncio.to_thread(lambda: list(itertools.islice(iterator, CHUNK_ROWS))):
        for row in batch:
            yield row


def to_source(inputs: JobInputs, kind: JobKind = "predict") -> Source:
    """Classify ``inputs``: a file, rows to send inline, or rows to stream. Nothing is read yet."""
    if isinstance(inputs, os.PathLike):
        path = Path(inputs)
        media_type_for(path)
        if not path.is_file():
            raise InvalidInputError(f"no such file: {path}", field="inputs")
        return path
    if isinstance(inputs, str | bytes):
        raise InvalidInputError(
            "inputs is a single string: pass a list of rows, or pathlib.Path(...) for a file", field="inputs"
        )
    if isinstance(inputs, Sequence) and len(inputs) <= INLINE_ROWS:
        return [_row(row, kind, i) for i, row in enumerate(inputs)]
    if isinstance(inputs, Iterable | AsyncIterable):
        return _chunks(inputs, kind)
    raise InvalidInputError(
        f"inputs must be rows (a list, an iterable) or a file path, not {type(inputs).__name__}",
        field="inputs",
    )
