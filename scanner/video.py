"""Sampling frames from MP4/WebM videos with PyAV (runs inside a decoder worker)."""

from __future__ import annotations

import io
from collections.abc import Iterator

from PIL import Image

from scanner.errors import UnreadableImage

# Only these containers are handed to FFmpeg: it would read almost anything, and every
# demuxer it runs is attack surface.
_CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2": "video/mp4", "matroska,webm": "video/webm"}


# ISO-BMFF brands that are still images (AVIF, HEIF), which Pillow reads.
_IMAGE_BRANDS = {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1",
                 b"msf1", b"jxl "}


def looks_like_video(data: bytes) -> bool:
    """MP4/MOV (an ``ftyp`` box of a video brand) or Matroska/WebM (the EBML magic)."""
    if data[4:8] == b"ftyp":
        return data[8:12] not in _IMAGE_BRANDS
    return data[:4] == b"\x1a\x45\xdf\xa3"


def sample_video(data: bytes, max_frames: int, max_pixels: int
                 ) -> tuple[str, int, int, int, Iterator[Image.Image]]:
    """(media type, width, height, frame count, sampled frames as RGB images).

    Frames are taken at evenly spaced times from the first to the last. Raises
    UnreadableImage for anything that is not a readable MP4/WebM video.
    """
    import av  # imported here: only decoder workers that meet a video pay for it

    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise UnreadableImage("corrupt", f"the video cannot be opened: {exc}") from None
    fmt = container.format.name
    if fmt not in _CONTAINERS:
        container.close()
        raise UnreadableImage("unsupported", f"{fmt} videos are not supported (MP4, WebM)")
    if not container.streams.video:
        container.close()
        raise UnreadableImage("corrupt", "the file has no video stream")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        container.close()
        raise UnreadableImage("corrupt", "the video stream has no frame size")
    if width * height > max_pixels:
        container.close()
        raise UnreadableImage(
            "too_large", f"the video is {width}x{height} = {width * height} pixels a frame, over "
            f"the limit of {max_pixels} (scanner.max_pixels)")
    duration = _duration_s(container, stream)
    frame_count = int(stream.frames or 0) or max(1, round(duration * float(stream.average_rate or 25)))
    times = [duration * i / max(1, max_frames - 1) for i in range(max_frames)] if duration > 0 else [0.0]
    return _CONTAINERS[fmt], width, height, frame_count, _frames_at(container, stream, times)


def _duration_s(container, stream) -> float:  # type: ignore[no-untyped-def]
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000
    return 0.0


def _frames_at(container, stream, times: list[float]) -> Iterator[Image.Image]:  # type: ignore[no-untyped-def]
    import av

    seen = 0
    try:
        for t in sorted(set(times)):
            if t > 0 and stream.time_base is not None:
                container.seek(int(t / stream.time_base), stream=stream, backward=True)
            frame = None
            for packet_frame in container.decode(stream):
                frame = packet_frame
                if frame.time is None or frame.time >= t - 1e-3:
                    break
            if frame is not None:
                seen += 1
                yield frame.to_image().convert("RGB")
    except (av.FFmpegError, ValueError, OSError) as exc:
        if not seen:
            raise UnreadableImage("corrupt", f"the video stream is broken: {exc}") from None
    finally:
        container.close()
    if not seen:
        raise UnreadableImage("corrupt", "no frame of the video could be decoded")
