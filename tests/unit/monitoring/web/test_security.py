"""Password hashing, the login limiter, redirects after login and chart escaping."""

from __future__ import annotations

import pytest

from monitoring.web.charts import bar_pairs, line_chart
from monitoring.web.deps import safe_next
from monitoring.web.security import (
    LoginLimiter,
    hash_password,
    same_token,
    token_digest,
    verify_password,
)


def test_hash_is_salted_and_verifies() -> None:
    a, b = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert a != b and a.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse battery", a)
    assert not verify_password("correct horse batterY", a)
    assert not verify_password("correct horse battery", "md5$abc")
    assert not verify_password("x", "garbage")
    with pytest.raises(ValueError, match="at least"):
        hash_password("short")


def test_limiter_blocks_after_attempts_and_forgets_after_window() -> None:
    limiter = LoginLimiter(attempts=3, window_s=60)
    for t in (0.0, 1.0, 2.0):
        assert limiter.blocked("k", now=t) == 0
        limiter.failed("k", now=t)
    assert limiter.blocked("k", now=3.0) == pytest.approx(57.0)
    assert limiter.blocked("other", now=3.0) == 0
    assert limiter.blocked("k", now=60.5) == 0  # the first failure left the window
    limiter.failed("k", now=61)
    limiter.succeeded("k")
    assert limiter.blocked("k", now=61) == 0


def test_tokens() -> None:
    assert same_token("abc", "abc") and not same_token("abc", "abd")
    assert not same_token("", "") and not same_token(None, "x")
    assert len(token_digest("t")) == 64 and token_digest("t") != "t"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/review", "/review"),
        ("/drift/3?x=1", "/drift/3?x=1"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_only_local_paths_follow_a_login(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_charts_escape_labels_and_leave_gaps() -> None:
    svg = line_chart(
        [("<script>x</script>", "#c33", [0.1, None, 0.3])],
        x_labels=["<b>", "b", "c"],
        thresholds=[("drift", 0.25)],
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&lt;b&gt;" in svg
    assert svg.count("<circle") == 2  # two one-point runs around the gap
    bars = bar_pairs(["a", "b"], ("ref", "#888", [0.5, 0.5]), ("cur", "#d00", [0.9, 0.1]))
    assert bars.count("<rect") == 4


def test_limiter_reserve_is_one_atomic_step() -> None:
    import threading

    limiter = LoginLimiter(attempts=3, window_s=60)
    granted: list[float] = []
    barrier = threading.Barrier(40)

    def attempt() -> None:
        barrier.wait()
        granted.append(limiter.reserve("k"))

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(0.0) == 3 and all(w > 0 for w in granted if w != 0.0)
    limiter.release("k")  # one attempt given back
    assert limiter.reserve("k") == 0.0 and limiter.reserve("k") > 0


def test_non_ascii_tokens_compare_without_error() -> None:
    assert not same_token("jeton-é", "abc") and not same_token("abc", "\ud800")
    assert same_token("ключ", "ключ")
