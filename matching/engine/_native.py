"""The engine's optional compiled build: where it lives and when it may be used.

The engine's modules are plain Python and always work as such. ``python -m
matching.engine._build`` (run by ``make``) compiles ``events.py``, ``book.py``, ``engine.py`` and
``codec.py``, unchanged, with mypyc into ``build/engine/<key>/``, where ``<key>`` is a
hash of the exact bytes of every file the build reads (those four, ``types.py``,
``enums.py``, this loader and the build script) and of the interpreter's extension
suffix. ``matching/engine/__init__.py`` calls ``activate()``, which puts that directory first
on the package's ``__path__`` only if the build for the CURRENT sources is complete:
an edited source file changes the key, so a stale build can never shadow it (the
interpreted modules load instead, with a warning on stderr). ``PGBOURSE_ENGINE=python`` forces the interpreted engine;
``PGBOURSE_ENGINE=compiled`` makes a missing build an ImportError.

Stdlib only at import time; mypy and setuptools are needed only to build.
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from pathlib import Path

MODULES = ("events", "book", "engine", "codec")  # compiled; types.py and enums.py stay interpreted
KEY_SOURCES = (*MODULES, "types", "enums", "_native", "_build")  # what the build is made from
GROUP = "matching.engine._native_engine"  # mypyc's shared library: matching/engine/_native_engine__mypyc.<ext>
PACKAGE_SUBDIR = Path("matching", "engine")  # where the compiled modules lie inside a build
PACKAGE_DIR = Path(__file__).resolve().parent
BUILD_ROOT = PACKAGE_DIR.parent.parent / "build" / "engine"
EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX") or ".so"


def build_key(package_dir: Path = PACKAGE_DIR) -> str:
    """Hash of everything the compiled modules are made from."""
    h = hashlib.sha256()
    h.update(EXT_SUFFIX.encode())
    for name in KEY_SOURCES:
        h.update(name.encode() + b"\0")
        h.update((package_dir / f"{name}.py").read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:20]


def build_dir(key: str | None = None, build_root: Path = BUILD_ROOT) -> Path:
    return build_root / (key or build_key())


def complete(directory: Path) -> bool:
    pkg = directory / PACKAGE_SUBDIR
    names = [f"{m}{EXT_SUFFIX}" for m in MODULES] + [f"{GROUP.rsplit('.', 1)[1]}__mypyc{EXT_SUFFIX}"]
    return all((pkg / n).is_file() for n in names)


def activate(
    package_path: list[str], package_dir: Path = PACKAGE_DIR, build_root: Path = BUILD_ROOT, mode: str | None = None
) -> str:
    """Put the compiled build first on ``package_path`` if it matches the sources.

    ``mode`` defaults to $PGBOURSE_ENGINE. Returns a one-line description of the
    engine build in use.
    """
    if mode is None:
        mode = os.environ.get("PGBOURSE_ENGINE", "")
    mode = mode.strip().lower()
    if mode not in ("", "compiled", "python"):
        raise ImportError(f"PGBOURSE_ENGINE={mode!r}: expected 'compiled' or 'python'")
    if mode == "python":
        return "interpreted (PGBOURSE_ENGINE=python)"
    key = build_key(package_dir)
    directory = build_dir(key, build_root)
    if not complete(directory):
        if mode == "compiled":
            raise ImportError(f"PGBOURSE_ENGINE=compiled but no compiled engine for these sources ({directory})")
        if build_root.is_dir() and any(p for p in build_root.iterdir() if not p.name.startswith(".")):
            # A build exists, but for other sources: say so once, run interpreted.
            print(
                f"matching: compiled engine is stale or missing for these sources (key {key}); "
                "using the interpreted engine. `make engine` rebuilds it.",
                file=sys.stderr,
            )
        return "interpreted (no compiled build for these sources)"
    package_path.insert(0, str(directory / PACKAGE_SUBDIR))
    return f"compiled (mypyc, build {key})"
