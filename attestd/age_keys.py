"""Reading the admin's age public key (``age1...``), which evidence is encrypted to; here,
below the configuration, so that a wrong key stops the node when its config is read."""

from __future__ import annotations

import pyrage
from pyrage import x25519


def parse_recipient(text: str) -> x25519.Recipient:
    """The age X25519 public key ``text`` (``age1...``); ValueError saying what is wrong."""
    text = text.strip()
    if not text.startswith("age1"):
        raise ValueError("must be an age public key, starting age1 (make one with "
                         "`age-keygen -o admin-key.txt` on the admin's machine)")
    try:
        return x25519.Recipient.from_str(text)
    except pyrage.RecipientError as exc:
        raise ValueError(f"not a valid age public key ({exc})") from None
