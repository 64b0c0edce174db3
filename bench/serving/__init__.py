"""Serving scenarios: Poisson load, a dynamically batching server, the peak search, and what they record.

Nothing here imports torch or a model: the server serves a callable that runs one batch,
so the same loop is measured on a real model and tested against a simulated one on a
virtual clock (``bench.serving.clock``).
"""
