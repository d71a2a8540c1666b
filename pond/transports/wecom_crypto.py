"""企业微信 callback crypto: URL verification, decryption and encryption of callback bodies.

The scheme (developer.work.weixin.qq.com, "加解密方案说明"): the 43-character EncodingAESKey
is base64 of a 32-byte AES-256 key; the IV is the key's first 16 bytes; the plaintext is
16 random bytes + a 4-byte big-endian length + the message + the receive id (the corp id for
a self-built app), padded PKCS#7-style to a multiple of 32 bytes (not 16: WeCom's own
choice); msg_signature = SHA1 over the sorted strings token, timestamp, nonce, ciphertext.

Everything refused raises CallbackRefused with a short reason code (never the body, the key
or the token): the endpoint answers 403 and logs the code."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32  # WeCom pads to 32 bytes, not to the AES block size


class CallbackRefused(Exception):
    """A callback that must not be acted on; `reason` is log-safe."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_aes_key(encoding_aes_key: str) -> bytes:
    """The 43-character EncodingAESKey -> 32 key bytes; ValueError when it is not one."""
    text = encoding_aes_key.strip()
    if len(text) != 43:
        raise ValueError("EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(text + "=", validate=True)
    except binascii.Error:
        raise ValueError("EncodingAESKey is not base64") from None
    if len(key) != 32:
        raise ValueError("EncodingAESKey does not decode to 32 bytes")
    return key


def pad(data: bytes) -> bytes:
    n = BLOCK - len(data) % BLOCK
    return data + bytes([n]) * n


def unpad(data: bytes) -> bytes:
    if not data:
        raise CallbackRefused("bad_padding")
    n = data[-1]
    if n < 1 or n > BLOCK or n > len(data) or data[-n:] != bytes([n]) * n:
        raise CallbackRefused("bad_padding")
    return data[:-n]


class WecomCrypto:
    def __init__(
        self,
        token: str,
        encoding_aes_key: str,
        receive_id: str,
        *,
        max_age_s: float = 300.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._token = token
        self._key = decode_aes_key(encoding_aes_key)
        self.receive_id = receive_id
        # WeCom retries a callback 3 times within seconds; a much older one is a replay.
        self.max_age_s = max_age_s
        self._now = now

    # -- signatures ------------------------------------------------------------------------
    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        parts = sorted([self._token, timestamp, nonce, encrypted])
        return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()

    def _check(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        expected = self.signature(timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected, msg_signature.strip().lower()):
            raise CallbackRefused("bad_signature")
        try:
            sent = float(timestamp)
        except ValueError:
            raise CallbackRefused("bad_timestamp") from None
        if abs(self._now() - sent) > self.max_age_s:
            raise CallbackRefused("stale_timestamp")

    # -- the AES layer ---------------------------------------------------------------------
    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def decrypt_text(self, encrypted: str) -> bytes:
        """Ciphertext (base64) -> the message bytes, after padding and receive-id checks."""
        try:
            raw = base64.b64decode(encrypted, validate=True)
        except binascii.Error:
            raise CallbackRefused("bad_base64") from None
        if not raw or len(raw) % 16:
            raise CallbackRefused("bad_length")
        decryptor = self._cipher().decryptor()
        plain = unpad(decryptor.update(raw) + decryptor.finalize())
        if len(plain) < 20:
            raise CallbackRefused("bad_length")
        (size,) = struct.unpack(">I", plain[16:20])
        if 20 + size > len(plain):
            raise CallbackRefused("bad_length")
        message, receive_id = plain[20 : 20 + size], plain[20 + size :]
        if not hmac.compare_digest(receive_id, self.receive_id.encode("utf-8")):
            raise CallbackRefused("wrong_receive_id")
        return message

    def encrypt_text(self, message: bytes, random16: bytes | None = None) -> str:
        prefix = random16 if random16 is not None else os.urandom(16)
        plain = prefix + struct.pack(">I", len(message)) + message + self.receive_id.encode()
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(pad(plain)) + encryptor.finalize()).decode()

    # -- the callback's two requests ---------------------------------------------------------
    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """GET verification: the decrypted echostr, to be answered as the body."""
        self._check(msg_signature, timestamp, nonce, echostr)
        return self.decrypt_text(echostr).decode("utf-8")

    def decrypt_body(self, msg_signature: str, timestamp: str, nonce: str, body: bytes) -> bytes:
        """POST: the XML body with <Encrypt> -> the decrypted XML message."""
        encrypted = encrypt_field(body)
        self._check(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt_text(encrypted)

    def encrypt_body(self, message: bytes, timestamp: str, nonce: str) -> bytes:
        """A passive reply (or, in tests, a callback as WeCom would send it)."""
        encrypted = self.encrypt_text(message)
        signature = self.signature(timestamp, nonce, encrypted)
        return (
            f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{signature}]]></MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>"
        ).encode()


def parse_xml(body: bytes) -> ET.Element:
    """WeCom never sends a DTD; one here is an attack (entity expansion), so it is refused."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise CallbackRefused("bad_xml")
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        raise CallbackRefused("bad_xml") from None


def encrypt_field(body: bytes) -> str:
    node = parse_xml(body).find("Encrypt")
    if node is None or not (node.text or "").strip():
        raise CallbackRefused("no_encrypt")
    return (node.text or "").strip()


def fields(xml: bytes) -> dict[str, str]:
    """A decrypted callback's top-level fields (nested ones flattened by tag name, first wins)."""
    root = parse_xml(xml)
    out: dict[str, str] = {}
    for node in root.iter():
        if node is root or node.tag in out:
            continue
        out[node.tag] = (node.text or "").strip()
    return out
