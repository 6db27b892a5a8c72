"""`klikit doctor signature`: a match, or the common mistake that explains a mismatch."""

from __future__ import annotations

import json

import pytest

from klikit.signature import sign
from tools.doctor import diagnose

SECRET = "whsec_doctor_5e1f"
BODY = json.dumps(
    {"brand_id": 663, "branch_id": 1062, "orders": [{"id": 7821, "title": "Nasi Goreng Spésial"}]},
    separators=(",", ":"),
    ensure_ascii=False,
).encode("utf-8")
SIGNATURE = sign(SECRET, BODY)


def test_the_raw_bytes_with_the_right_secret_match() -> None:
    diagnosis = diagnose(BODY, SIGNATURE, [SECRET])

    assert diagnosis.matches
    assert diagnosis.fix is None


@pytest.mark.parametrize(
    ("file_bytes", "explanation", "fix"),
    [
        (json.dumps(json.loads(BODY), indent=2, ensure_ascii=False).encode(), "re-serialized after signing", "exact"),
        (json.dumps(json.loads(BODY)).encode(), "re-serialized after signing", "exact bytes"),
        (json.dumps(json.loads(BODY), separators=(",", ":")).encode(), "re-serialized after signing", "exact bytes"),
        (BODY + b"\n", "a trailing newline was added to the body after signing", "byte for byte"),
        (BODY + b"\r\n", "a trailing newline was added to the body after signing", "byte for byte"),
    ],
    ids=["pretty-printed", "spaced-and-unicode-escaped", "unicode-escaped", "newline-added", "crlf-added"],
)
def test_a_changed_body_is_explained(file_bytes: bytes, explanation: str, fix: str) -> None:
    diagnosis = diagnose(file_bytes, SIGNATURE, [SECRET])

    assert not diagnosis.matches
    assert explanation in diagnosis.verdict
    assert diagnosis.fix and fix in diagnosis.fix


def test_a_stripped_newline_and_crlf_line_endings_are_explained() -> None:
    multiline = b'{\n  "orders": []\n}\n'
    signed = sign(SECRET, multiline)

    assert "a trailing newline was stripped" in diagnose(multiline[:-1], signed, [SECRET]).verdict
    crlf = diagnose(multiline.replace(b"\n", b"\r\n"), signed, [SECRET])
    assert "LF line endings were turned into CRLF" in crlf.verdict


@pytest.mark.parametrize(
    ("secret", "explanation"),
    [
        (SECRET + "\n", "your copy of the secret ends in whitespace/newline that the signer's does not"),
        (SECRET.removesuffix("\n"), ""),
    ],
)
def test_a_secret_with_a_trailing_newline_is_explained(secret: str, explanation: str) -> None:
    diagnosis = diagnose(BODY, SIGNATURE, [secret])

    assert diagnosis.matches is (not explanation)
    assert explanation in diagnosis.verdict


def test_the_signers_secret_with_a_newline_is_explained() -> None:
    diagnosis = diagnose(BODY, sign(SECRET + "\n", BODY), [SECRET])

    assert "the signer's secret has a trailing newline that your copy does not" in diagnosis.verdict


@pytest.mark.parametrize(
    ("sent", "named"),
    [
        (SIGNATURE.upper(), "uppercase hex"),
        ("sha256=" + SIGNATURE, "a sha256= prefix"),
        (f" {SIGNATURE}\n", "surrounding whitespace"),
    ],
)
def test_a_badly_formatted_signature_is_explained(sent: str, named: str) -> None:
    diagnosis = diagnose(BODY, sent, [SECRET])

    assert not diagnosis.matches
    assert named in diagnosis.verdict
    assert "lowercase" in (diagnosis.fix or "")


def test_a_rotation_tries_every_active_secret() -> None:
    assert diagnose(BODY, SIGNATURE, ["whsec_new", SECRET]).matches


def test_a_wrong_secret_is_the_remaining_explanation() -> None:
    diagnosis = diagnose(BODY, SIGNATURE, ["whsec_someone_else"])

    assert not diagnosis.matches
    assert "no common mistake explains it" in diagnosis.verdict
    assert "byte for byte" in (diagnosis.fix or "")


def test_something_that_is_not_a_signature_says_so() -> None:
    diagnosis = diagnose(BODY, "t=1700000000,v1=abc", [SECRET])

    assert not diagnosis.matches
    assert "not a hex SHA-256" in diagnosis.verdict
