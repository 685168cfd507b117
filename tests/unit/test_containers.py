"""What rides along with a picture (issue 16, item 15): files that are not images under
an image's name, data after a GIF or WebP, archives inside PNG chunks, and JPEG segments
that add up past the metadata limit."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import pytest

from scanner import DecodeLimits, UnreadableImage, hash_image_bytes
from tests.images import animated_gif, encode, jpeg, scene

LIMITS = DecodeLimits()
PDF = (b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
       b"2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n"
       b"%%EOF\n")


def refused(data: bytes, limits: DecodeLimits = LIMITS) -> UnreadableImage:
    with pytest.raises(UnreadableImage) as err:
        hash_image_bytes(data, limits)
    return err.value


def a_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("payload.txt", "hidden " * 50)
    return buf.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_a_pdf_is_unsupported_not_corrupt() -> None:
    err = refused(PDF)
    assert err.kind == "unsupported" and "PDF" in err.reason
    # PDF readers accept a header anywhere in the first kilobyte.
    assert refused(b"junk\n" + PDF).kind == "unsupported"


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_gif_and_webp_with_data_after_their_end_are_polyglots(fmt: str) -> None:
    pic = animated_gif(5, frames=3) if fmt == "GIF" else encode(scene(5, (160, 120)), "WEBP")
    hash_image_bytes(pic, LIMITS)  # fine on its own
    err = refused(pic + b"hidden payload; " * 64)
    assert err.kind == "polyglot" and "after the end" in err.reason


def test_a_zip_inside_a_private_png_chunk_is_a_polyglot() -> None:
    png = encode(scene(6, (160, 120)), "PNG")
    at = png.index(b"IDAT") - 4  # before the first IDAT, where no trailer check looks
    hidden = png[:at] + png_chunk(b"prVt", a_zip()) + png[at:]
    hash_image_bytes(png, LIMITS)
    err = refused(hidden)
    assert err.kind == "polyglot" and "ZIP" in err.reason


def test_a_plain_private_png_chunk_is_fine() -> None:
    png = encode(scene(7, (160, 120)), "PNG")
    at = png.index(b"IDAT") - 4
    hash_image_bytes(png[:at] + png_chunk(b"prVt", b"editor settings " * 20) + png[at:], LIMITS)


def test_jpeg_app_segments_count_toward_the_metadata_limit() -> None:
    data = jpeg(8, (160, 120))
    segment = b"\xff\xe3" + struct.pack(">H", 60_002) + b"\x00" * 60_000  # APP3, unparsed by Pillow
    stuffed = data[:2] + segment * 40 + data[2:]  # 2.4 MB of segments
    err = refused(stuffed)
    assert err.kind == "too_large" and "metadata" in err.reason
    hash_image_bytes(data[:2] + segment * 2 + data[2:], LIMITS)  # 120 kB is within the limit
