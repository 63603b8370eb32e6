"""``python -m modelwire`` is the ``modelwire`` command."""

from modelwire.cli import app

app(prog_name="modelwire")
