"""The matching engine: pure, deterministic price-time matching for one instrument.

Standard library only: no Django, Channels, DRF or psycopg, no I/O, no clock, no randomness,
no floats (a test imports it in a fresh interpreter and checks). Its modules: ``types``
(instrument spec, commands, exact Decimal <-> tick/lot conversion), ``enums``, ``events``,
``book`` (the price levels), ``engine`` (the rules), ``codec`` (canonical JSON), ``grid``
(decimal strings from ticks and lots).

``events``, ``book``, ``engine`` and ``codec`` run as plain Python, or compiled by mypyc from
the same source when a build for exactly these sources exists (``_native``). ``ENGINE_BUILD``
says which one is in use.
"""

from matching.engine._native import activate

ENGINE_BUILD: str = activate(__path__)
