"""Security: pure policy (who may do what, how fast) + one ASGI middleware + one gRPC interceptor.

``principal.py`` says who is calling (and carries it through a context variable so the core, the job
manager and the event streams can read it without a transport); the adapters never check credentials
themselves.
"""
