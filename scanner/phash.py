"""imagehash's 64-bit pHash of a picture and of its mirrored and rotated copies.

Pure computation; no I/O.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.fftpack
from PIL import Image

_SIDE = 32  # imagehash: hash_size 8 * highfreq_factor 4
_LOW = 8
# (-1)**u for frequency u: mirroring a line multiplies its DCT-II coefficient u by it.
_SIGN = np.array([(-1.0) ** u for u in range(_LOW)])


def phash_of(image: Image.Image, *, dihedral: bool = False) -> tuple[str, tuple[str, ...]]:
    """(pHash, pHashes of the picture turned as scanner.pdq.DIHEDRAL[1:] when asked),
    bit for bit what ``str(imagehash.phash(image))`` gives.

    Turning a picture permutes and negates its DCT coefficients exactly, so the variants
    come from one DCT, in the same order as the PDQ variants.
    """
    small = image.convert("L").resize((_SIDE, _SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    low: npt.NDArray[np.float64] = dct[:_LOW, :_LOW]
    if not dihedral:
        return _bits(low), ()
    rows, cols = _SIGN[:, None], _SIGN[None, :]
    flip_x = low * rows  # mirrored top to bottom
    flip_y = low * cols  # mirrored left to right
    turned = (flip_y.T,  # rotated 90 degrees anticlockwise
              low * rows * cols,  # 180
              flip_x.T,  # 270
              flip_x, flip_y,
              low.T,  # transposed
              (low * rows * cols).T)  # transposed across the other diagonal
    return _bits(low), tuple(_bits(t) for t in turned)


def _bits(low: npt.NDArray[np.float64]) -> str:
    # imagehash: bits above the mean-of-middle median, row-major, first bit most significant.
    return np.packbits(low.ravel() > np.median(low)).tobytes().hex()
