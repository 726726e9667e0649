"""Width and height from an image file's header, read before anything is decoded.

Why: a 632-byte JPEG can claim 30000x30000 pixels and decode to 2.7 GB. The header says so in its
first bytes, so the pixel cap is applied before OpenCV allocates anything. Formats parsed here:
PNG, JPEG, GIF, BMP, WebP, TIFF and PNM; an image in any other format is refused, since its size
cannot be known before OpenCV allocates it.
"""
from __future__ import annotations

import struct


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) the header claims, or None when the format is not one parsed here or the
    header is cut short (the decoder then reports the broken file)."""
    try:
        for magic, parse in _PARSERS:
            if data.startswith(magic):
                return parse(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _png(data: bytes):
    return struct.unpack(">II", data[16:24])


def _gif(data: bytes):
    return struct.unpack("<HH", data[6:10])


def _bmp(data: bytes):
    header = struct.unpack("<I", data[14:18])[0]
    if header == 12:  # BITMAPCOREHEADER
        return struct.unpack("<HH", data[18:22])
    w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)  # a negative height means top-down rows


def _jpeg(data: bytes):
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


def _webp(data: bytes):
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    if chunk == b"VP8L":
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _tiff(data: bytes):
    order = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack(order + "I", data[4:8])[0]
    count = struct.unpack(order + "H", data[ifd:ifd + 2])[0]
    found = {}
    for k in range(count):
        entry = data[ifd + 2 + 12 * k: ifd + 14 + 12 * k]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            value = entry[8:10] if kind == 3 else entry[8:12]
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value)[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _pnm(data: bytes):
    tokens, i = [], 2
    while len(tokens) < 2 and i < min(len(data), 4096):
        c = data[i:i + 1]
        if c == b"#":
            i = data.index(b"\n", i)
        elif c.isdigit():
            j = i
            while data[j:j + 1].isdigit():
                j += 1
            tokens.append(int(data[i:j]))
            i = j
        else:
            i += 1
    return tuple(tokens) if len(tokens) == 2 else None


_PARSERS = [
    (b"\x89PNG\r\n\x1a\n", _png),
    (b"\xff\xd8", _jpeg),
    (b"GIF87a", _gif), (b"GIF89a", _gif),
    (b"BM", _bmp),
    (b"II*\x00", _tiff), (b"MM\x00*", _tiff),
] + [(b"P%d" % k, _pnm) for k in range(1, 7)]
