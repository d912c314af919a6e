"""Bytes as people write them: `80GiB`, `1.5 TB`, `512MiB`; and back, for the report."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_bytes(text: str) -> int:
    """`80GiB` -> 85899345920; GB is 10^9, GiB 2^30, a bare number bytes.

    Raises:
        ValueError: the text is not a positive size, with a message saying what is.

    >>> parse_bytes("80GiB"), parse_bytes("1.5 GB")
    (85899345920, 1500000000)
    """
    match = _SIZE.fullmatch(text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(
            f"{text!r} is not a size: write a number and a unit, e.g. 80GiB or 40GB "
            "(units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
        )
    size = round(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size <= 0:
        raise ValueError(f"{text!r} is not a size above zero")
    return size


def size_text(size: int) -> str:
    """1536 -> `1.50 KiB`: three significant digits, binary units.

    >>> size_text(0), size_text(1023), size_text(10 * 2**30 + 2**29)
    ('0 B', '1023 B', '10.5 GiB')
    """
    value = float(abs(size))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    sign = "-" if size < 0 else ""
    if unit == "B":
        return f"{sign}{int(value)} B"
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{sign}{value:.{digits}f} {unit}"
