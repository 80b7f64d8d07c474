"""Compile the matching core with mypyc into build/engine/<key>/ (see matching/engine/_native.py).

    PGBOURSE_ENGINE=python python -m matching.engine._build [-v]

Idempotent: does nothing when the build for the current sources exists. Without a C
compiler, Python headers, mypy or setuptools it prints a warning and exits 0 (the
interpreted engine is used); a failed compilation exits 1.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from matching.engine._native import BUILD_ROOT, GROUP, MODULES, PACKAGE_DIR, build_dir, build_key, complete

_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify

files, group, build_lib, build_temp = sys.argv[1].split(","), sys.argv[2], sys.argv[3], sys.argv[4]
setup(
    name="pgbourse-engine",
    ext_modules=mypycify(files, group_name=group, opt_level="3", target_dir=build_temp + "/c"),
    script_args=["build_ext", "--build-lib", build_lib, "--build-temp", build_temp],
)
"""


def _can_compile() -> str | None:
    """Why a C build is impossible here, or None."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None and shutil.which("cc") is None:
        return f"no C compiler ({cc}) found"
    include = sysconfig.get_paths().get("include")
    if not include or not (Path(include) / "Python.h").is_file():
        return f"Python headers (Python.h) not found in {include}"
    for module in ("mypyc", "setuptools"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    return None


def build(verbose: bool = False) -> int:
    key = build_key()
    target = build_dir(key)
    if complete(target):
        print(f"matching: compiled engine up to date (build/engine/{key})")
        return 0
    why = _can_compile()
    if why is not None:
        print(f"WARNING: matching engine not compiled ({why}); the interpreted engine will be used.", file=sys.stderr)
        return 0
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    root = PACKAGE_DIR.parent.parent
    names = ", ".join(m + ".py" for m in MODULES)
    print(f"matching: compiling {names} with mypyc (build/engine/{key}) ...", flush=True)
    with tempfile.TemporaryDirectory(dir=BUILD_ROOT, prefix=".tmp-") as tmp:
        out = Path(tmp) / "out"
        files = ",".join(f"matching/engine/{m}.py" for m in MODULES)
        proc = subprocess.run(
            [sys.executable, "-c", _SETUP, files, GROUP, str(out), str(Path(tmp) / "temp")],
            cwd=root,
            capture_output=not verbose,
            text=True,
        )
        if proc.returncode != 0 or not complete(out):
            if not verbose:
                sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
            print("ERROR: compiling the matching engine failed (see above).", file=sys.stderr)
            return 1
        if build_key() != key:
            print("ERROR: the engine sources changed during the build; run it again.", file=sys.stderr)
            return 1
        # Only a complete build ever appears under its key (rename is atomic).
        try:
            os.replace(out, target)
        except OSError:
            if not complete(target):  # else a concurrent build of the same sources won
                raise
    for old in BUILD_ROOT.iterdir():  # builds for older sources are dead weight
        if old != target and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)
    print(f"matching: compiled engine ready (build/engine/{key})")
    return 0


if __name__ == "__main__":
    sys.exit(build(verbose="-v" in sys.argv[1:]))
