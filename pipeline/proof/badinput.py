"""Hostile input for testing the stream: messages that look hostile but are valid, and a seeded
fuzzer. The malformed kinds, each with its dead-letter reason, are in :mod:`pipeline.malformed`."""

from __future__ import annotations

import json
import random


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def hostile_but_valid(ident: str, max_bytes: int) -> dict[str, tuple[bytes, bytes]]:
    """kind -> (key, message bytes) that look hostile but are valid after normalisation:
    each must be *stored* (not dead-lettered). The key is ``ident`` but for the 128-character
    id, whose key is that id."""
    long_id = (ident + "x" * 128)[:128]
    msgs = _hostile_values(ident, max_bytes, long_id)
    return {k: ((long_id if k == "id_128_chars" else ident).encode(), v) for k, v in msgs.items()}


def _hostile_values(ident: str, max_bytes: int, long_id: str) -> dict[str, bytes]:
    pad = max_bytes - len(_j({"id": ident, "title": "t", "body": ""}))
    return {
        "surrogate_body": b'{"id": "' + ident.encode() + b'", "title": "t", "body": "x\\udfff y"}',
        "nul_in_body": _j({"id": ident, "title": "t", "body": "a\u0000b\u0001c"}),
        "controls_in_title": _j({"id": ident, "title": "\x07bell \x1b[31mred\u2028", "body": "b"}),
        "zero_width_and_rtl": _j({"id": ident, "title": "\u200b\u202eevil\u202c", "body": "b"}),
        "emoji_4byte": _j({"id": ident, "title": "Markets \U0001f680\U0001f4c9", "body": "b"}),
        "html_heavy": _j(
            {"id": ident, "title": "<b>Big</b> <i>news</i>", "body": "<p>x</p>" * 500}
        ),
        "unclosed_tags": _j({"id": ident, "title": "a < b and c > d", "body": "<div <span"}),
        "exact_size_limit": _j({"id": ident, "title": "t", "body": "a" * pad}),
        "id_128_chars": _j({"id": long_id, "title": "Longest id"}),
        "naive_timestamp": _j({"id": ident, "title": "t", "published_at": "2026-11-30T01:02:03"}),
        "unknown_fields": _j({"id": ident, "title": "t", "extra": {"a": [1, 2.5, None, True]}}),
        "huge_charref": _j({"id": ident, "title": "t", "body": "&#" + "9" * 5000 + "; end"}),
        "metadata_controls": _j(
            {"id": ident, "title": "t", "source": "wire\u0000", "language": "en\u0007"}
        ),
    }


_JUNK_STRINGS = ("\u0000", "\udfff", "\x1b[2J", "<!--", "<script>", "\u202e", "&#0;", "\ufeff")


def _random_json(rng: random.Random, depth: int = 0) -> object:
    pick = rng.randrange(9 if depth < 40 else 6)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.choice([0, -1, 2**63, 10 ** rng.randrange(1, 80)])
    if pick == 3:
        return rng.choice([0.5, 1e308, -1e-308, 3.14])
    if pick in (4, 5):
        return "".join(rng.choice((*_JUNK_STRINGS, "a", " ", "é")) for _ in range(rng.randrange(9)))
    if pick in (6, 7):
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {str(i): _random_json(rng, depth + 1) for i in range(rng.randrange(3))}


def fuzz_message(
    rng: random.Random, ident: str, max_bytes: int, text: str = "Stocks rally on news"
) -> tuple[str, bytes, bytes]:
    """One random mutation of a valid article: (mutation, key, value). The key is ``ident``
    except where the mutation is about the key. Outcomes are not predicted: the worker must
    store it or dead-letter it, never stall or crash."""
    doc: dict[str, object] = {"id": ident, "title": text, "body": text + " " + ident}
    valid = json.dumps(doc).encode()
    key = ident.encode()
    kind = rng.choice(
        [
            "flip_bytes",
            "truncate",
            "insert_bytes",
            "random_field_value",
            "drop_field",
            "random_bytes",
            "size_boundary",
            "junk_strings",
            "other_key",
            "no_key",
        ]
    )
    if kind == "flip_bytes":
        raw = bytearray(valid)
        for _ in range(rng.randrange(1, 9)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return kind, key, bytes(raw)
    if kind == "truncate":
        return kind, key, valid[: rng.randrange(len(valid))]
    if kind == "insert_bytes":
        at = rng.randrange(len(valid) + 1)
        return kind, key, valid[:at] + rng.randbytes(rng.randrange(1, 64)) + valid[at:]
    if kind == "random_field_value":
        name = rng.choice(["id", "title", "body", "source", "url", "published_at", "language", "x"])
        doc[name] = _random_json(rng)
        dumped = json.dumps(doc, ensure_ascii=rng.random() < 0.5)
        return kind, key, dumped.encode("utf-8", "surrogatepass")
    if kind == "drop_field":
        doc.pop(rng.choice(["id", "title", "body"]))
        return kind, key, json.dumps(doc).encode()
    if kind == "random_bytes":
        return kind, key, rng.randbytes(rng.choice([0, 1, 2, 17, 1000, 4096]))
    if kind == "size_boundary":
        base = len(json.dumps({**doc, "body": ""}).encode())
        doc["body"] = "b" * (max_bytes - base + rng.choice([-1, 0, 1]))
        return kind, key, json.dumps(doc).encode()
    if kind == "junk_strings":
        doc["title"] = "".join(rng.choice(_JUNK_STRINGS) for _ in range(rng.randrange(1, 20)))
        return kind, key, json.dumps(doc).encode()
    if kind == "other_key":
        return kind, rng.randbytes(rng.randrange(0, 12)), valid
    return kind, b"", valid  # "no_key": an empty key is not the id
