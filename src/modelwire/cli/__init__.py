"""The ``modelwire`` command line: ``main.py`` holds the app and shared helpers; a module per command."""

import importlib

from modelwire.cli.main import app, build_settings, parse_model_spec, run

# Registration order is the order ``modelwire --help`` lists the commands in.
_COMMANDS = (
    "serve",
    "model_service",
    "gateway",
    "worker",
    "queues",
    "client",
    "models",
    "watch",
    "train",
    "jobs",
    "features",
    "keys",
    "certs",
    "monitoring",
)
for _module in _COMMANDS:
    importlib.import_module(f"modelwire.cli.{_module}")

__all__ = ["app", "build_settings", "parse_model_spec", "run"]
