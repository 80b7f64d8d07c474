"""Order files: one order body per line, exactly as POST /orders takes it (JSON lines), or the
same fields as the columns of a CSV file (chosen by the extension). fixtures/gen_orders.py
writes them, `manage.py load_orders` replays them. Pure: standard library only.

Decimals are strings in both forms, and a JSON number in a hand-written file is read as a
Decimal, never as a float.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

# The CSV columns: the fields of an order body that gen_orders writes. An empty cell is a field
# left out (a market order's price).
CSV_FIELDS = ("idempotency_key", "client_id", "instrument", "side", "type", "price", "quantity",
              "time_in_force", "post_only")


def is_csv(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".csv"


class OrderWriter:
    """Writes order bodies to a .jsonl (any other extension) or .csv file."""

    def __init__(self, fh: IO[str], csv_format: bool) -> None:
        self._fh = fh
        self._csv = csv.DictWriter(fh, fieldnames=CSV_FIELDS, lineterminator="\n") if csv_format else None
        if self._csv is not None:
            self._csv.writeheader()

    def write(self, body: dict[str, Any]) -> None:
        if self._csv is not None:
            unknown = set(body) - set(CSV_FIELDS)
            if unknown:
                raise ValueError(f"fields without a CSV column: {sorted(unknown)}")
            self._csv.writerow({k: _cell(body.get(k)) for k in CSV_FIELDS})
        else:
            self._fh.write(json.dumps(body, separators=(",", ":")) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def read_orders(path: str | Path) -> Iterator[dict[str, Any]]:
    """The order bodies of a file, in order. A JSONL line that is not a JSON object, and a CSV
    row with the wrong columns, raise ValueError naming the line."""
    with open(path, newline="", encoding="utf-8") as fh:
        if is_csv(path):
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not set(reader.fieldnames) <= set(CSV_FIELDS):
                raise ValueError(f"{path}: the CSV header must name columns among {', '.join(CSV_FIELDS)}")
            for row in reader:
                yield _from_row(row)
            return
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                body = json.loads(line, parse_float=Decimal)
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc})") from None
            if not isinstance(body, dict):
                raise ValueError(f"{path}:{n}: an order must be a JSON object")
            yield body


def _from_row(row: dict[str, str | None]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, value in row.items():
        if value in (None, ""):
            continue
        body[key] = {"true": True, "false": False}.get(value, value) if key == "post_only" else value
    return body
