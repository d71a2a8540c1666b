"""The invite poster: a 750x1334 PNG (the phone-screen size WeChat shows full width) with the
brand background (an image, or the brand colour), Chinese lines from the persona, the
customer's code in large letters and a QR code.

Chinese needs a CJK font: the configured one, else the first fontconfig knows for Chinese,
else a few well-known paths. A font that has no glyph for the text (it would print boxes) is
refused like a missing one: FontMissing, and the caller sends the code as text instead."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import qrcode
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

SIZE = (750, 1334)
BRAND = (28, 92, 74)  # tea green
PAPER = (250, 246, 238)
KNOWN_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
)
PROBE = "邀请码好友"


class FontMissing(Exception):
    """No usable CJK font; `where` says what was tried (for the operators' alert)."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


class PosterError(Exception):
    """The background image or the output folder is unusable."""


def _fontconfig() -> str:
    if shutil.which("fc-match") is None:
        return ""
    try:
        done = subprocess.run(
            ["fc-match", "-f", "%{file}", ":lang=zh-cn"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def covers(font: ImageFont.FreeTypeFont, text: str) -> bool:
    """True when every character has a glyph of its own (not the font's empty box)."""
    missing = font.getmask("\U0010fffd").getbbox()
    blank = bytes(font.getmask("\U0010fffd"))
    for char in set(text) - set(" \n"):
        mask = font.getmask(char)
        if mask.getbbox() is None or (mask.getbbox() == missing and bytes(mask) == blank):
            return False
    return True


def find_font(configured: str) -> str:
    """The font file to use; raises FontMissing."""
    candidates = [configured] if configured else [_fontconfig(), *KNOWN_FONTS]
    for path in candidates:
        if not path or not Path(path).is_file():
            continue
        try:
            font = ImageFont.truetype(path, 40)
        except OSError:
            continue
        if covers(font, PROBE):
            return path
    raise FontMissing(configured or "fc-match :lang=zh-cn, " + ", ".join(KNOWN_FONTS))


def _qr(payload: str, size: int) -> Image.Image:
    maker = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2)
    maker.add_data(payload)
    maker.make(fit=True)
    image: Image.Image = maker.make_image(fill_color="black", back_color="white").get_image()
    return image.convert("RGB").resize((size, size), Image.Resampling.NEAREST)


def _background(path: str) -> Image.Image:
    if not path:
        image = Image.new("RGB", SIZE, PAPER)
        ImageDraw.Draw(image).rectangle((0, 0, SIZE[0], 360), fill=BRAND)
        return image
    try:
        with Image.open(path) as source:
            return source.convert("RGB").resize(SIZE)
    except (OSError, ValueError) as error:
        raise PosterError(f"{path}: {error}") from None


def _centered(
    draw: ImageDraw.ImageDraw,
    y: int,
    text: str,
    font: ImageFont.FreeTypeFont,
    fill: tuple[int, int, int],
) -> int:
    box = [int(v) for v in draw.textbbox((0, 0), text, font=font)]
    width, height = box[2] - box[0], box[3] - box[1]
    draw.text(((SIZE[0] - width) // 2 - box[0], y - box[1]), text, font=font, fill=fill)
    return y + int(height)


def render(
    out: Path,
    *,
    code: str,
    lines: list[str],
    qr_payload: str,
    font_path: str,
    background: str = "",
    meta: dict[str, str] | None = None,
) -> Path:
    """Write the poster to `out` (atomically) and return it. Raises FontMissing when the
    font cannot draw the lines, PosterError for an unusable background or folder."""
    title_font = ImageFont.truetype(font_path, 56)
    body_font = ImageFont.truetype(font_path, 34)
    code_font = ImageFont.truetype(font_path, 96)
    if not covers(body_font, "".join(lines)):
        raise FontMissing(font_path)
    image = _background(background)
    draw = ImageDraw.Draw(image)
    title, *rest = lines or [""]
    y = _centered(draw, 120, title, title_font, (255, 255, 255) if not background else BRAND)
    y = max(y + 40, 400)
    for line in rest:
        y = _centered(draw, y, line, body_font, (40, 40, 40)) + 22
    y = _centered(draw, y + 30, code, code_font, BRAND) + 50
    qr_size = 360
    top = min(y, SIZE[1] - qr_size - 60)
    image.paste(_qr(qr_payload, qr_size), ((SIZE[0] - qr_size) // 2, top))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            info = PngImagePlugin.PngInfo()
            for key, value in (meta or {}).items():
                info.add_text(key, value)
            image.save(handle, format="PNG", pnginfo=info)
        os.replace(tmp, out)
    except OSError as error:
        raise PosterError(f"{out}: {error}") from None
    return out
