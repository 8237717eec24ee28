#!/usr/bin/env python3
"""A backend that reads a PROXY protocol header with the independent
`proxy-protocol` package, then one MQTT packet, answers CONNACK, and writes
what it saw as JSON.

Usage: proxy_backend.py PORT OUTFILE
"""

import json
import socket
import sys

from proxyprotocol.detect import ProxyProtocolDetect

port, outfile = int(sys.argv[1]), sys.argv[2]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(1)
srv.settimeout(30)
conn, _ = srv.accept()
conn.settimeout(10)


def read_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


first = read_exact(16)
if first.startswith(b"PROXY "):
    header = first
    while not header.endswith(b"\r\n"):
        header += read_exact(1)
else:
    length = int.from_bytes(first[14:16], "big")
    header = first + read_exact(length)
result = ProxyProtocolDetect().unpack(header)

# One MQTT packet: fixed header, remaining length (varint), body.
fixed = read_exact(1)
mult, remaining, length_bytes = 1, 0, b""
while True:
    b = read_exact(1)
    length_bytes += b
    remaining += (b[0] & 0x7F) * mult
    mult *= 128
    if not b[0] & 0x80:
        break
packet = fixed + length_bytes + read_exact(remaining)
conn.sendall(bytes([0x20, 0x02, 0x00, 0x00]))

tlv = getattr(result, "tlv", None)
ssl = tlv.ssl if tlv is not None else None
out = {
    "header_hex": header.hex(),
    "source": [str(result.source[0]), result.source[1]] if hasattr(result, "source") and isinstance(result.source, tuple) else None,
    "dest": [str(result.dest[0]), result.dest[1]] if hasattr(result, "dest") and isinstance(result.dest, tuple) else None,
    "authority": tlv.authority if tlv is not None else None,
    "alpn": tlv.alpn.decode() if tlv is not None and tlv.alpn else None,
    "ssl": None if ssl is None else {
        "has_ssl": ssl.has_ssl,
        "has_cert_conn": ssl.has_cert_conn,
        "has_cert_sess": ssl.has_cert_sess,
        "verified": ssl.verified,
        "version": ssl.version,
        "cn": ssl.cn,
        "cipher": ssl.cipher,
        "sig_alg": ssl.sig_alg,
        "key_alg": ssl.key_alg,
    },
    "mqtt_hex": packet.hex(),
}
with open(outfile, "w") as f:
    json.dump(out, f)
conn.close()
