"""
Server Dialback keys (XEP-0220), generated and checked per XEP-0185.

Pure functions: the secret comes from the state folder and is never logged.
"""

import hashlib
import hmac
import secrets


def generate_secret() -> str:
    """
    Return a new random dialback secret (256 bits, hexadecimal).
    """
    return secrets.token_hex(32)


def dialback_key(
    secret: str, receiving_server: str, originating_server: str, stream_id: str
) -> str:
    """
    Compute the dialback key of XEP-0185 section 2::

        HMAC-SHA256(hex(SHA256(secret)),
                    receiving + ' ' + originating + ' ' + stream id)

    @return: the key in lower-case hexadecimal.
    @rtype: L{str}
    """
    hashed_secret = hashlib.sha256(secret.encode("utf-8")).hexdigest()
    message = " ".join((receiving_server, originating_server, stream_id))
    return hmac.new(
        hashed_secret.encode("ascii"), message.encode("utf-8"), hashlib.sha256
    ).hexdigest()


def check_dialback_key(
    secret: str,
    receiving_server: str,
    originating_server: str,
    stream_id: str,
    key: str | None,
) -> bool:
    """
    Whether C{key} is the key this server would have generated, compared in
    constant time.
    """
    expected = dialback_key(secret, receiving_server, originating_server, stream_id)
    # Compared as bytes: compare_digest refuses non-ASCII text, and a peer
    # may send anything.
    offered = (key or "").strip().lower().encode("utf-8")
    return hmac.compare_digest(expected.encode("ascii"), offered)
