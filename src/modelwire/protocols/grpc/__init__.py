"""The gRPC adapter: servicers, converters (protobuf <-> domain), the error table, health, the listener.

``_generated/`` is written by ``scripts/generate`` from ``proto/``; never edit it by hand.
"""
