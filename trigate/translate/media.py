"""Facts about inline media the translators need when a format requires a type the source omitted."""

from __future__ import annotations

# Base64 prefixes of the image signatures (PNG, JPEG, GIF, WebP/RIFF).
_IMAGE_PREFIXES = (("iVBOR", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"), ("UklGR", "image/webp"))
# Non-standard spellings clients send (file-extension habit) that Anthropic, Bedrock and Gemini refuse.
_IMAGE_ALIASES = {"image/jpg": "image/jpeg"}


def sniff_image_type(data: str) -> str | None:
    """The MIME type of base64 image ``data`` from its first bytes, or None."""
    head = data[:16]
    for prefix, media_type in _IMAGE_PREFIXES:
        if head.startswith(prefix):
            return media_type
    return None


def image_type(media_type: str | None, data: str | None = None) -> str | None:
    """The MIME type to send for an image: ``media_type`` lower-cased, with aliases such as ``image/jpg``
    written the standard way; when it is absent or not an image type (``application/octet-stream``), the
    type sniffed from base64 ``data``; failing both, ``media_type`` as given (lower-cased) or None."""
    mt = media_type.lower() if media_type else None
    if mt is not None and mt.startswith("image/"):
        return _IMAGE_ALIASES.get(mt, mt)
    sniffed = sniff_image_type(data) if data else None
    return sniffed or mt
