"""QR images of a code: alphanumeric mode (base45 is the QR alphanumeric alphabet), level M.

Rendering in pure Python costs milliseconds, so callers cache images per token and never render
one twice on a hot path.
"""

from __future__ import annotations

__all__ = ["ERROR_CORRECTION", "ImageCache", "QRFormat", "qr_version", "render"]

import io
from collections import OrderedDict
from enum import StrEnum

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M
from qrcode.util import MODE_ALPHA_NUM, QRData

ERROR_CORRECTION = ERROR_CORRECT_M
BOX_SIZE_PX = 8
BORDER_MODULES = 4


class QRFormat(StrEnum):
    """Image formats the display endpoint serves."""

    PNG = "png"
    SVG = "svg"

    @property
    def content_type(self) -> str:
        """The MIME type of the image."""
        return "image/png" if self is QRFormat.PNG else "image/svg+xml"


def _qr(token: str) -> qrcode.QRCode:
    code = qrcode.QRCode(
        error_correction=ERROR_CORRECTION, box_size=BOX_SIZE_PX, border=BORDER_MODULES
    )
    code.add_data(QRData(token, mode=MODE_ALPHA_NUM))
    code.make(fit=True)
    return code


def qr_version(token: str) -> int:
    """The QR version (size) a token needs at level M."""
    return int(_qr(token).version)


def render(token: str, fmt: QRFormat) -> bytes:
    """The QR image of ``token`` in ``fmt``."""
    code = _qr(token)
    buffer = io.BytesIO()
    if fmt is QRFormat.PNG:
        code.make_image().save(buffer)
    else:
        code.make_image(image_factory=qrcode.image.svg.SvgPathImage).save(buffer)
    return buffer.getvalue()


class ImageCache:
    """A bounded LRU of rendered images by (token, format)."""

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._images: OrderedDict[tuple[str, QRFormat], bytes] = OrderedDict()

    def get(self, token: str, fmt: QRFormat) -> bytes | None:
        """A cached image, refreshed as most recently used."""
        image = self._images.get((token, fmt))
        if image is not None:
            self._images.move_to_end((token, fmt))
        return image

    def put(self, token: str, fmt: QRFormat, image: bytes) -> None:
        """Cache an image, evicting the least recently used past capacity."""
        self._images[(token, fmt)] = image
        self._images.move_to_end((token, fmt))
        while len(self._images) > self._capacity:
            self._images.popitem(last=False)

    def __len__(self) -> int:
        return len(self._images)
