"""What the worker keeps: checkpoints, dead letters and the idempotency ledger.

``blob`` and ``sqlite`` hold what the blob-backed and the SQLite-backed stores share, and
``files`` the atomic write of files kept in a folder (dead letters, the email outbox);
``deadlines`` puts a deadline on every storage call and says what readiness reports of
each store.
"""
