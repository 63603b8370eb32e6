"""The docs harness itself: parsing, the output check, the port rewrite, and what a failing block reports."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.docs import session
from tests.docs.blocks import matches, parse, rewrite_ports

DOC = """# A page

<!-- not-run: serves in the foreground -->
```bash
modelwire serve
```

- a list item:

  ```python
  print("hi")  # -> hi
  ```

````text
```bash
not a block of its own
```
````

```
bare
```
"""


def test_parse_finds_fences_marks_and_indented_blocks(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(DOC)
    blocks = parse(page)
    assert [(b.line, b.lang, b.kind) for b in blocks] == [
        (4, "bash", "shell"),
        (10, "python", "python"),
        (14, "text", "shown"),
        (20, "", "unknown"),
    ]
    assert blocks[0].not_run == "serves in the foreground"
    assert blocks[1].not_run is None
    assert blocks[1].code == 'print("hi")  # -> hi\n'
    assert blocks[1].expected_output() == ["hi"]
    assert "not a block of its own" in blocks[2].code


def test_an_unclosed_fence_is_an_error(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```bash\necho\n")
    with pytest.raises(ValueError, match=r"page.md:1: .* never closed"):
        parse(page)


def test_shown_output_is_an_ordered_subsequence_with_ellipsis() -> None:
    output = 'created key 12ab\nnoise\n{"id":"5f0c","status":"queued"}\n'
    assert matches(["created key …", '{"id":"…","status":"queued"}'], output) is None
    assert matches(['{"id":"…","status":"queued"}', "created key …"], output) == 1
    assert matches(["created key"], output) == 0  # a whole line, not a prefix
    assert matches([], "") is None


def test_only_loopback_addresses_and_port_flags_are_rewritten() -> None:
    code = (
        "curl localhost:8000/x http://127.0.0.1:8001 10.0.0.5:8000 --grpc-port 9001 --http-port=9000 "
        "--workers 8000"
    )
    assert rewrite_ports(code, {8000: 1, 8001: 2, 9001: 3, 9000: 4}) == (
        "curl localhost:1/x http://127.0.0.1:2 10.0.0.5:8000 --grpc-port 3 --http-port=4 --workers 8000"
    )


def test_a_failing_block_stops_the_session_and_says_where_and_why(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```bash\necho one\nfalse\necho never\n```\n\n```bash\necho two\n```\n")
    folder = tmp_path / "work"
    folder.mkdir()
    outcomes = session.run_session(parse(page), folder, dict(os.environ), {})
    assert [o.finished for o in outcomes] == [False, False]
    assert outcomes[0].stdout.split() == ["one"]
    report = outcomes[0].report(tmp_path, "did not run to its end")
    assert report.startswith("page.md:1: ```bash block did not run to its end")
    assert "false" in report
    assert "status 1" in report
    assert outcomes[1].status.startswith("not reached")


def test_a_hanging_block_is_killed_at_its_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "BLOCK_TIMEOUT_S", 1.0)
    page = tmp_path / "page.md"
    page.write_text("```bash\nsleep 1000 &\necho started\nwait\n```\n")
    folder = tmp_path / "work"
    folder.mkdir()
    [outcome] = session.run_session(parse(page), folder, dict(os.environ), {})
    assert not outcome.finished
    assert outcome.status.startswith("timed out")
    assert "started" in outcome.stdout
