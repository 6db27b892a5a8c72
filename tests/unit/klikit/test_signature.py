"""klikit's signature scheme, checked against an independent implementation (openssl dgst -sha256 -hmac)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from klikit.signature import matches_any, sign

VERIFY_PAGE_BODY = b'{"brand_id":1,"branch_id":2,"orders":[{"id":42}]}'
# printf '%s' "$VERIFY_PAGE_BODY" | openssl dgst -sha256 -hmac 'local-dev-secret'
OPENSSL_DIGEST = "b0cc664f6231a7dd393f119af00ed7d0fb8f844bf172038eaea23e91902e75ac"


def test_signature_matches_openssl_for_the_verify_page_example() -> None:
    assert sign("local-dev-secret", VERIFY_PAGE_BODY) == OPENSSL_DIGEST


def test_any_active_secret_verifies_and_others_do_not() -> None:
    signature = sign("new", VERIFY_PAGE_BODY)

    assert matches_any(signature, VERIFY_PAGE_BODY, ["old", "new"])
    assert not matches_any(signature, VERIFY_PAGE_BODY, ["old"])
    assert not matches_any(signature, VERIFY_PAGE_BODY, [])


@given(st.binary(max_size=512), st.text(min_size=1, max_size=40), st.text(max_size=80))
def test_only_the_exact_signature_verifies(body: bytes, secret: str, header: str) -> None:
    expected = sign(secret, body)
    assert matches_any(header, body, [secret]) == (header == expected)  # never raises, even for non-ASCII
    assert matches_any(expected, body, [secret])
