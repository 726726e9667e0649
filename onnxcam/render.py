"""Captions, titles and montages for the pictures onnxcam writes.

Text is drawn with OpenCV's Hershey font at a size relative to the picture's width, so a caption
is as readable on a 320 px photo as on a 4000 px one. Long lines (layer names) are wrapped at
'/', '.', '_' and spaces, and shrunk only when a single piece cannot fit: a caption is never cut.
Hershey fonts have ASCII glyphs only; other characters are transliterated or drawn as '?'.
"""
from __future__ import annotations

import re
import unicodedata

import cv2
import numpy as np

from .errors import OnnxCamError

FONT = cv2.FONT_HERSHEY_SIMPLEX
INK = (20, 20, 20)
PAPER = 255
MIN_TEXT_PX = 11          # smallest cap height we draw (readable on a screen)
MAX_MONTAGE_TILE = 1024   # montage/grid tiles wider than this are scaled down (keeping the aspect)


def _ascii(text: str) -> str:
    text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii") \
        if not str(text).isascii() else str(text)
    return "".join(c if c.isprintable() else "?" for c in text)


def text_scale(width: int, height: int | None = None, per_line: float = 34.0) -> float:
    """Font scale whose cap height is about width / per_line pixels, at least MIN_TEXT_PX; for a
    picture much wider than tall (a panorama), relative to twice its height instead, so the
    caption does not dwarf it."""
    base = width if height is None else min(width, 2 * height)
    target = max(MIN_TEXT_PX, base / per_line)
    return target / cv2.getTextSize("Hg", FONT, 1.0, 1)[0][1]


def _thickness(scale: float) -> int:
    return max(1, int(round(scale * 1.4)))


def _width(text: str, scale: float) -> int:
    return cv2.getTextSize(text, FONT, scale, _thickness(scale))[0][0]


def wrap(text: str, width: int, scale: float) -> list[str]:
    """text broken into lines no wider than width pixels: after '/' or ' ' where it can, after
    '.', '_' or '-' inside a piece too long for a line, inside a word only as the last resort."""
    pieces = []
    for piece in (p for p in re.split(r"(?<=[/ ])", _ascii(text)) if p):
        pieces += [piece] if _width(piece, scale) <= width else [q for q in re.split(r"(?<=[._\-])", piece) if q]
    lines, line = [], ""
    for piece in pieces:
        if _width(line + piece, scale) <= width:
            line += piece
            continue
        if line:
            lines.append(line.rstrip())
            line = ""
        while _width(piece, scale) > width and len(piece) > 1:   # a piece longer than a line
            cut = 1
            while cut < len(piece) and _width(piece[:cut + 1], scale) <= width:
                cut += 1
            lines.append(piece[:cut])
            piece = piece[cut:]
        line = piece
    if line.strip() or not lines:
        lines.append(line.rstrip())
    return lines


def text_strip(width: int, lines: list[str], scale: float | None = None, bold: bool = False) -> np.ndarray:
    """A white uint8 RGB strip `width` pixels wide with the lines wrapped and drawn in dark ink."""
    if width < 1:
        raise OnnxCamError(f"a caption needs a picture at least 1 pixel wide, got {width}")
    scale = text_scale(width) if scale is None else scale
    pad = max(3, int(round(width / 160)))
    wrapped = [piece for line in lines for piece in wrap(line, width - 2 * pad, scale)]
    (_, cap), base = cv2.getTextSize("Hg", FONT, scale, _thickness(scale))
    step = cap + base + max(2, cap // 3)
    strip = np.full((pad * 2 + step * len(wrapped), width, 3), PAPER, np.uint8)
    thick = _thickness(scale) + (1 if bold else 0)
    for k, line in enumerate(wrapped):
        cv2.putText(strip, line, (pad, pad + k * step + cap), FONT, scale, INK, thick, cv2.LINE_AA)
    return strip


def captioned(tile: np.ndarray, lines: list[str], scale: float | None = None) -> np.ndarray:
    """tile with its caption strip below it (class and score, method, layer ...)."""
    scale = text_scale(tile.shape[1], tile.shape[0]) if scale is None else scale
    return np.vstack([tile, text_strip(tile.shape[1], lines, scale)])


def _fit_width(tile: np.ndarray, width: int) -> np.ndarray:
    if tile.shape[1] == width:
        return tile
    height = max(1, int(round(tile.shape[0] * width / tile.shape[1])))
    interp = cv2.INTER_AREA if width < tile.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(tile, (width, height), interpolation=interp)


def montage(tiles: list[np.ndarray], captions: list[list[str]], title: list[str] | None = None,
            cols: int | None = None, max_tile_width: int = MAX_MONTAGE_TILE) -> np.ndarray:
    """Tiles side by side (`cols` per row, default all in one row), each with its caption below,
    and an optional title strip across the top. Tiles keep their aspect ratio, at the width of the
    narrowest one, at most max_tile_width; one caption size for all tiles, so they line up."""
    if not tiles or len(tiles) != len(captions):
        raise OnnxCamError(f"a montage needs one caption per tile and at least one tile, got "
                           f"{len(tiles)} tiles and {len(captions)} captions")
    width = min(min(t.shape[1] for t in tiles), max_tile_width)
    tiles = [_fit_width(t, width) for t in tiles]
    scale = text_scale(width, min(t.shape[0] for t in tiles))
    cells = [captioned(t, c, scale) for t, c in zip(tiles, captions)]
    cols = len(cells) if cols is None else max(1, min(cols, len(cells)))
    gap = max(2, width // 80)
    rows = []
    for r in range(0, len(cells), cols):
        row = cells[r:r + cols]
        height = max(c.shape[0] for c in row)
        padded = [np.vstack([c, np.full((height - c.shape[0], width, 3), PAPER, np.uint8)]) for c in row]
        padded += [np.full((height, width, 3), PAPER, np.uint8)] * (cols - len(row))
        line = [padded[0]]
        for c in padded[1:]:
            line += [np.full((height, gap, 3), PAPER, np.uint8), c]
        rows.append(np.hstack(line))
    body = rows[0] if len(rows) == 1 else np.vstack(
        [part for k, row in enumerate(rows) for part in
         ([row] if k == 0 else [np.full((gap, row.shape[1], 3), PAPER, np.uint8), row])])
    if title:
        head = text_strip(body.shape[1], title, scale * 1.25, bold=True)
        body = np.vstack([head, body])
    return body
