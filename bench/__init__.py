"""Benchmarks: each module's ``main()`` prints rates and ratios against a baseline measured in
the same run (``python -m bench`` runs them all; ``python -m bench NAME`` runs one)."""
