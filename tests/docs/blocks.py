"""The fenced code blocks of a Markdown file, what the docs harness does with each, and its output check.

Pure parsing and matching, no I/O beyond reading the file: ``tests/docs/test_code_blocks.py`` runs them.
The conventions are described there (and in README.md, "Docs conventions").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RUN = {"bash": "shell", "sh": "shell", "shell": "shell", "python": "python"}
"""Info strings whose blocks are executed, and how."""

SHOWN = {"text", "console", "json", "toml", "proto", "http", "yaml", "js", "ini", "dockerfile", "diff"}
"""Info strings whose blocks are shown only (json must parse; toml must parse, and load as Settings when it
is a modelwire.toml)."""

NOT_RUN = re.compile(r"^\s*<!--\s*not-run:(?P<reason>.*?)-->\s*$")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
SHOWN_OUTPUT = re.compile(r"#\s?->(?: (?P<text>.*))?$")
ELLIPSIS = "…"


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its info string's first word, its text, and a not-run reason."""

    path: Path
    line: int  # 1-based line of the opening fence
    lang: str  # the info string's first word, lower case ("" when there is none)
    code: str
    not_run: str | None  # the reason given by <!-- not-run: reason --> right before the fence

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"

    @property
    def kind(self) -> str:
        """``shell`` or ``python`` (executed), ``shown``, or ``unknown`` (an info string to fix)."""
        if self.lang in RUN:
            return RUN[self.lang]
        return "shown" if self.lang in SHOWN else "unknown"

    def expected_output(self) -> list[str]:
        """The output lines the block shows with ``# -> text`` comments, in order (see ``matches``)."""
        shown = []
        for line in self.code.splitlines():
            found = SHOWN_OUTPUT.search(line)
            if found is not None and _is_comment_at(line, found.start()):
                shown.append((found.group("text") or "").rstrip())
        return shown


def _is_comment_at(line: str, index: int) -> bool:
    """Whether the ``#`` at ``index`` starts a comment: the line's first non-blank, or after whitespace
    outside quotes (a ``#`` inside a string or a URL is not one)."""
    before = line[:index]
    if not before.strip():
        return True
    if not before[-1].isspace():
        return False
    return before.count("'") % 2 == 0 and before.count('"') % 2 == 0


def parse(path: Path) -> list[Block]:
    """Every fenced block of ``path`` (also inside list items), in order; an unclosed fence is an error."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = opening.group("indent"), opening.group("fence")
        words = opening.group("info").strip().split()
        lang = words[0].lower().strip("{}.") if words else ""
        previous = lines[index - 1] if index > 0 else ""
        marker = NOT_RUN.match(previous)
        body = []
        end = index + 1
        while end < len(lines):
            closing = lines[end].strip()
            if closing.startswith(fence[0] * len(fence)) and not closing.strip(fence[0]):
                break
            body.append(lines[end][len(indent) :] if lines[end].startswith(indent) else lines[end].lstrip())
            end += 1
        else:
            raise ValueError(f"{path.name}:{index + 1}: the {fence} fence opened here is never closed")
        code = "\n".join(body) + "\n" if body else ""
        blocks.append(Block(path, index + 1, lang, code, marker.group("reason").strip() if marker else None))
        index = end + 1
    return blocks


def matches(expected: list[str], output: str) -> int | None:
    """Check shown output: each expected line must equal an output line (trailing blanks ignored), in the
    order shown, with any output lines between (a block need not show everything it prints). ``…`` in a
    line matches any text. Returns the index of the first expected line not found, or None when all are."""
    lines = [line.rstrip() for line in output.splitlines()]
    position = 0
    for number, want in enumerate(expected):
        pattern = re.compile("^" + ".*".join(re.escape(part) for part in want.split(ELLIPSIS)) + "$")
        while position < len(lines) and not pattern.match(lines[position]):
            position += 1
        if position == len(lines):
            return number
        position += 1
    return None


PORT_FLAG = re.compile(r"(--(?:[a-z0-9]+-)*port[ =])(\d{2,5})\b")
ADDRESS = re.compile(r"\b((?:127\.0\.0\.1|localhost|\[::1\]|0\.0\.0\.0):)(\d{2,5})\b")


def rewrite_ports(code: str, ports: dict[int, int]) -> str:
    """The block with every port of a loopback address (``127.0.0.1:8000``, ``localhost:8001``) and of a
    ``--...-port N`` flag replaced by ``ports[N]``; numbers not in ``ports`` are left as written."""

    def swap(found: re.Match[str]) -> str:
        number = int(found.group(2))
        return found.group(1) + str(ports.get(number, number))

    return ADDRESS.sub(swap, PORT_FLAG.sub(swap, code))


def ports_named(code: str) -> set[int]:
    """Every port number ``rewrite_ports`` would look at in ``code``."""
    found = [*ADDRESS.finditer(code), *PORT_FLAG.finditer(code)]
    return {int(match.group(2)) for match in found}


FILE_HEADER = re.compile(r"^#\s+(?P<path>[\w./-]+\.py)\s*$")


def file_named(block: Block) -> str | None:
    """A Python block whose first line is a comment naming a file (``# mypackage/models.py``) is that file's
    content: the harness writes it there (relative to the session's folder) before running later blocks."""
    first = block.code.splitlines()[0] if block.code else ""
    found = FILE_HEADER.match(first)
    return found.group("path") if found else None
