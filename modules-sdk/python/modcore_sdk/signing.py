"""Webhook signatures: the Selena scheme and the Standard Webhooks scheme.

Selena:  X-Selena-Signature: sha256=<hex HMAC-SHA256(key = the webhook secret's ASCII,
         message = the exact body bytes)>
Standard Webhooks: webhook-id, webhook-timestamp (unix seconds) and
         webhook-signature: "v1,<base64 HMAC-SHA256(key, id + "." + timestamp + "." + body)>"
         (several space-separated signatures allowed), the key being the base64 after
         "whsec_" in MODCORE_STANDARD_WEBHOOK_SECRET.

Comparisons are constant-time (hmac.compare_digest)."""

import base64
import binascii
import hashlib
import hmac
import time


def _bytes(value):
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def sign_selena(secret, body):
    """The X-Selena-Signature value for body: "sha256=<hex>"."""
    return "sha256=" + hmac.new(_bytes(secret), _bytes(body), hashlib.sha256).hexdigest()


def verify_selena(secret, body, signature):
    """True if signature (the X-Selena-Signature header) signs body with secret.
    False when the secret or the signature is missing."""
    if not secret or not signature:
        return False
    return hmac.compare_digest(_bytes(signature.strip()), _bytes(sign_selena(secret, body)))


def standard_key(standard_secret):
    """The HMAC key of a "whsec_<base64>" secret (bytes), or None if it is malformed."""
    if not standard_secret or not standard_secret.startswith("whsec_"):
        return None
    try:
        return base64.b64decode(standard_secret[len("whsec_"):], validate=True)
    except (binascii.Error, ValueError):
        return None


def sign_standard(standard_secret, msg_id, timestamp, body):
    """The webhook-signature value ("v1,<base64>") for one message."""
    key = standard_key(standard_secret)
    if key is None:
        raise ValueError("a Standard Webhooks secret looks like whsec_<base64>")
    signed = _bytes(f"{msg_id}.{int(timestamp)}.") + _bytes(body)
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify_standard(standard_secret, msg_id, timestamp, signatures, body, tolerance=300,
                    now=None):
    """True if one of the space-separated v1 signatures signs (msg_id, timestamp, body)
    and timestamp is within tolerance seconds of now."""
    key = standard_key(standard_secret)
    if key is None or not msg_id or not timestamp or not signatures:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance:
        return False
    signed = _bytes(f"{msg_id}.{ts}.") + _bytes(body)
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    ok = False
    for item in signatures.split():
        version, _, sig = item.partition(",")
        if version == "v1" and hmac.compare_digest(_bytes(sig), expected):
            ok = True  # no early exit: the time taken does not depend on which one matched
    return ok


def verify_request(headers, body, secret, standard_secret=None, tolerance=300):
    """Verifies a signed request from the core. headers: a mapping with .get() (case as
    sent, or case-insensitive like http.server's). If X-Selena-Signature is present it
    must be valid; otherwise a Standard Webhooks signature is accepted."""
    selena = headers.get("X-Selena-Signature")
    if selena is not None:
        return verify_selena(secret, body, selena)
    if headers.get("webhook-signature") is not None and standard_secret:
        return verify_standard(standard_secret, headers.get("webhook-id"),
                               headers.get("webhook-timestamp"),
                               headers.get("webhook-signature"), body, tolerance)
    return False
