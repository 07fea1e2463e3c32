"""What the worker keeps: checkpoints, dead letters and the idempotency ledger.

``blob`` and ``sqlite`` hold what the blob-backed and the SQLite-backed stores share;
``deadlines`` puts a deadline on every storage call and says what readiness reports of
each store.
"""
