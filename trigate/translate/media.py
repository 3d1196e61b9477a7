"""Facts about inline media the translators need when a format requires a type the source omitted."""

from __future__ import annotations

# Base64 prefixes of the image signatures (PNG, JPEG, GIF, WebP/RIFF).
_IMAGE_PREFIXES = (("iVBOR", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"), ("UklGR", "image/webp"))


def sniff_image_type(data: str) -> str | None:
    """The MIME type of base64 image ``data`` from its first bytes, or None."""
    head = data[:16]
    for prefix, media_type in _IMAGE_PREFIXES:
        if head.startswith(prefix):
            return media_type
    return None
