"""Text cleaning: HTML tags, scripts and entities removed, whitespace normalised. Pure."""

from __future__ import annotations

import html
import re

_DROP_BLOCKS = re.compile(r"<(script|style|noscript)\b[^>]*>.*?</\1\s*>", re.I | re.S)
_TAGS = re.compile(r"<[^>]{0,2000}>")
_COMMENTS = re.compile(r"<!--.*?-->", re.S)
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(raw: str) -> str:
    """Strip markup and normalise whitespace.

    Example:
        >>> clean_text("<p>Stocks&nbsp;<b>rally</b></p>\\n\\n")
        'Stocks rally'
    """
    text = _COMMENTS.sub(" ", raw)
    text = _DROP_BLOCKS.sub(" ", text)
    text = _TAGS.sub(" ", text)
    text = html.unescape(text)
    text = _CONTROL.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def model_text(title: str, body: str) -> str:
    """What the model reads: title and body joined (AG News style)."""
    if title and body:
        return f"{title}. {body}" if not title.endswith((".", "!", "?")) else f"{title} {body}"
    return title or body
