"""Signatures (signatures.py). Svix's published signature test vectors (three messages, three large payloads,
negatives, decoys, a v1a entry) through the svix library, raw HMAC-SHA256 and the service's SignatureVerifier;
and the helpers everything here signs with."""

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import NamedTuple

import pytest
from svix.webhooks import Webhook, WebhookVerificationError

from intake import MESSAGE_ID_PATTERN
from signatures import InvalidSignature, SignatureVerifier, new_message_id, new_secret, signed_headers


class Vector(NamedTuple):
    secret: str
    msg_id: str
    timestamp: int
    payload: str
    signature: str


VECTORS = {
    "A": Vector(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        '{"test": 2432232314}',
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    ),
    "B": Vector(
        "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        1649367553,
        '{"email":"test@example.com","username":"test_user"}',
        "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
    ),
    "C": Vector(
        "whsec_plJ3nmyCDGBKInavdOK15jsl",
        "msg_loFOjxBNrRLzqYUf",
        1731705121,
        '{"event_type":"ping","data":{"success":true}}',
        "v1,rAvfW3dJ/X/qxhsaXPOyyCGmRKsaKWcsNccKXlIktD0=",
    ),
}
A = VECTORS["A"]
LARGE = {
    1048576: "v1,txpEUxqWZJ5nteTnymUVa+7C4NHpBeXJ6CsBAW0c3/A=",
    262144: "v1,Mw4Pe2WgApuT7NSqnSq0PQPV9gbLdggCl9B865x5Xh0=",
    262143: "v1,NTItnqyWMoFhk2Bbe5V/BMdcFRWgcSQaTgqLHX7FC7c=",
}
NEGATIVES = {
    "A, last character changed": (A, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="),
    "A, decoy": (A, "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="),
    "B": (VECTORS["B"], "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU="),
}
DECOYS = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
V1A = "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="


def when(vector: Vector) -> datetime:
    return datetime.fromtimestamp(vector.timestamp, UTC)


def raw_hmac(vector: Vector, payload: str | None = None) -> bytes:
    """HMAC-SHA256 of `{id}.{timestamp}.{payload}` keyed with the base64 part of the secret, by hand."""
    key = base64.b64decode(vector.secret.removeprefix("whsec_"))
    content = f"{vector.msg_id}.{vector.timestamp}.{vector.payload if payload is None else payload}"
    return hmac.new(key, content.encode(), hashlib.sha256).digest()


def headers_for(vector: Vector, signature: str, timestamp: int | None = None) -> dict[str, str]:
    return {
        "svix-id": vector.msg_id,
        "svix-timestamp": str(vector.timestamp if timestamp is None else timestamp),
        "svix-signature": signature,
    }


def verifies(secrets: list[str], body: bytes, headers: dict[str, str]) -> bool:
    """Whether the service's verifier accepts the delivery."""
    try:
        SignatureVerifier(secrets).verify(body, headers)
    except InvalidSignature:
        return False
    return True


def fresh(vector: Vector) -> tuple[int, str]:
    """The current timestamp and the library's signature of the vector's payload at that time."""
    now = datetime.now(UTC)
    return int(now.timestamp()), Webhook(vector.secret).sign(vector.msg_id, now, vector.payload)


@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_sign_reproduces_the_official_signature(vector):
    """`Webhook.sign` gives exactly the published signature of each vector."""
    assert Webhook(vector.secret).sign(vector.msg_id, when(vector), vector.payload) == vector.signature


@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_raw_hmac_reproduces_the_official_signature(vector):
    """The published signature is base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")) with the decoded key."""
    assert "v1," + base64.b64encode(raw_hmac(vector)).decode() == vector.signature


@pytest.mark.parametrize(("size", "signature"), LARGE.items(), ids=[str(n) for n in LARGE])
def test_large_payload_signatures(size, signature):
    """Payloads of 1 MiB, 262144 and 262143 bytes of `a` sign to the published values, by library and by hand."""
    payload = "a" * size
    assert Webhook(A.secret).sign(A.msg_id, when(A), payload) == signature
    assert "v1," + base64.b64encode(raw_hmac(A, payload)).decode() == signature


@pytest.mark.parametrize(("vector", "negative"), NEGATIVES.values(), ids=NEGATIVES.keys())
def test_negative_signatures_do_not_match(vector, negative):
    """The published negatives differ from the computed signature under a constant-time comparison."""
    computed = raw_hmac(vector)
    assert not hmac.compare_digest(computed, base64.b64decode(negative.removeprefix("v1,")))
    assert Webhook(vector.secret).sign(vector.msg_id, when(vector), vector.payload) != negative


@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_official_vectors_are_rejected_as_too_old(vector):
    """The vectors' own timestamps are years old: the library and the service refuse them as replays."""
    headers = headers_for(vector, vector.signature)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(vector.secret).verify(vector.payload, headers)
    with pytest.raises(InvalidSignature, match="too old"):
        SignatureVerifier([vector.secret]).verify(vector.payload.encode(), headers)


@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_vector_secrets_verify_a_fresh_signature(vector):
    """Each vector's secret (C's is 18 bytes, unpadded) verifies its payload signed at the current time."""
    timestamp, signature = fresh(vector)
    assert verifies([vector.secret], vector.payload.encode(), headers_for(vector, signature, timestamp))


@pytest.mark.parametrize("order", ["decoys first", "decoys last"])
def test_decoys_next_to_a_valid_entry_still_verify(order):
    """A header listing the decoys (a wrong v1, a v2) beside the valid entry verifies: any v1 match wins."""
    timestamp, signature = fresh(A)
    header = f"{DECOYS} {signature}" if order == "decoys first" else f"{signature} {DECOYS}"
    assert verifies([A.secret], A.payload.encode(), headers_for(A, header, timestamp))


@pytest.mark.parametrize("header", [V1A, DECOYS], ids=["v1a only", "decoys only"])
def test_header_without_a_matching_v1_entry_is_rejected(header):
    """With a fresh timestamp, a header holding only v1a or only decoy entries is not authentic."""
    timestamp, _signature = fresh(A)
    with pytest.raises(InvalidSignature, match="No matching signature"):
        SignatureVerifier([A.secret]).verify(A.payload.encode(), headers_for(A, header, timestamp))


def test_v1a_entry_beside_a_valid_v1_entry_is_skipped_not_an_error():
    """An unknown-version entry is skipped, so a valid v1 entry after it still verifies."""
    timestamp, signature = fresh(A)
    assert verifies([A.secret], A.payload.encode(), headers_for(A, f"{V1A} {signature}", timestamp))


@pytest.mark.parametrize("signer", ["A", "B"])
def test_verifier_accepts_any_of_its_secrets(signer):
    """A verifier holding A's and B's secrets accepts a message signed with either; one holding C's does not."""
    vector = VECTORS[signer]
    timestamp, signature = fresh(vector)
    secrets = [A.secret, VECTORS["B"].secret]
    assert verifies(secrets, vector.payload.encode(), headers_for(vector, signature, timestamp))
    assert not verifies([VECTORS["C"].secret], vector.payload.encode(), headers_for(vector, signature, timestamp))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda sig: sig.removeprefix("v1,"),
        lambda sig: sig + ",x",
        lambda sig: "v1,abc",
        lambda sig: f"{DECOYS}  {sig}",
        lambda sig: f"{DECOYS}, {sig}",
    ],
    ids=["no comma", "three parts", "bad base64", "double space", "comma-joined"],
)
def test_malformed_signature_header_is_invalid_signature_not_value_error(mangle):
    """Headers the library answers with ValueError or binascii.Error come out as InvalidSignature."""
    timestamp, signature = fresh(A)
    with pytest.raises(InvalidSignature, match="malformed"):
        SignatureVerifier([A.secret]).verify(A.payload.encode(), headers_for(A, mangle(signature), timestamp))


def test_body_not_utf8_is_invalid_signature_not_unicode_error():
    """A body that is not UTF-8 comes out as InvalidSignature, not UnicodeDecodeError."""
    timestamp, signature = fresh(A)
    with pytest.raises(InvalidSignature, match="UTF-8"):
        SignatureVerifier([A.secret]).verify(b"\xff" + A.payload.encode(), headers_for(A, signature, timestamp))


# The signing helpers (signatures.py) that send-test, the demo, the tests and the bench sign with ---------


@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_signed_headers_at_a_vectors_time_carry_its_official_signature(vector):
    """signed_headers(…, now=) signs as Svix does: at a vector's own time it gives the published signature."""
    headers = signed_headers(vector.secret, vector.payload, vector.msg_id, now=when(vector))
    assert headers == {
        "content-type": "application/json",
        "svix-id": vector.msg_id,
        "svix-timestamp": str(vector.timestamp),
        "svix-signature": vector.signature,
    }


@pytest.mark.parametrize("prefix", ["svix", "webhook"])
def test_signed_headers_verify_now_under_either_prefix(prefix):
    """Headers signed now verify, under Svix's svix-* names or Standard Webhooks' webhook-* names alike."""
    secret, msg_id, body = new_secret(), new_message_id(), b'{"request_id": "67d3f1a95e593173d0a1b2c4"}'
    headers = signed_headers(secret, body, msg_id, prefix=prefix)
    assert (headers[f"{prefix}-id"], headers["content-type"]) == (msg_id, "application/json")
    assert verifies([secret], body, headers)
    assert not verifies([new_secret()], body, headers)


def test_new_secrets_and_message_ids_are_fresh_and_of_svix_shape():
    """new_secret is whsec_ and 32 random bytes in base64; new_message_id a fresh id intake accepts as a key."""
    secrets = {new_secret() for _ in range(3)}
    assert len(secrets) == 3
    assert all(len(base64.b64decode(s.removeprefix("whsec_"), validate=True)) == 32 for s in secrets)
    assert all(s.startswith("whsec_") for s in secrets)
    ids = {new_message_id() for _ in range(3)} | {new_message_id("msg_test_")}
    assert len(ids) == 4
    assert all(MESSAGE_ID_PATTERN.fullmatch(i) and i.startswith("msg_") for i in ids)
    assert sum(i.startswith("msg_test_") for i in ids) == 1
