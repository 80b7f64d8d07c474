"""The matching core (types, book, engine, codec) and its worker.

The four core modules run as plain Python, or compiled by mypyc from the same source when
a build for exactly these sources exists (see ``matching/_native.py``). ``ENGINE_BUILD``
says which one is in use.
"""

from matching._native import activate

ENGINE_BUILD: str = activate(__path__)
