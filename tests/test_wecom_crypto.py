"""企业微信 callback crypto against the official sample values (developer.work.weixin.qq.com
"加解密库下载与返回码" samples, as carried by the official WXBizMsgCrypt libraries): the sample
token, EncodingAESKey, corp id and ciphertexts are a test oracle only."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pond.transports.wecom_crypto import (
    CallbackRefused,
    WecomCrypto,
    decode_aes_key,
    fields,
)

TOKEN = "QDG6eK"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CORP_ID = "wx5823bf96d3bd56c7"

VERIFY = {
    "msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
    "timestamp": "1409659589",
    "nonce": "263014780",
    "echostr": (
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
    ),
}
POST_SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
POST_TIMESTAMP = "1409659813"
POST_NONCE = "1372623149"
POST_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qczc"
    "dCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLj"
    "vd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMn"
    "vw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k"
    "22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2Yoy"
    "yH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)
POST_BODY = (
    f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{POST_ENCRYPT}]]>"
    "</Encrypt><AgentID><![CDATA[218]]></AgentID></xml>"
).encode()


def crypto(at: str, receive_id: str = CORP_ID) -> WecomCrypto:
    return WecomCrypto(TOKEN, AES_KEY, receive_id, now=lambda: float(at))


def refused(reason: str) -> pytest.RaisesExc[CallbackRefused]:
    return pytest.raises(CallbackRefused, match=f"^{reason}$")


def test_the_official_url_verification_sample_answers_its_echostr() -> None:
    assert crypto(VERIFY["timestamp"]).verify_url(**VERIFY) == "1616140317555161061"


def test_the_official_message_sample_decrypts_to_its_xml() -> None:
    xml = crypto(POST_TIMESTAMP).decrypt_body(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_BODY)
    got = fields(xml)
    assert got["FromUserName"] == "mycreate"
    assert got["Content"] == "hello"
    assert got["MsgId"] == "4561255354251345929"


def test_a_tampered_signature_is_refused() -> None:
    bad = "0" + POST_SIGNATURE[1:]
    with refused("bad_signature"):
        crypto(POST_TIMESTAMP).decrypt_body(bad, POST_TIMESTAMP, POST_NONCE, POST_BODY)
    # A changed nonce breaks the signature too (it is signed).
    with refused("bad_signature"):
        crypto(POST_TIMESTAMP).decrypt_body(POST_SIGNATURE, POST_TIMESTAMP, "1", POST_BODY)


def test_a_tampered_ciphertext_is_refused_by_its_signature() -> None:
    body = POST_BODY.replace(b"RypE", b"RypF")
    with refused("bad_signature"):
        crypto(POST_TIMESTAMP).decrypt_body(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, body)


def test_a_message_for_another_corp_is_refused() -> None:
    other = crypto(POST_TIMESTAMP, receive_id="ww0000000000000000")
    with refused("wrong_receive_id"):
        other.decrypt_body(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_BODY)


def test_an_old_timestamp_is_refused_even_with_a_good_signature() -> None:
    later = crypto(str(int(POST_TIMESTAMP) + 3600))
    with refused("stale_timestamp"):
        later.decrypt_body(POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE, POST_BODY)
    with refused("stale_timestamp"):
        crypto(str(int(VERIFY["timestamp"]) + 301)).verify_url(**VERIFY)


def test_bad_padding_is_refused_even_when_signed() -> None:
    key = decode_aes_key(AES_KEY)
    # 64 bytes whose last byte (0) is no PKCS#7 pad value.
    plain = b"\x00" * 64
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    encrypted = base64.b64encode(enc.update(plain) + enc.finalize()).decode()
    c = crypto("1700000000")
    signature = c.signature("1700000000", "n", encrypted)
    body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
    with refused("bad_padding"):
        c.decrypt_body(signature, "1700000000", "n", body)


def test_encrypt_then_decrypt_round_trips_with_chinese_text() -> None:
    c = crypto("1700000000")
    message = "<xml><Content><![CDATA[你好，欢迎]]></Content></xml>".encode()
    body = c.encrypt_body(message, "1700000000", "abc")
    got = fields(body)
    assert c.decrypt_body(got["MsgSignature"], "1700000000", "abc", body) == message


def test_a_body_with_a_dtd_is_refused() -> None:
    body = b'<!DOCTYPE x [<!ENTITY a "b">]><xml><Encrypt>&a;</Encrypt></xml>'
    with refused("bad_xml"):
        crypto("1700000000").decrypt_body("x", "1700000000", "n", body)


@pytest.mark.parametrize("key", ["short", "!" * 43, AES_KEY[:-1] + "="])
def test_a_malformed_encoding_aes_key_is_a_value_error(key: str) -> None:
    with pytest.raises(ValueError):
        decode_aes_key(key)
