"""Deterministic test images that look enough like photos for perceptual hashing."""

from __future__ import annotations

import functools
import io
import os
import random
import struct
import zlib

from PIL import Image, ImageDraw, ImageFilter
from PIL.PngImagePlugin import PngInfo


def scene(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """Shapes over a gradient, blurred: structure perceptual hashes can hold on to."""
    rnd = random.Random(seed)
    w, h = size
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(14):
        x0, y0 = rnd.randrange(w), rnd.randrange(h)
        x1, y1 = x0 + rnd.randrange(w // 16, w // 2 + 1), y0 + rnd.randrange(h // 16, h // 2 + 1)
        colour = tuple(rnd.randrange(256) for _ in range(3))
        (draw.ellipse if rnd.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    return img.filter(ImageFilter.GaussianBlur(2))


def encode(img: Image.Image, fmt: str = "JPEG", **kw: object) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        kw.setdefault("quality", 90)
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def jpeg(seed: int, size: tuple[int, int] = (640, 480), quality: int = 90) -> bytes:
    return encode(scene(seed, size), "JPEG", quality=quality)


def reencoded(data: bytes, scale: float = 0.5, quality: int = 55) -> bytes:
    """The commonest evasion: a smaller, lower-quality copy."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    img = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.LANCZOS)
    return encode(img, "JPEG", quality=quality)


def animated_gif(seed: int, frames: int = 5) -> bytes:
    imgs = [scene(seed + i, (200, 150)) for i in range(frames)]
    buf = io.BytesIO()
    imgs[0].save(buf, "GIF", save_all=True, append_images=imgs[1:], duration=80, loop=0)
    return buf.getvalue()


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid, tiny PNG that would need gigabytes to decode (1-bit, all zero)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    parts = [comp.compress(row) for _ in range(height)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts))
            + chunk(b"IEND", b""))


def video(seed: int, fmt: str = "mp4", frames: int = 30, size: tuple[int, int] = (320, 240)) -> bytes:
    """A short H.264 MP4 or VP9 WebM of moving scenes, made with PyAV."""
    import av
    import numpy as np

    codec = {"mp4": "libx264", "webm": "libvpx-vp9"}[fmt]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            img = scene(seed + i // 10, size)
            frame = av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def animation(fmt: str, seed: int = 3, frames: int = 6) -> bytes:
    """An animated GIF, WebP or APNG (fmt "PNG") of moving shapes."""
    imgs = [scene(seed + i, (160, 120)) for i in range(frames)]
    buf = io.BytesIO()
    imgs[0].save(buf, fmt, save_all=True, append_images=imgs[1:], duration=80, loop=0)
    return buf.getvalue()


def gif_with_frames(n: int) -> bytes:
    """A GIF with ``n`` tiny frames (an animation-count attack)."""
    frames = []
    for i in range(n):
        # Each frame differs (Pillow merges identical consecutive frames).
        f = Image.new("L", (8, 8), 0)
        f.putdata([255 if (i >> b) & 1 else 0 for b in range(14)] + [0] * 50)
        frames.append(f)
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=10)
    return buf.getvalue()


def expensive_gif(seed: int, frames: int, side: int = 1500) -> bytes:
    """A GIF that is small on the wire and slow to decode: one full ``side``² frame, then
    ``frames`` 1-pixel frames, each composited onto the whole canvas by a decoder (issue
    16's attack file: 4 900 frames on 1500², 8+ s to sample 16 frames)."""
    base = Image.new("P", (side, side), 0)
    base.putpalette([0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 255, 0])
    base.putpixel((seed % side, 0), 1)
    buf = io.BytesIO()
    base.save(buf, "GIF", optimize=False)
    head = buf.getvalue()
    assert head.endswith(b"\x00\x3b")  # the last sub-block's end, then the trailer
    out = bytearray(head[:-1])
    gce = b"\x21\xf9\x04\x04\x02\x00\x00\x00"  # do not dispose, 20 ms
    for i in range(frames):
        x, y = (seed * 7919 + i * 31) % side, (i * 17) % side
        # A 1x1 image of colour 1 or 2: LZW (min code size 2) of one pixel.
        pixel = b"\x02\x02\x4c\x01\x00" if i % 2 else b"\x02\x02\x54\x01\x00"
        out += gce + b"\x2c" + struct.pack("<HHHH", x, y, 1, 1) + b"\x00" + pixel
    out += b"\x3b"
    return bytes(out)


@functools.cache
def hostile_corpus() -> dict[str, bytes]:
    """Files that must end unreadable, each with a reason (issue 3's hostile corpus)."""
    import zipfile

    good = jpeg(40, (320, 240))
    png = encode(scene(41, (320, 240)), "PNG")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("hidden.txt", "payload " * 100)
    info = PngInfo()
    info.add_text("comment", "x" * 2_000_000)
    huge_text = io.BytesIO()
    scene(42, (160, 120)).save(huge_text, "PNG", pnginfo=info)
    huge_icc = io.BytesIO()
    scene(43, (160, 120)).save(huge_icc, "JPEG", icc_profile=b"\0" * (3 * 1024 * 1024))
    flipped = bytearray(good)
    for i in range(200, len(flipped), 97):
        flipped[i] ^= 0xFF
    return {
        "empty": b"",
        "truncated": good[: len(good) // 3],
        "bit-flipped": bytes(flipped),
        "png bomb": png_bomb(),
        "gif bomb": gif_bomb(),
        "10 000-frame gif": gif_with_frames(10_000),
        "jpeg + zip": good + archive.getvalue(),
        "png + zip": png + archive.getvalue(),
        "jpeg + pdf": good + b"%PDF-1.7\n1 0 obj<<>>endobj\n%%EOF\n",
        "jpeg with html": good[:20] + b"<script>alert(1)</script>" + good[20:],
        "png + trailing data": png + os.urandom(4096),
        "huge text chunk": huge_text.getvalue(),
        "huge icc profile": huge_icc.getvalue(),
        "broken video": broken_video(),
        "svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    }


def gif_bomb(side: int = 40_000) -> bytes:
    """A GIF whose header claims a huge logical screen."""
    small = io.BytesIO()
    Image.new("P", (4, 4)).save(small, "GIF")
    data = bytearray(small.getvalue())
    data[6:10] = struct.pack("<HH", side, side)
    # The image descriptor's size too, so the frame itself is huge.
    at = data.index(b"\x2c")
    data[at + 5:at + 9] = struct.pack("<HH", side, side)
    return bytes(data)


def broken_video() -> bytes:
    data = bytearray(video(44, "mp4"))
    mid = len(data) // 2
    data[mid:mid + 2048] = os.urandom(2048)
    return bytes(data[: int(len(data) * 0.7)])


HOSTILE = ("empty", "truncated", "bit-flipped", "png bomb", "gif bomb", "10 000-frame gif",
           "jpeg + zip", "png + zip", "jpeg + pdf", "jpeg with html", "png + trailing data",
           "huge text chunk", "huge icc profile", "broken video", "svg")
