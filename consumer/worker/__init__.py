"""``mlevents run``: the long-running worker.

The pipeline, in the order an event meets it: ``intake`` (the Event Hubs client),
``partition`` and ``progress`` (ordered work and safe checkpoints per partition),
``handler`` (decode, match, act, dead-letter), with ``retrying`` for every retried call,
``metrics`` and ``health`` for operators, ``lifecycle`` (the ``Worker``: start, drain, stop)
and ``wiring`` (the one place where real collaborators are built from the config).
"""
