"""The matching service: the pure engine (``matching.engine``), the typed contract between the
web processes and the worker (``matching.contract``), and the worker that wires the engine to
PostgreSQL (``matching.worker``). Nothing here imports the apps above it (orders, marketdata)."""
