"""Brute-force resistance: failed authentications from one address (wrong
signature, unknown key) slow down and then lock that address out for a
while (503 SlowDown with Retry-After, even with the right key); other
addresses are unaffected; the lockout ends by itself."""

import json
import time

from conftest import ACCESS_KEY, SECRET_KEY, Server, error_code, raw_request

CONFIG = """\
advanced:
  auth_delay_after: 2
  auth_lockout_after: 6
  auth_lockout_secs: 3
"""


def test_lockout_and_recovery(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    s = Server(tmp_path / "data", config=cfg).start()
    try:
        url = f"{s.url}/"
        wrong = "wrong-secret-" + "z" * 27
        for _ in range(6):
            status, _, body = raw_request(url, sign=True, secret=wrong, source="127.0.0.2")
            assert (status, error_code(body)) == (403, "SignatureDoesNotMatch")
        # Locked: even the right key, and the operator API, get 503 SlowDown.
        status, h, body = raw_request(url, sign=True, source="127.0.0.2")
        assert (status, error_code(body)) == (503, "SlowDown")
        assert 1 <= int(h["retry-after"]) <= 4
        status, _, body = raw_request(f"{s.url}/_/api/status", sign=True, source="127.0.0.2")
        assert status == 503 and "too many failed" in json.loads(body)["error"]
        # Other addresses are not affected.
        assert raw_request(url, sign=True)[0] == 200
        # Unknown keys count the same.
        for _ in range(6):
            status, _, body = raw_request(url, sign=True, access="NOSUCHKEY123", source="127.0.0.3")
            assert (status, error_code(body)) == (403, "InvalidAccessKeyId")
        assert raw_request(url, sign=True, source="127.0.0.3")[0] == 503
        assert "address locked out" in s.output()
        # The lockout ends by itself; a success clears the count.
        time.sleep(3.3)
        assert raw_request(url, sign=True, source="127.0.0.2")[0] == 200
        for _ in range(5):
            raw_request(url, sign=True, secret=wrong, source="127.0.0.2")
        assert raw_request(url, sign=True, source="127.0.0.2")[0] == 200
        assert raw_request(url, sign=True, secret=wrong, source="127.0.0.2")[0] == 403
        # Bad admin signatures count as well.
        for _ in range(6):
            status, _, _ = raw_request(f"{s.url}/_/api/status", sign=True, secret=wrong, source="127.0.0.4")
            assert status == 403
        assert raw_request(url, sign=True, source="127.0.0.4")[0] == 503
    finally:
        s.stop()
