"""QR codes of onboarding links (segno: pure Python, no image library needed)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import segno


def _code(link: str) -> segno.QRCode:
    # Level M survives a smudged print or a phone held at an angle; the links are short.
    return segno.make(link, error="m", micro=False)


def write(link: str, folder: Path, name: str) -> tuple[Path, Path]:
    """`name`.png and `name`.svg in `folder` (created, private to the user: they carry
    a working token until it is used or expires)."""
    folder.mkdir(parents=True, exist_ok=True)
    code = _code(link)
    png, svg = folder / f"{name}.png", folder / f"{name}.svg"
    for path, kind in ((png, "png"), (svg, "svg")):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            code.save(out, kind=kind, scale=8, border=4)
    return png, svg


def terminal(link: str) -> str:
    """The code drawn with half blocks, for a terminal (dark text on a light background
    or the reverse both scan: the quiet zone is drawn)."""
    out = io.StringIO()
    _code(link).terminal(out=out, compact=True, border=2)
    return out.getvalue()
