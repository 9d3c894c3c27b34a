"""Rebuild the LDAP seed corpus (tests/fuzz/corpus/ldap/) from a private slapd.

    .venv/bin/python -m tests.fuzz.capture

Each file is one LDAPMessage exactly as slapd sent it (the answers the gateway's decoder
meets: bind results, entries, search done with and without a matched DN, extended
responses), plus a few the encoder builds and a handful of hand-made ones for the branches
slapd does not take here (controls, serverSaslCreds, a notice of disconnection).
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from bridge.ldap import protocol as p
from tests.ldap.slapd import (
    BASE_DN,
    GROUPS_DN,
    PEOPLE_DN,
    SERVICE_DN,
    SERVICE_PASSWORD,
    USERS,
    Slapd,
)

CORPUS = Path(__file__).parent / "corpus" / "ldap"


def frames(data: bytes) -> list[bytes]:
    """Split a stream into whole LDAPMessages (outer header included)."""
    out, pos = [], 0
    while pos < len(data):
        length, hdr = data[pos + 1], 2
        if length & 0x80:
            k = length & 0x7F
            length, hdr = int.from_bytes(data[pos + 2 : pos + 2 + k], "big"), 2 + k
        out.append(data[pos : pos + hdr + length])
        pos += hdr + length
    return out


def exchange(sock: socket.socket, request: bytes, last_op: int) -> list[bytes]:
    """Send one request; read until a message with `last_op` arrives."""
    sock.sendall(request)
    decoder = p.Decoder()
    raw = b""
    while True:
        chunk = sock.recv(65536)
        assert chunk, "slapd closed the connection"
        raw += chunk
        if any(m.op == last_op for m in decoder.feed(chunk)) and not decoder.buffered:
            return frames(raw)


def captured(ldap: Slapd) -> dict[str, bytes]:
    alice = USERS["alice"]
    out: dict[str, bytes] = {}
    with socket.create_connection(("127.0.0.1", ldap.port), timeout=5) as s:
        def keep(name: str, request: bytes, last_op: int) -> None:
            for i, frame in enumerate(exchange(s, request, last_op)):
                out[f"slapd-{name}-{i}"] = frame

        keep("bind-wrong", p.encode_bind_request(1, alice.dn, "wrong"), p.BIND_RESPONSE)
        keep("bind-ok", p.encode_bind_request(2, alice.dn, alice.password or ""),
             p.BIND_RESPONSE)
        keep("whoami", p.encode_extended_request(3, p.WHOAMI_OID), p.EXTENDED_RESPONSE)
        keep("unknown-extended", p.encode_extended_request(4, "1.2.3.4", b"x"),
             p.EXTENDED_RESPONSE)
        keep("bind-service", p.encode_bind_request(5, SERVICE_DN, SERVICE_PASSWORD),
             p.BIND_RESPONSE)
        keep("search-user", p.encode_search_request(
            6, PEOPLE_DN, 2, "(uid=erin)", ["cn", "telephoneNumber", "mail", "labeledURI"]),
            p.SEARCH_RESULT_DONE)
        keep("search-groups", p.encode_search_request(7, GROUPS_DN, 1, "(cn=voip)", ["member"]),
             p.SEARCH_RESULT_DONE)
        keep("search-twins", p.encode_search_request(
            8, BASE_DN, 2, "(mail=twins@example.org)", ["uid"]), p.SEARCH_RESULT_DONE)
        keep("search-missing-base", p.encode_search_request(
            9, f"ou=nowhere,{BASE_DN}", 2, "(uid=*)", []), p.SEARCH_RESULT_DONE)
        keep("search-special-dn", p.encode_search_request(
            10, PEOPLE_DN, 1, "(|(uid=#ops+dev,team=1)(uid=jsmith)(uid=zo\\c3\\ab))",
            ["cn", "uid", "mail"]), p.SEARCH_RESULT_DONE)
        keep("starttls", p.encode_starttls_request(11), p.EXTENDED_RESPONSE)
    return out


def hand_made() -> dict[str, bytes]:
    def msg(body: bytes) -> bytes:
        return p._tlv(0x30, body)

    result = b"\x0a\x01\x00\x04\x00\x04\x00"
    control = p._tlv(0xA0, p._tlv(0x30, p._tlv(0x04, b"1.2.840.113556.1.4.319")))
    return {
        "made-bind-with-controls": msg(b"\x02\x01\x01" + p._tlv(0x61, result) + control),
        "made-bind-sasl-creds": msg(b"\x02\x01\x01" + p._tlv(0x61, result + b"\x87\x02ok")),
        "made-referral": msg(b"\x02\x01\x02" + p._tlv(
            0x65, b"\x0a\x01\x0a\x04\x00\x04\x00" + p._tlv(
                0xA3, p._tlv(0x04, b"ldap://other.example.org/")))),
        "made-search-reference": msg(b"\x02\x01\x03" + p._tlv(
            0x73, p._tlv(0x04, b"ldap://other.example.org/dc=x"))),
        "made-intermediate": msg(b"\x02\x01\x04" + p._tlv(0x79, b"")),
        "made-notice-of-disconnection": msg(b"\x02\x01\x00" + p._tlv(
            0x78, b"\x0a\x01\x34\x04\x00\x04\x08shutdown"
            + p._tlv(0x8A, p.NOTICE_OF_DISCONNECTION_OID.encode()))),
        "made-long-form-lengths": msg(b"\x02\x04\x00\x00\x00\x05" + b"\x61\x84\x00\x00\x00\x07"
                                      + result),
        "encoder-bind-request": p.encode_bind_request(1, "cn=x", "pw"),
        "encoder-search-request": p.encode_search_request(
            2, BASE_DN, 2, "(&(uid=a*b)(!(cn=x))(|(mail=*)(sn~=y)))", ["cn"]),
        "encoder-unbind": p.encode_unbind_request(3),
    }


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ldap = Slapd(Path(tmp))
        ldap.start()
        try:
            seeds = {**captured(ldap), **hand_made()}
        finally:
            ldap.stop()
    for old in CORPUS.glob("*.ber"):
        old.unlink()
    for name, data in seeds.items():
        (CORPUS / f"{name}.ber").write_bytes(data)
    print(f"{len(seeds)} seeds in {CORPUS}")


if __name__ == "__main__":
    main()
