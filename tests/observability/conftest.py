"""Observability tests need no fixtures beyond the root conftest."""
