"""Headless Chromium for the page tests: Debian's `chromium` package, driven by Playwright.
Nothing here downloads a browser: where /usr/bin/chromium is missing it is installed with
apt-get (as root), and only where that cannot be done are the tests skipped, saying why."""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def ensure_chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get): "
                    "apt-get install -y chromium")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "install", "-y", "-q", "chromium"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if command[1] == "install" and done.returncode == 0 and CHROMIUM.exists():
            return CHROMIUM
    pytest.skip(f"apt-get could not install chromium:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(executable), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
