"""The engine runs compiled (mypyc) or interpreted from the same source: which one is
loaded, and that a build for other sources is never loaded (matching/engine/_native.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import matching.engine
import matching.engine.engine
from matching.engine import _native

ROOT = Path(__file__).resolve().parents[2]


def _loaded_from(mode: str) -> str:
    env = {**os.environ, "PGBOURSE_ENGINE": mode}
    code = "import matching.engine, matching.engine.engine as e; print(matching.engine.ENGINE_BUILD); print(e.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return out.stdout


def test_the_build_in_use_is_the_one_reported() -> None:
    compiled = matching.engine.ENGINE_BUILD.startswith("compiled")
    assert matching.engine.engine.__file__.endswith(".py") is not compiled
    requested = os.environ.get("PGBOURSE_ENGINE", "")
    if requested == "python":
        assert not compiled
    if requested == "compiled":
        assert compiled


def test_pgbourse_engine_python_forces_the_interpreted_source() -> None:
    build, path = _loaded_from("python").splitlines()
    assert build.startswith("interpreted") and path == str(ROOT / "matching" / "engine" / "engine.py")


def test_the_build_key_covers_every_source_byte(tmp_path: Path) -> None:
    pkg = tmp_path / "matching"
    pkg.mkdir()
    for name in _native.KEY_SOURCES:
        shutil.copy(_native.PACKAGE_DIR / f"{name}.py", pkg / f"{name}.py")
    key = _native.build_key(pkg)
    assert key == _native.build_key()
    for name in _native.KEY_SOURCES:
        original = (pkg / f"{name}.py").read_bytes()
        (pkg / f"{name}.py").write_bytes(original + b"\n")
        assert _native.build_key(pkg) != key, f"editing {name}.py must change the build key"
        (pkg / f"{name}.py").write_bytes(original)


def test_a_build_for_other_sources_is_never_put_on_the_path(tmp_path: Path) -> None:
    pkg = tmp_path / "matching"
    pkg.mkdir()
    for name in _native.KEY_SOURCES:
        shutil.copy(_native.PACKAGE_DIR / f"{name}.py", pkg / f"{name}.py")
    root = tmp_path / "build"

    def fake_build(key: str) -> None:
        out = root / key / _native.PACKAGE_SUBDIR
        out.mkdir(parents=True)
        for name in [*_native.MODULES, _native.GROUP.rsplit(".", 1)[1] + "__mypyc"]:
            (out / f"{name}{_native.EXT_SUFFIX}").write_bytes(b"")

    fake_build(_native.build_key(pkg))
    path: list[str] = []
    assert _native.activate(path, pkg, root, mode="").startswith("compiled")
    assert path == [str(root / _native.build_key(pkg) / _native.PACKAGE_SUBDIR)]

    (pkg / "engine.py").write_bytes((pkg / "engine.py").read_bytes() + b"# edited\n")
    path = []
    assert _native.activate(path, pkg, root, mode="").startswith("interpreted")
    assert path == []  # the old build stays off the path
    with pytest.raises(ImportError):
        _native.activate(path, pkg, root, mode="compiled")
    assert _native.activate(path, pkg, root, mode="python").startswith("interpreted") and path == []


def test_the_engine_imports_the_standard_library_only() -> None:
    # In a fresh interpreter, importing every module of the engine loads none of the frameworks.
    code = ("import sys, matching.engine.types, matching.engine.book, matching.engine.engine, "
            "matching.engine.codec, matching.engine.grid\n"
            "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "matching" in loaded
    assert not loaded & {"django", "channels", "rest_framework", "psycopg", "daphne", "orjson", "msgspec",
                         "orders", "marketdata", "exchange_project"}, loaded
    stdlib = set(sys.stdlib_module_names) | {"matching", "mypy_extensions", "_native_engine__mypyc"}
    assert loaded <= stdlib | {m for m in loaded if m.startswith("_")}, loaded - stdlib
