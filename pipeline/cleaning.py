"""Text cleaning: HTML tags, comments, scripts and entities removed, control characters and
lone surrogates replaced, whitespace normalised. Pure.

Every step is linear in the length of the input: markup is removed by one forward scan
(``str.find`` from a position that only moves forward), never by a backtracking pattern, so
a 256 KiB body of ``<!--`` or ``<<<<`` costs what any 256 KiB body costs.
"""

from __future__ import annotations

import html
import re

# Elements whose content is not text. Their closing tag is searched once, forwards.
_RAW_TEXT = ("script", "style", "noscript")
_MAX_TAG = 2000  # a "<" followed by more than this before ">" is text, not a tag
_SPACE = re.compile(r"\s+")
# A numeric character reference too long to be a code point (html.unescape would convert
# thousands of digits to an int first): replaced before unescaping.
_LONG_CHARREF = re.compile(r"&#(?:[xX][0-9a-fA-F]{8,}|[0-9]{9,});?")
# Invisible format characters (zero-width space, BOM, direction marks): text made only of
# them is empty.
_INVISIBLE = re.compile(r"[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]")
# C0/C1 controls except tab/newline/CR (whitespace, handled below), DEL, and lone surrogates
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _closing(lowered: str, name: str, start: int) -> int:
    """End of ``</name ... >`` at or after ``start`` in ``lowered``; -1 if there is none."""
    at = lowered.find("</" + name, start)
    if at < 0:
        return -1
    end = lowered.find(">", at)
    return -1 if end < 0 else end + 1


def strip_markup(raw: str) -> str:
    """Remove comments, raw-text elements and tags in one forward scan (linear time).

    An unterminated comment or script block drops the rest of the text (as a browser
    would); a ``<`` that does not start a tag is kept as text.
    """
    # ASCII-only lower-casing keeps every index where it was (str.lower may not).
    lowered = raw.translate(_ASCII_LOWER)
    out: list[str] = []
    pos, n = 0, len(raw)
    next_gt = -2  # cached position of the next ">" at or after pos (-1: none left)
    while pos < n:
        lt = raw.find("<", pos)
        if lt < 0:
            out.append(raw[pos:])
            break
        out.append(raw[pos:lt])
        if lowered.startswith("<!--", lt):
            end = raw.find("-->", lt + 4)
            if end < 0:
                break
            out.append(" ")
            pos = end + 3
            continue
        follower = raw[lt + 1 : lt + 2]
        if not (follower.isascii() and (follower.isalpha() or follower in "/!?")):
            out.append("<")
            pos = lt + 1
            continue
        if next_gt != -1 and next_gt < lt:
            next_gt = raw.find(">", lt)
        if next_gt < 0 or next_gt - lt > _MAX_TAG:
            out.append("<")
            pos = lt + 1
            continue
        tag_end = next_gt + 1
        name = lowered[lt + 1 : tag_end].split(None, 1)[0].rstrip(">/") if follower != "/" else ""
        if name in _RAW_TEXT:
            end = _closing(lowered, name, tag_end)
            if end < 0:
                break
            tag_end = end
        out.append(" ")
        pos = tag_end
    return "".join(out)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def clean_text(raw: str) -> str:
    """Strip markup, decode entities, replace control characters and lone surrogates, and
    normalise whitespace.

    Example:
        >>> clean_text("<p>Stocks&nbsp;<b>rally</b></p>\\n\\n")
        'Stocks rally'
    """
    text = html.unescape(_LONG_CHARREF.sub("\ufffd", strip_markup(raw)))
    text = _CONTROL.sub(" ", text)
    text = _SPACE.sub(" ", text).strip()
    return text if _INVISIBLE.sub("", text).strip() else ""


def clean_field(raw: str) -> str:
    """A short metadata field (source, url, language): no markup handling, but no control
    characters or lone surrogates, and no surrounding whitespace."""
    return _CONTROL.sub("", raw).strip()


def model_text(title: str, body: str, *, max_chars: int = 8192) -> str:
    """What the model reads: title and body joined (AG News style), cut to ``max_chars`` so
    the tokenizer's work is bounded whatever the body's length (the model sees at most a few
    hundred tokens anyway)."""
    if title and body:
        joined = f"{title}. {body}" if not title.endswith((".", "!", "?")) else f"{title} {body}"
    else:
        joined = title or body
    return joined[:max_chars]
