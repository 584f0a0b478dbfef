#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Test vectors of tokend's SA key derivation (docs/key-derivation.md).

An implementation independent of the daemon's: the daemon uses OpenSSL's
HKDF, this one is HKDF written from RFC 5869 on Python's hmac and hashlib,
so the vectors in the doc and in tests/unit/test_keys.c come from code that
shares nothing with what they test. Standard library only.

    scripts/kdf_vectors.py              the vectors as Markdown (for the doc)
    scripts/kdf_vectors.py --c          the vectors as a C table (for the test)
    scripts/kdf_vectors.py --selftest   RFC 5869's own SHA-256 test cases only
"""

import hashlib
import hmac
import ipaddress
import sys

HASH_LEN = 32  # SHA-256

INFO_LABEL = b"tokend-sa-v1"
FINGERPRINT_LABEL = b"tokend-fingerprint-v1"

# id, config name, derived bytes: cipher key (salt included) + HMAC key.
ALGORITHMS = {
    "aes-gcm-128": (1, 16 + 4 + 0),
    "aes-gcm-256": (2, 32 + 4 + 0),
    "aes-cbc-hmac-sha256": (3, 32 + 32),
}


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    # RFC 5869 2.2: PRK = HMAC-Hash(salt, IKM). An empty salt is an HMAC key
    # of no bytes, which HMAC pads with zeros: the same as HashLen zeros.
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    # RFC 5869 2.3: T(i) = HMAC-Hash(PRK, T(i-1) | info | i), i from 1.
    if length > 255 * HASH_LEN:
        raise ValueError("HKDF output too long")
    out = b""
    t = b""
    i = 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)


def selftest() -> None:
    """RFC 5869 appendix A, test cases 1 to 3 (SHA-256)."""
    cases = [
        (bytes([0x0B] * 22), bytes(range(0x00, 0x0D)), bytes(range(0xF0, 0xFA)), 42,
         "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
         "34007208d5b887185865"),
        (bytes(range(0x00, 0x50)), bytes(range(0x60, 0xB0)), bytes(range(0xB0, 0x100)), 82,
         "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
         "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
         "cc30c58179ec3e87c14c01d5c1f3434f1d87"),
        # Case 3 is the one tokend relies on: salt and info empty.
        (bytes([0x0B] * 22), b"", b"", 42,
         "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
         "9d201395faa4b61a96c8"),
    ]
    for n, (ikm, salt, info, length, okm) in enumerate(cases, 1):
        got = hkdf(salt, ikm, info, length).hex()
        if got != okm:
            raise SystemExit(f"RFC 5869 test case {n}: got {got}, expected {okm}")


def family_byte(addr: ipaddress._BaseAddress) -> int:
    return 4 if addr.version == 4 else 6


def info_fields(v: dict) -> list:
    """The info input as (field, bytes) in order, as keys.h specifies."""
    name = v["name"].encode()
    if not 1 <= len(name) <= 64:
        raise ValueError("name must be 1 to 64 bytes")
    src = ipaddress.ip_address(v["src"])
    dst = ipaddress.ip_address(v["dst"])
    if src.version != dst.version:
        raise ValueError("src and dst of different families")
    alg_id, _ = ALGORITHMS[v["algorithm"]]
    return [
        ("label \"tokend-sa-v1\"", INFO_LABEL),
        ("len(name)", bytes([len(name)])),
        ("name", name),
        ("number (u32 BE)", v["number"].to_bytes(4, "big")),
        ("family", bytes([family_byte(src)])),
        ("src", src.packed),
        ("dst", dst.packed),
        ("generation (u64 BE)", v["generation"].to_bytes(8, "big")),
        ("algorithm id", bytes([alg_id])),
    ]


def derive(secret: bytes, v: dict) -> bytes:
    info = b"".join(b for _, b in info_fields(v))
    _, length = ALGORITHMS[v["algorithm"]]
    return hkdf(b"", secret, info, length)


def fingerprint(secret: bytes) -> str:
    return hashlib.sha256(FINGERPRINT_LABEL + secret).digest()[:8].hex()


# Two test secrets: 32 bytes counting up, and 64 bytes that look random but
# anyone can recompute.
SECRET_A = bytes(range(32))
SECRET_B = hashlib.sha512(b"tokend test secret B").digest()

VECTORS = [
    dict(title="IPv4, aes-gcm-128, generation 0, 32-byte secret", secret=SECRET_A,
         name="site-a", number=1, src="192.0.2.1", dst="198.51.100.2",
         generation=0, algorithm="aes-gcm-128"),
    dict(title="the same association, the other direction", secret=SECRET_A,
         name="site-a", number=1, src="198.51.100.2", dst="192.0.2.1",
         generation=0, algorithm="aes-gcm-128"),
    dict(title="IPv6, aes-gcm-256, generation 2^40+5, 64-byte secret", secret=SECRET_B,
         name="branch-office-7", number=65535, src="2001:db8::1", dst="2001:db8:ffff::2",
         generation=(1 << 40) + 5, algorithm="aes-gcm-256"),
    dict(title="IPv4, aes-cbc-hmac-sha256, generation 2^40+5, 64-byte secret",
         secret=SECRET_B, name="dc1-dc2", number=300, src="203.0.113.77", dst="10.1.2.3",
         generation=(1 << 40) + 5, algorithm="aes-cbc-hmac-sha256"),
    dict(title="IPv6, aes-cbc-hmac-sha256, generation 0, 32-byte secret, 64-byte name",
         secret=SECRET_A, name="n" * 32 + "-" * 31 + "z", number=0x12345678,
         src="fe80::1", dst="2001:db8:0:1::abcd", generation=0,
         algorithm="aes-cbc-hmac-sha256"),
    dict(title="IPv4, aes-gcm-256, generation 2^64-1, 64-byte secret", secret=SECRET_B,
         name="x", number=0xFFFFFFFF, src="0.0.0.0", dst="255.255.255.255",
         generation=(1 << 64) - 1, algorithm="aes-gcm-256"),
]


def md_offsets_table(v: dict) -> str:
    rows = ["| offset | length | field | bytes (hex) |", "|---:|---:|---|---|"]
    off = 0
    for field, b in info_fields(v):
        rows.append(f"| {off} | {len(b)} | {field} | `{b.hex()}` |")
        off += len(b)
    rows.append(f"| {off} | | (end: info is {off} bytes) | |")
    return "\n".join(rows)


def markdown() -> str:
    out = []
    out.append("Fingerprints (`keys_secret_fingerprint`):\n")
    for label, s in (("A", SECRET_A), ("B", SECRET_B)):
        out.append(f"- secret {label} (`{s.hex()}`): `{fingerprint(s)}`")
    out.append("")
    out.append("Offsets of the info bytes of vector 1:\n")
    out.append(md_offsets_table(VECTORS[0]))
    out.append("")
    for n, v in enumerate(VECTORS, 1):
        s = v["secret"]
        alg_id, length = ALGORITHMS[v["algorithm"]]
        info = b"".join(b for _, b in info_fields(v))
        okm = derive(s, v)
        out.append(f"### Vector {n}: {v['title']}\n")
        out.append("```")
        out.append(f"secret     {s.hex()}  ({len(s)} bytes)")
        n = len(v["name"].encode())
        out.append(f"name       \"{v['name']}\"  ({n} byte{'' if n == 1 else 's'})")
        out.append(f"number     {v['number']}")
        out.append(f"src        {v['src']}  (sending)")
        out.append(f"dst        {v['dst']}  (receiving)")
        out.append(f"generation {v['generation']}")
        out.append(f"algorithm  {v['algorithm']}  (id {alg_id}, L = {length})")
        out.append(f"info       {info.hex()}  ({len(info)} bytes)")
        out.append(f"output     {okm.hex()}")
        out.append("```\n")
    return "\n".join(out)


def c_string(s: str, indent: str) -> str:
    # Long hex strings split into adjacent literals of 64 digits.
    parts = [s[i:i + 64] for i in range(0, len(s), 64)] or [""]
    return ("\n" + indent).join(f'"{p}"' for p in parts)


def c_table() -> str:
    out = ["/* Produced by scripts/kdf_vectors.py --c. */"]
    out.append("static const struct vector vectors[] = {")
    ind = "\t\t"
    for v in VECTORS:
        fam = "AF_INET" if ipaddress.ip_address(v["src"]).version == 4 else "AF_INET6"
        alg = {"aes-gcm-128": "KEYS_ALG_AES_GCM_128", "aes-gcm-256": "KEYS_ALG_AES_GCM_256",
               "aes-cbc-hmac-sha256": "KEYS_ALG_AES_CBC_HMAC_SHA256"}[v["algorithm"]]
        info = b"".join(b for _, b in info_fields(v))
        out.append("\t{")
        out.append(f"{ind}.secret = {c_string(v['secret'].hex(), ind + '          ')},")
        out.append(f"{ind}.name = \"{v['name']}\",")
        out.append(f"{ind}.number = {v['number']}u,")
        out.append(f"{ind}.family = {fam},")
        out.append(f"{ind}.src = \"{v['src']}\",")
        out.append(f"{ind}.dst = \"{v['dst']}\",")
        out.append(f"{ind}.generation = UINT64_C({v['generation']}),")
        out.append(f"{ind}.algorithm = {alg},")
        out.append(f"{ind}.info = {c_string(info.hex(), ind + '        ')},")
        out.append(f"{ind}.output = {c_string(derive(v['secret'], v).hex(), ind + '          ')},")
        out.append("\t},")
    out.append("};")
    out.append(f'static const char fingerprint_a[] = "{fingerprint(SECRET_A)}";')
    out.append(f'static const char fingerprint_b[] = "{fingerprint(SECRET_B)}";')
    return "\n".join(out)


def main() -> None:
    selftest()
    if sys.argv[1:2] == ["--derive"]:
        # --derive SECRET_HEX NAME NUMBER FAMILY SRC DST GENERATION ALGORITHM:
        # one derivation, as hex (the family is implied by the addresses).
        secret_hex, name, number, _family, src, dst, gen, alg = sys.argv[2:10]
        v = {"name": name, "number": int(number), "src": src, "dst": dst,
             "generation": int(gen), "algorithm": alg}
        print(derive(bytes.fromhex(secret_hex), v).hex())
    elif "--selftest" in sys.argv[1:]:
        print("RFC 5869 test cases 1-3: ok")
    elif "--c" in sys.argv[1:]:
        print(c_table())
    else:
        print(markdown())


if __name__ == "__main__":
    main()
