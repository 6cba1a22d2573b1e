#!/usr/bin/env python3
"""A large multipart upload through the proxy to an S3 upstream, sampling
the proxy's spool disk use and RSS: both must stay bounded by a few parts,
whatever the object size. The upstream is a second deltaglider_proxy
(filesystem backend) on 127.0.0.1; the proxy encrypts (aes256-gcm-proxy).

    cargo build --release
    python3 benches/multipart_bound.py [--gib 10] [--part-mib 64] [--threads 4]
"""

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upstream_bench import AK, SK, UK, US, client, free_port, wait_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("DGP_BIN", REPO / "target" / "release" / "deltaglider_proxy"))


def du(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=10)
    ap.add_argument("--part-mib", type=int, default=64)
    ap.add_argument("--threads", type=int, default=4)
    a = ap.parse_args()
    part = a.part_mib * 1024 * 1024
    nparts = int(a.gib * 1024 * 1024 * 1024 // part)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP", "/var/tmp")) as td:
        tmp = Path(td)
        uport, pport = free_port(), free_port()
        env = dict(os.environ, DGP_ACCESS_KEY_ID=UK, DGP_SECRET_ACCESS_KEY=US, DGP_LOG_LEVEL="warn")
        up = subprocess.Popen([str(BIN), "serve", "--listen", f"127.0.0.1:{uport}", "--data-dir", str(tmp / "up")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(uport, up)
        client(f"http://127.0.0.1:{uport}", UK, US).create_bucket(Bucket="big")
        cfg = tmp / "p.yaml"
        cfg.write_text(f"""
storage:
  backends:
    - name: up
      type: s3
      endpoint: http://127.0.0.1:{uport}
      access_key_id: {UK}
      secret_access_key: {US}
      encryption: {{mode: aes256-gcm-proxy}}
advanced:
  spool_dir: {tmp / 'spool'}
""")
        penv = dict(os.environ, DGP_ACCESS_KEY_ID=AK, DGP_SECRET_ACCESS_KEY=SK, DGP_LOG_LEVEL="warn",
                    DGP_BACKEND_UP_ENCRYPTION_KEY=secrets.token_hex(32))
        px = subprocess.Popen([str(BIN), "serve", "--listen", f"127.0.0.1:{pport}", "--config", str(cfg)],
                              env=penv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(pport, px)
        s3 = client(f"http://127.0.0.1:{pport}", AK, SK)
        block = secrets.token_bytes(part)
        peak = {"disk": 0, "rss": 0.0}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak["disk"] = max(peak["disk"], du(tmp / "spool"))
                peak["rss"] = max(peak["rss"], rss_mib(px.pid))
                time.sleep(0.2)

        threading.Thread(target=sample, daemon=True).start()
        t0 = time.time()
        mp = s3.create_multipart_upload(Bucket="big", Key="huge.txt")

        def put(i):
            body = i.to_bytes(8, "big") + block[8:]
            return i, s3.upload_part(Bucket="big", Key="huge.txt", UploadId=mp["UploadId"], PartNumber=i, Body=body)["ETag"]

        with ThreadPoolExecutor(a.threads) as ex:
            etags = dict(ex.map(put, range(1, nparts + 1)))
        s3.complete_multipart_upload(Bucket="big", Key="huge.txt", UploadId=mp["UploadId"], MultipartUpload={
            "Parts": [{"PartNumber": i, "ETag": etags[i]} for i in range(1, nparts + 1)]})
        up_secs = time.time() - t0
        size = s3.head_object(Bucket="big", Key="huge.txt")["ContentLength"]
        # read it back, checking each part's bytes
        t1 = time.time()
        body = s3.get_object(Bucket="big", Key="huge.txt")["Body"]
        i, ok = 1, True
        while True:
            chunk = body.read(part)
            if not chunk:
                break
            ok &= chunk == i.to_bytes(8, "big") + block[8:]
            i += 1
        down_secs = time.time() - t1
        stop.set()
        for p in (px, up):
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
        gib = size / 2**30
        print(f"{gib:.2f} GiB in {nparts} parts of {a.part_mib} MiB, {a.threads} upload threads, aes256-gcm-proxy, "
              f"upstream: deltaglider_proxy on 127.0.0.1")
        print(f"upload {size / 2**20 / up_secs:.0f} MiB/s, download {size / 2**20 / down_secs:.0f} MiB/s, "
              f"content {'verified' if ok and i - 1 == nparts else 'WRONG'}")
        print(f"proxy spool peak {peak['disk'] / 2**20:.0f} MiB, proxy peak RSS {peak['rss']:.0f} MiB")


if __name__ == "__main__":
    main()
