"""Secrets the server must read back later (not hash), sealed at rest with a
key derived from the server secret: the database alone reveals none of them."""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet


class Box:
    def __init__(self, server_secret: str, purpose: str) -> None:
        key = hmac.new(server_secret.encode(), f"ujumbe/{purpose}/v1".encode(), hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def open(self, token: str) -> str:
        return self._fernet.decrypt(token.encode()).decode()
