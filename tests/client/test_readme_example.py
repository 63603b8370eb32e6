"""The README's Python client block, pasted as is into a file and run against a real server; the results
docs/jobs.md shows, compared with the default model's real ones.

Only the addresses change (the test server listens on ports picked by the kernel); the block must run
unedited otherwise, with its own input file, and print what its comments say.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from modelwire import Client
from tests.serving import ThreadedServer

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def readme_block(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading) :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, f"no python block after {heading!r}"
    return found.group(1)


def test_the_readme_client_block_runs_as_pasted(server: ThreadedServer, tmp_path: Path) -> None:
    code = readme_block("## Python client")
    assert "http://127.0.0.1:8000" in code
    assert "grpc://127.0.0.1:8001" in code
    code = code.replace("http://127.0.0.1:8000", server.http_url)
    code = code.replace("grpc://127.0.0.1:8001", server.grpc_url)
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELWIRE_")}
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines[0].startswith("Prediction(sentiment='positive'"), lines
    assert "sentiment='negative'" in lines[1]  # predict_batch(["great", "awful"])
    streamed = {line.split(" ", 1)[0]: line for line in lines[2:4]}
    assert set(streamed) == {"0", "1"}
    assert re.match(r"(models|metrics|model\.\w+) ", lines[4]), lines[4]
    assert lines[5].startswith("0 ")
    assert "positive" in lines[5]
    assert lines[6].startswith("1 ")
    assert "negative" in lines[6]
    assert (tmp_path / "reviews.csv").is_file()


def test_the_jobs_doc_shows_the_default_models_real_results(server: ThreadedServer) -> None:
    text = (ROOT / "docs" / "jobs.md").read_text()
    submit = re.search(r"-d '(\{\"model\": \"sentiment\", \"inputs\".*?\})'", text)
    assert submit is not None
    shown = re.findall(r"^# (\{\"index\".*\})$", text, re.M)
    assert shown, "docs/jobs.md shows no results"
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        job = client.post("/v1/jobs", content=submit.group(1), headers={"content-type": "application/json"})
        assert job.status_code == 202, job.text
        job_id = job.json()["id"]
        with Client(server.http_url) as waiter:
            assert waiter.job(job_id).wait(timeout=60).status == "succeeded"
        results = client.get(f"/v1/jobs/{job_id}/results").text.splitlines()
    assert results == shown
