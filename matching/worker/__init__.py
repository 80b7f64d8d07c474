"""The matching worker: the one process that owns every book and wires the pure engine to
PostgreSQL and to the feeds.

    consumer.py   the Channels consumer (``manage.py runworker --layer matching matching``)
    service.py    MatchingWorker: start, the order of writes, a batch from commands to commit
    books.py      a book per instrument, rebuilt from the record (bootstrap)
    dedupe.py     which orders are already on record, or still committing
    batch.py      events -> rows, answers and market events (pure, no database)
    store.py      the batch's statements, its pipelined SERIALIZABLE commit and 40001 retry
    periodic.py   snapshots (published and persisted) and statistics, on a timer
    direct.py     the TCP server web processes send orders to
    inbox.py      the PostgreSQL inbox as a Channels channel layer
    postgres.py   connection arguments from Django's settings
"""
