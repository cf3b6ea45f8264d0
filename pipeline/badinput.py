"""Malformed messages for testing the dead-letter path: each kind with the reason code the
validator must give it. Used by ``newsflow produce --bad-share`` and by the tests."""

from __future__ import annotations

import json

from pipeline.core.records import DeadLetterReason as R


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def bad_messages(ident: str, max_bytes: int) -> dict[str, tuple[bytes, R]]:
    """kind -> (message bytes, expected reason)."""
    return {
        "invalid_json": (b'{"id": "' + ident.encode() + b'", "title": ', R.INVALID_JSON),
        "empty_value": (b"", R.INVALID_JSON),
        "deep_nesting": (b"[" * 100_000 + b"]" * 100_000, R.INVALID_JSON),
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
    }


BAD_KINDS: tuple[str, ...] = tuple(bad_messages("x", 1024))
