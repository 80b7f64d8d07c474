"""CRC32 book checksum in Kraken's formatting rule (pure; used by the worker and the client).

For the top 10 asks (low to high) and then the top 10 bids (high to low), take each level's
price and quantity as decimal strings, remove the decimal point and strip leading zeros, and
concatenate everything; the checksum is the unsigned CRC32 of that string. Prices and
quantities are formatted with the instrument's tick and lot decimals, exactly as on the wire.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable

DEPTH = 10


def level_digits(value: str) -> str:
    """Kraken: the decimal string without its point and leading zeros."""
    return value.replace(".", "").lstrip("0")


def book_checksum(asks: Iterable[tuple[str, str]], bids: Iterable[tuple[str, str]]) -> int:
    """asks: best (lowest) first; bids: best (highest) first; (price, quantity) strings."""
    parts: list[str] = []
    for levels in (asks, bids):
        for n, (price, qty) in enumerate(levels):
            if n == DEPTH:
                break
            parts.append(level_digits(price))
            parts.append(level_digits(qty))
    return zlib.crc32("".join(parts).encode()) & 0xFFFFFFFF
