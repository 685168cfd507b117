"""What a file holds besides its picture, read from its container structure alone.

Pure functions over the raw bytes, without decoding pixels: a known non-image format under
an image's name, data after the container's end, a file hidden in a PNG chunk, and the size
of a JPEG's APPn and comment segments (Pillow reads only the ones it knows into ``info``).
"""

from __future__ import annotations

import re
import struct

# Bytes after a container's end beyond this are a second file riding along; a few are
# padding some encoders leave.
TRAILER_SLACK = 64

# Magic numbers of files that are not images, by the name an admin reads in a reason.
_NON_IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (or an office document)"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x1f\x8b", "a gzip file"),
    (b"\x7fELF", "a program (ELF)"),
    (b"MZ", "a Windows program"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an office document"),
    (b"%!PS", "a PostScript document"),
    (b"{\\rtf", "an RTF document"),
)
# PDF readers accept the header anywhere in the first kilobyte.
_PDF_HEADER = re.compile(rb"%PDF-[0-9]")
_IMAGE_MAGIC = (b"\xff\xd8", b"\x89PNG", b"GIF8", b"RIFF", b"BM", b"\x00\x00\x00", b"\xff\x0a")

# Files hidden inside a PNG chunk, by their signature.
_EMBEDDED = (
    (re.compile(rb"PK\x03\x04[\x00-\x3f]\x00"), "a ZIP archive"),
    (re.compile(rb"PK\x05\x06"), "a ZIP archive"),
    (re.compile(rb"%PDF-[12]\.[0-9]"), "a PDF document"),
    (re.compile(rb"Rar!\x1a\x07"), "a RAR archive"),
    (re.compile(rb"7z\xbc\xaf\x27\x1c"), "a 7-Zip archive"),
)
# Chunks whose data is compressed or pixels: a signature there is chance, not a file.
_PNG_OPAQUE_CHUNKS = frozenset({b"IDAT", b"fdAT", b"zTXt", b"iTXt", b"iCCP"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def non_image_format(data: bytes) -> str | None:
    """What well-known non-image file ``data`` is (e.g. "a PDF document"), or None."""
    if data.startswith(_IMAGE_MAGIC):
        return None
    if _PDF_HEADER.search(data, 0, 1024):
        return "a PDF document"
    for magic, name in _NON_IMAGE_MAGIC:
        if data.startswith(magic):
            return name
    return None


def hidden_file(data: bytes, fmt: str) -> str | None:
    """What ``data`` (a ``fmt`` image as Pillow names formats) hides besides its picture,
    said for a person (e.g. "300 bytes after the end of the GIF"), or None."""
    if fmt == "PNG":
        return _png_hidden(data)
    end: int | None = None
    if fmt == "GIF":
        end = gif_end(data)
    elif fmt == "WEBP":
        end = webp_end(data)
    elif fmt in ("JPEG", "MPO"):
        at = data.rfind(b"\xff\xd9")
        tail = data[at + 2:] if at >= 0 else b""
        # Some cameras pad with zeros after the end marker.
        if len(tail.rstrip(b"\x00")) > TRAILER_SLACK:
            return f"{len(tail)} bytes after the end of the JPEG"
        return None
    if end is not None and len(data) - end > TRAILER_SLACK:
        return f"{len(data) - end} bytes after the end of the {fmt}"
    return None


def gif_end(data: bytes) -> int | None:
    """Where a GIF's blocks end: after its trailer, or at the first byte that starts no
    block (decoders skip such bytes, so whatever follows is not the picture). None if the
    header is not a GIF's."""
    if len(data) < 13 or not data.startswith(b"GIF8"):
        return None
    pos = 13 + _colour_table_size(data[10])
    n = len(data)
    while pos < n:
        tag = data[pos]
        if tag == 0x3B:  # trailer
            return pos + 1
        if tag == 0x21:  # extension: label, then sub-blocks
            pos = _skip_sub_blocks(data, pos + 2)
        elif tag == 0x2C:  # image: descriptor, local colour table, LZW size, sub-blocks
            if pos + 10 > n:
                return n
            pos += 10 + _colour_table_size(data[pos + 9])
            pos = _skip_sub_blocks(data, pos + 1)
        else:
            return pos
    return n  # no trailer: truncated, which the decoder judges


def webp_end(data: bytes) -> int | None:
    """Where a WebP's RIFF container ends by its own size field (padded to even)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    size = int.from_bytes(data[4:8], "little")
    return 8 + size + (size & 1)


def jpeg_segment_bytes(data: bytes) -> int:
    """Bytes in a JPEG's APPn and COM segments before its image data (EXIF, ICC, XMP,
    Photoshop, comments, and segments no decoder reads)."""
    if not data.startswith(b"\xff\xd8"):
        return 0
    total = 0
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # image data starts, or the image ends
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            total += max(0, length - 2)
        pos += 2 + length
    return total


def _png_hidden(data: bytes) -> str | None:
    if not data.startswith(_PNG_SIGNATURE):
        return None
    pos = len(_PNG_SIGNATURE)
    n = len(data)
    while pos + 12 <= n:
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4:pos + 8]
        body_end = pos + 8 + length
        if body_end + 4 > n:
            return None  # truncated, which the decoder judges
        if kind not in _PNG_OPAQUE_CHUNKS:
            for pattern, name in _EMBEDDED:
                if pattern.search(data, pos + 8, body_end):
                    return f"{name} inside its {kind.decode('latin-1')!r} chunk"
        pos = body_end + 4
        if kind == b"IEND":
            if n - pos > TRAILER_SLACK:
                return f"{n - pos} bytes after the end of the PNG"
            return None
    return None


def _colour_table_size(flags: int) -> int:
    return 3 * (2 << (flags & 7)) if flags & 0x80 else 0


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    n = len(data)
    while pos < n:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos
    return n
