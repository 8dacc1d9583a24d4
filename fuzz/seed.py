#!/usr/bin/env python3
"""Write the seed corpora (fuzz/corpus/<target>/seed-*) from the test vectors of the
decoders' unit tests (src/backplane/*.rs), docs/backplane.md and docs/client-contract.md.
Run from anywhere; the files are committed, libFuzzer adds its own next to them."""
import base64, hashlib, hmac, json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))


def mp(v):
    """A minimal msgpack encoder (what the vectors need)."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if 0 <= v < 2**32:
            return b"\xce" + struct.pack(">I", v)
        return b"\xd3" + struct.pack(">q", v) if v < 0 else b"\xcf" + struct.pack(">Q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        return bytes([0x80 | len(v)]) + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


packet = {"type": 2, "data": ["update", {"x": 1}], "nsp": "/"}
opts = {"rooms": ["project_one"], "flags": {}, "except": []}
# docs/backplane.md's example, byte for byte.
write("wire", "docs-example", bytes.fromhex(
    "93a7656d697474657283a47479706502a46461746192a675706461746581a17801a36e7370a12f83a5726f6f6d7391ab70726f6a6563745f6f6e65a5666c61677380a665786365707490"))
write("wire", "positioned", mp(["emitter", packet, {"rooms": ["p"], "except": ["s"], "flags": {
    "volatile": False, "compress": True, "wsgateSentAt": 1700000000000,
    "wsgateEpoch": "e1", "wsgateOffset": "1700000000000-42", "wsgateOrder": 1700000000000123}}]))
write("wire", "binary", mp(["u1", {"type": 5, "data": ["bin", b"\x01\x02\x03"], "nsp": "/"}, {"rooms": [], "except": []}]))
write("wire", "by-key", mp(["u", {"nsp": "/", "data": ["e"], "type": 2}, {"except": [], "rooms": ["a", "b"]}]))
write("wire", "bad-packet", bytes.fromhex("93a1758182a474797065020080"))

write("sharded_wire", "node-json-room", json.dumps({"type": 3, "data": {"packet": packet, "opts": opts}, "uid": "abc123", "nsp": "/"}, separators=(",", ":")))
write("sharded_wire", "node-msgpack-binary", bytes.fromhex(
    "84a47479706503a46461746182a67061636b657483a47479706502a46461746192a362696ec403010203a36e7370a12fa46f70747383a5726f6f6d7391ab70726f6a6563745f74776fa665786365707491a178a5666c61677381a8766f6c6174696c65c3a3756964a6616263313233a36e7370a12f"))
write("sharded_wire", "node-join", '{"type":4,"data":{"opts":{"rooms":["r1"],"except":[],"flags":{}},"rooms":["newroom"]},"uid":"abc123","nsp":"/"}')
write("sharded_wire", "node-fetch", '{"type":7,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"requestId":"q1"},"uid":"n1","nsp":"/"}')
write("sharded_wire", "node-fetch-response", '{"type":8,"data":{"requestId":"q1","sockets":[]},"uid":"abc123","nsp":"/"}')
write("sharded_wire", "disconnect", '{"type":6,"data":{"opts":{"rooms":["r"],"except":[]},"close":true},"uid":"n","nsp":"/"}')

for kind, body in [
    ("join", {"type": 2, "opts": {"rooms": ["a"], "except": ["b"]}, "rooms": ["x"]}),
    ("leave", {"type": 3, "opts": {"rooms": ["a"], "except": []}, "rooms": ["x"]}),
    ("disconnect", {"type": 4, "opts": {"rooms": ["a"], "except": []}, "close": True}),
    ("sockets", {"uid": "u1", "requestId": "42", "type": 5, "opts": {"rooms": [], "except": []}}),
    ("all-rooms", {"uid": "u1", "requestId": "7", "type": 1}),
    ("server-side-emit", {"uid": "u1", "requestId": "8", "type": 6, "data": ["ping", 1]}),
    ("broadcast", {"uid": "u1", "type": 7, "packet": packet, "opts": opts}),
]:
    write("request", kind, json.dumps(body, separators=(",", ":")))

for name, payload in [
    ("ok", {"projectId": "project_one"}),
    ("recover", {"projectId": "p", "recover": True}),
    ("since", {"projectId": "p", "since": {"epoch": "e1", "offset": "1700000000000-42"}}),
    ("bad-type", {"projectId": 5}),
    ("bad-since", {"projectId": "", "since": {"epoch": "", "offset": "x-1"}, "recover": "yes"}),
    ("control", {"projectId": "a\u0001b"}),
    ("not-object", [1, 2]),
]:
    write("join_project", name, json.dumps(payload))


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


secret = b"fuzz-secret-fuzz-secret-fuzz-secret"
for name, header, claims in [
    ("ok", {"alg": "HS256", "typ": "JWT"}, {"sub": "user_1", "iss": "wsgate-fuzz", "exp": 4102444800, "projects": ["p1"]}),
    ("numeric-sub", {"alg": "HS256"}, {"sub": 42, "iss": "wsgate-fuzz", "exp": 4102444800}),
    ("expired", {"alg": "HS256"}, {"sub": "u", "iss": "wsgate-fuzz", "exp": 1, "nbf": 0}),
    ("kid", {"alg": "HS256", "kid": "../../etc/passwd"}, {"sub": "u", "iss": "x", "aud": ["a", "b"]}),
]:
    h, c = json.dumps(header), json.dumps(claims)
    write("jwt", name + "-parts", h + "\n" + c)
    signing = b64(h.encode()) + "." + b64(c.encode())
    sig = b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())
    write("jwt", name + "-token", signing + "." + sig)
write("jwt", "alg-none", b64(b'{"alg":"none"}') + "." + b64(b'{"sub":"u"}') + ".")

for name, text in [
    ("connect", '0{"token":"valid-token-1"}'),
    ("connect-recover", '0{"token":"t","pid":"p1","offset":"e1:1700000000000-42:7"}'),
    ("event", '2["message","x"]'),
    ("event-ack", '21["join_project",{"projectId":"project_one"}]'),
    ("event-nsp", '2/admin,3["leave_project",{"projectId":"p"}]'),
    ("binary-event", '51-["join_project",{"_placeholder":true,"num":0}]\0\x01\x02\x03'),
    ("ack", '31["ok"]'),
    ("disconnect", '1'),
]:
    write("socketio_packet", name, text)

write("proxy_header", "v1", b"PROXY TCP4 192.0.2.1 10.0.0.1 5555 80\r\nGET / HTTP/1.1\r\n")
write("proxy_header", "v1-tcp6", b"PROXY TCP6 2001:db8::1 ::1 5555 80\r\n")
write("proxy_header", "v1-unknown", b"PROXY UNKNOWN\r\n")
write("proxy_header", "v2-tlv", b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x10\xc6\x33\x64\x07\x0a\x00\x00\x01\x10\x92\x01\xbb\x04\x00\x01\x2aGET /")
write("proxy_header", "v2-local", b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00")
write("forwarded", "xff", b"\x006.6.6.6, 198.51.100.1, 10.1.1.1\n192.168.1.1:80")
write("forwarded", "forwarded", b'\x01for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, For=10.1.1.1;by=x\nfor=unknown')
