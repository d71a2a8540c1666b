"""Does an image hold a QR code? Decoded with zxing-cpp (the maintained C++ port of ZXing)
on the file the transport delivered; Pillow reads the file (JPEG, PNG, GIF, WebP...).

The answer is True (a QR code was decoded), False (decoded, none found) or None (no file,
an unreadable file, or a file too large to look at): only True is a QR ad, so a tea photo
is never punished for being a photo. Decoding runs in a worker thread (20-200 ms for a
phone photo) and never touches storage."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

log = logging.getLogger("pond.plugins.groups")

MAX_BYTES = 20_000_000  # a phone photo is 1-8 MB; larger is not a chat image
MAX_PIXELS = 40_000_000  # Pillow's decompression-bomb guard, made strict
MAX_SIDE = 2048  # larger images are scaled down first: a QR ad is never that fine-grained


def decode_qr(path: str | Path) -> bool | None:
    import zxingcpp  # imported on first use: most rooms never see an image
    from PIL import Image

    file = Path(path)
    try:
        if not file.is_file() or file.stat().st_size > MAX_BYTES:
            return None
        with Image.open(file) as image:
            if image.width * image.height > MAX_PIXELS:
                return None
            image.draft("L", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a smaller scale, fast
            gray = image.convert("L")
        if max(gray.size) > MAX_SIDE:
            gray.thumbnail((MAX_SIDE, MAX_SIDE))
        qr_only = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
        found = zxingcpp.read_barcodes(gray, formats=qr_only)
    except Exception as error:  # a broken or unsupported file: cannot tell
        log.info("image not checked for a QR code: %s", type(error).__name__)
        return None
    return bool(found)


async def has_qr(path: str) -> bool | None:
    if not path:
        return None
    return await asyncio.to_thread(decode_qr, path)
