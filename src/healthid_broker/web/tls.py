"""Server-side TLS context (T-20, BSI TR-02102-2).

TLS 1.2 only with ECDHE and AES-GCM suites (TR-02102-2 §3.3.1), TLS 1.3 allowed; no
compression, no renegotiation, server cipher preference. Python's ``ssl`` cannot restrict the
TLS 1.3 suites; OpenSSL's defaults there are AEAD-only. The compliance report's live handshake
check reports what a deployment actually negotiates.
"""

from __future__ import annotations

import ssl

TR_02102_2_TLS12_CIPHERS = ":".join([
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256",
])


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TR_02102_2_TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
