"""Sealed secrets stay Fernet tokens: rows sealed before (by Fernet itself)
open, and what Box seals opens with any Fernet holding the key."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.fernet import Fernet, InvalidToken

from ujumbe.services.sealing import Box


def fernet_of(secret: str, purpose: str) -> Fernet:
    key = hmac.new(secret.encode(), f"ujumbe/{purpose}/v1".encode(), hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def test_sealed_texts_are_fernet_tokens_both_ways() -> None:
    box, fernet = Box("server secret", "texts"), fernet_of("server secret", "texts")
    for text in ["", "a", "Your code is 123456", "x" * 15, "x" * 16, "x" * 17, "Nambari yako ni ५६७८ ✓" * 9]:
        token = box.seal(text)
        assert fernet.decrypt(token.encode()).decode() == text
        assert box.open(token) == text
        assert box.open(fernet.encrypt(text.encode()).decode()) == text  # sealed before
    assert box.seal("same") != box.seal("same")  # a fresh IV each time
    with pytest.raises(InvalidToken):
        Box("another secret", "texts").open(box.seal("secret"))
