"""The RS256 signing key: created once, kept in the data directory, used for JWTs."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KEY_FILE = Path("keys") / "jwt_private_key.pem"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_bytes(number: int) -> bytes:
    return number.to_bytes((number.bit_length() + 7) // 8, "big")


class SigningKey:
    """An RSA-2048 key that signs session JWTs and is published in the JWKS."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self._private_key = private_key
        self._public_key = private_key.public_key()
        der = self._public_key.public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        self.kid = b64url(hashlib.sha256(der).digest()[:12])

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SigningKey:
        """Load the key from ``data_dir``, generating and saving it the first time."""
        path = data_dir / KEY_FILE
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{path} does not hold an RSA private key")
            return cls(loaded)

        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        os.replace(temporary, path)
        return cls(private_key)

    def jwk(self) -> dict[str, str]:
        numbers = self._public_key.public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": b64url(_int_bytes(numbers.n)),
            "e": b64url(_int_bytes(numbers.e)),
        }

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": "RS256", "kid": self.kid, "typ": "JWT"}
        signing_input = ".".join(
            b64url(json.dumps(part, separators=(",", ":")).encode())
            for part in (header, claims)
        )
        signature = self._private_key.sign(
            signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{b64url(signature)}"

    def verify(self, token: str, audience: str) -> dict[str, Any] | None:
        """The claims of a JWT this key signed for ``audience``, None otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            self._public_key.verify(
                b64url_decode(parts[2]),
                f"{parts[0]}.{parts[1]}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            claims = json.loads(b64url_decode(parts[1]))
        except (InvalidSignature, ValueError):
            return None
        if not isinstance(claims, dict):
            return None
        if not isinstance(claims.get("exp"), int) or claims["exp"] < time.time():
            return None
        if audience not in claims.get("aud", []):
            return None
        return claims
