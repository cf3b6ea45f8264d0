"""Malformed article messages, each kind with the reason code the validator must give it.
`newsflow produce --bad-share` mixes them into a stream; the tests and the fault campaign
(:mod:`pipeline.proof`) send every kind."""

from __future__ import annotations

import json

from pipeline.core.records import DeadLetterReason as R


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def bad_messages(ident: str, max_bytes: int) -> dict[str, tuple[bytes, R]]:
    """kind -> (message bytes, expected reason). Every kind is meant to be sent with the key
    ``ident`` (the dead letter is found by it)."""
    deep_object = "[" * 40 + "]" * 40
    return {
        "invalid_json": (b'{"id": "' + ident.encode() + b'", "title": ', R.INVALID_JSON),
        "empty_value": (b"", R.INVALID_JSON),
        "deep_nesting": (b"[" * 100_000 + b"]" * 100_000, R.TOO_DEEP),
        "not_object": (_j([ident, "a title"]), R.NOT_OBJECT),
        "missing_id": (_j({"title": "No id here", "body": "text"}), R.MISSING_ID),
        "null_id": (_j({"id": None, "title": "Null id"}), R.MISSING_ID),
        "long_id": (_j({"id": "x" * 129, "title": "Over-long id"}), R.INVALID_ID),
        "number_id": (_j({"id": 12345, "title": "Numeric id"}), R.INVALID_ID),
        "empty_text": (_j({"id": ident, "title": "<p> </p>", "body": " &nbsp; "}), R.EMPTY_TEXT),
        "no_text": (_j({"id": ident}), R.EMPTY_TEXT),
        "wrong_type": (_j({"id": ident, "title": 42, "body": "text"}), R.WRONG_TYPE),
        "wrong_type_list": (_j({"id": ident, "body": ["a", "b"]}), R.WRONG_TYPE),
        "bad_timestamp": (
            _j({"id": ident, "title": "t", "published_at": "yesterday"}),
            R.INVALID_TIMESTAMP,
        ),
        "oversize": (_j({"id": ident, "title": "big", "body": "a" * (max_bytes + 1)}), R.OVERSIZE),
        "invalid_utf8": (
            b'{"id": "' + ident.encode() + b'", "title": "\xff\xfe caf\xe9"}',
            R.INVALID_UTF8,
        ),
        # found by attacking a running worker from outside (kcat), not from a list
        "nul_in_id": (_j({"id": ident + "\u0000", "title": "t", "body": "b"}), R.INVALID_ID),
        "control_in_id": (_j({"id": ident + "\x1b[2J", "title": "t"}), R.INVALID_ID),
        "surrogate_id": (
            b'{"id": "' + ident.encode() + b'\\udfff", "title": "t"}',
            R.INVALID_ID,
        ),
        "empty_id": (_j({"id": "", "title": "Empty id"}), R.INVALID_ID),
        "control_bytes": (b"\x01" * min(200_000, max_bytes), R.INVALID_JSON),
        "huge_integer": (
            b'{"id": "' + ident.encode() + b'", "title": "t", "n": ' + b"9" * 5000 + b"}",
            R.INVALID_NUMBER,
        ),
        "huge_float": (
            b'{"id": "' + ident.encode() + b'", "title": "t", "x": 1e999}',
            R.INVALID_NUMBER,
        ),
        "nan_number": (
            b'{"id": "' + ident.encode() + b'", "title": "t", "x": NaN}',
            R.INVALID_NUMBER,
        ),
        "deep_object": (
            b'{"id": "' + ident.encode() + b'", "title": "t", "x": ' + deep_object.encode() + b"}",
            R.TOO_DEEP,
        ),
        "comment_bomb": (
            _j({"id": ident, "body": "<!--" * ((max_bytes - 64) // 4)}),
            R.EMPTY_TEXT,
        ),
        "script_only": (
            _j({"id": ident, "title": "<script>alert(1)</script>", "body": "<style>x</style>"}),
            R.EMPTY_TEXT,
        ),
        "utf8_bom": (b"\xef\xbb\xbf" + _j({"id": ident, "title": "t"}), R.INVALID_JSON),
        "trailing_garbage": (_j({"id": ident, "title": "t"}) + b" }{", R.INVALID_JSON),
        "json_null": (b"null", R.NOT_OBJECT),
        "json_string": (_j(ident), R.NOT_OBJECT),
        "id_overridden": (  # a repeated "id": JSON keeps the last, which is not the key
            b'{"id": "' + ident.encode() + b'", "title": "t", "id": "' + ident.encode() + b'-x"}',
            R.KEY_MISMATCH,
        ),
        "key_mismatch": (
            _j({"id": ident + "-other", "title": "Claims another id"}),
            R.KEY_MISMATCH,
        ),
        "timestamp_overflow": (
            _j({"id": ident, "title": "t", "published_at": "0001-01-01T00:00:00+23:59"}),
            R.INVALID_TIMESTAMP,
        ),
        "numeric_timestamp": (
            _j({"id": ident, "title": "t", "published_at": -62135596800}),
            R.INVALID_TIMESTAMP,
        ),
        "invisible_text": (
            _j({"id": ident, "title": "\u200b \ufeff", "body": "\u2060"}),
            R.EMPTY_TEXT,
        ),
        "url_too_long": (
            _j({"id": ident, "title": "t", "url": "http://x/" + "a" * 3000}),
            R.WRONG_TYPE,
        ),
    }


BAD_KINDS: tuple[str, ...] = tuple(bad_messages("x", 1024))
