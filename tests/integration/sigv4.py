"""A small, independent SigV4 signer for tests that need requests boto3 does
not send (streaming signed chunks, trailers, skewed clocks)."""

import datetime
import hashlib
import hmac
import urllib.parse

from conftest import ACCESS_KEY, SECRET_KEY

REGION = "us-east-1"


def _h(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret, date, region=REGION):
    k = _h(("AWS4" + secret).encode(), date)
    k = _h(k, region)
    k = _h(k, "s3")
    return _h(k, "aws4_request")


def sign(method, url, headers, payload_hash, when=None, access=ACCESS_KEY, secret=SECRET_KEY, region=REGION):
    """Returns headers with x-amz-date, x-amz-content-sha256 and Authorization; also the seed signature."""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    u = urllib.parse.urlsplit(url)
    headers = dict(headers)
    headers["host"] = u.netloc
    headers["x-amz-date"] = amz_date
    headers["x-amz-content-sha256"] = payload_hash
    lower = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
    names = sorted(lower)
    canon_headers = "".join(f"{k}:{lower[k]}\n" for k in names)
    q = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
    canon_q = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in sorted(q))
    path = u.path or "/"
    canon = "\n".join([method, path, canon_q, canon_headers, ";".join(names), payload_hash])
    scope = f"{date}/{region}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canon.encode()).hexdigest()])
    key = signing_key(secret, date, region)
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={';'.join(names)}, Signature={sig}"
    return headers, sig, key, amz_date, scope


def chunked_signed_body(data, chunk, seed, key, amz_date, scope, tamper_chunk=None):
    """aws-chunked body with chunk signatures (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)."""
    out = b""
    prev = seed
    empty = hashlib.sha256(b"").hexdigest()
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for n, piece in enumerate(pieces):
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, empty, hashlib.sha256(piece).hexdigest()])
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        prev = sig
        if tamper_chunk == n and piece:
            piece = bytes([piece[0] ^ 1]) + piece[1:]
        out += f"{len(piece):x};chunk-signature={sig}\r\n".encode() + piece + b"\r\n"
    return out
