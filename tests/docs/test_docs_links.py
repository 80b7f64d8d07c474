"""Every file, folder and management command the README and docs/*.md name exists.

Checked: relative Markdown links, every path that starts with one of the project's top-level
folders and names a file (an extension) or a folder (a trailing slash), in prose, backticks and
code blocks alike, and every `manage.py <command>`. Paths made at run time (var/, build/) and
URLs are not paths of the repository and are not matched."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP = ("exchange_project", "orders", "matching", "marketdata", "tests", "load-test", "fixtures", "docs",
       "static", "templates", "deploy")
# A path is a file (it has an extension) or a folder (it ends with a slash); "orders/s" is a rate.
_TOP = "|".join(map(re.escape, TOP))
PATH = re.compile(r"(?<![\w./$-])((?:" + _TOP + r")/(?:[\w.-]+/)*(?:[\w-]+\.[a-z]{1,5}\b|(?![\w-])))")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
COMMAND = re.compile(r"manage\.py (\w+)")
DJANGO_COMMANDS = {"createsuperuser", "runworker", "migrate", "loaddata", "shell", "dbshell"}


def named_paths(text: str) -> set[str]:
    found = {m.group(1) for m in PATH.finditer(text)}
    found |= {m.group(1) for m in LINK.finditer(text) if "://" not in m.group(1)}
    return found


def test_the_pattern_finds_paths_and_skips_what_is_no_path() -> None:
    text = ("see `orders/validation.py`, docs/faults.md and tests/orders/test_api.py::test_x; "
            "[a link](docs/engine.md#rules); 12,455 orders/s; $B/orders/$ID; /admin/orders/apikey/; "
            "var/orders.jsonl; orders/rejections/trades rates; static/trading/js/ and matching/engine/")
    assert named_paths(text) == {"orders/validation.py", "docs/faults.md", "tests/orders/test_api.py",
                                 "docs/engine.md", "static/trading/js/", "matching/engine/"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_path_a_page_names_exists(page: Path) -> None:
    base = page.parent
    missing = sorted(p for p in named_paths(page.read_text())
                     if not (ROOT / p).exists() and not (base / p).exists())
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_management_command_a_page_names_exists(page: Path) -> None:
    mine = {p.stem for p in ROOT.glob("*/management/commands/*.py") if p.stem != "__init__"}
    missing = sorted(set(COMMAND.findall(page.read_text())) - mine - DJANGO_COMMANDS)
    assert not missing, f"{page.relative_to(ROOT)} names commands that do not exist: {missing}"
