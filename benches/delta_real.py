#!/usr/bin/env python3
"""Delta compression on real versioned binaries that nobody here wrote.

Downloads consecutive releases of a package from PyPI (default: five numpy
manylinux wheels), starts the release server on 127.0.0.1, uploads them in
order into a bucket with compression on and into one with compression off,
and prints: stored vs logical bytes, PUT and GET MiB/s for delta objects vs
passthrough in the same run, and the server's peak RSS.

Run: cargo build --release && python3 benches/delta_real.py [--package numpy
--versions 2.1.0,2.1.1,2.1.2,2.1.3,2.2.0] (needs boto3; results go in
docs/benchmarks.md).
"""

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / "target" / "release" / "deltaglider_proxy"


def download(pkg, versions, into):
    files = []
    for v in versions:
        d = into / v
        d.mkdir(parents=True, exist_ok=True)
        if not any(d.iterdir()):
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            "--python-version", "3.11", "--platform", "manylinux2014_x86_64", "-d", str(d), f"{pkg}=={v}"],
                           check=True)
        files.append(next(d.iterdir()))
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--package", default="numpy")
    ap.add_argument("--versions", default="2.1.0,2.1.1,2.1.2,2.1.3,2.2.0")
    ap.add_argument("--cache", default=str(REPO / "target" / "delta-real"))
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    files = download(a.package, a.versions.split(","), Path(a.cache))
    blobs = [f.read_bytes() for f in files]
    logical = sum(len(b) for b in blobs)
    tmp = Path(tempfile.mkdtemp(prefix="dgp-delta-bench-"))
    cfg = tmp / "cfg.yaml"
    cfg.write_text(f"storage:\n  backend:\n    type: filesystem\n    path: {tmp / 'data'}\n  buckets:\n    whole:\n      compression: false\n")
    env = dict(os.environ, DGP_ACCESS_KEY_ID="bench", DGP_SECRET_ACCESS_KEY="bench-secret-0123456789", DGP_LOG_LEVEL="deltaglider_proxy=warn,deltaglider_proxy::server=info")
    proc = subprocess.Popen([str(BIN), "serve", "--listen", "127.0.0.1:0", "--config", str(cfg)], env=env,
                            stderr=subprocess.PIPE, text=True)
    addr = None
    for line in proc.stderr:
        m = re.search(r"addr=(\S+)", line)
        if m:
            addr = m.group(1)
            break
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    s3 = boto3.client("s3", endpoint_url=f"http://{addr}", aws_access_key_id="bench",
                      aws_secret_access_key="bench-secret-0123456789", region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
    try:
        s3.create_bucket(Bucket="releases")
        s3.create_bucket(Bucket="whole")
        res = {}
        for bucket in ("releases", "whole"):
            t = time.perf_counter()
            for f, b in zip(files, blobs):
                s3.put_object(Bucket=bucket, Key=f"{a.package}/{f.name}", Body=b)
            put = logical / (1 << 20) / (time.perf_counter() - t)
            best = 0.0
            for _ in range(a.rounds):
                t = time.perf_counter()
                for f, b in zip(files, blobs):
                    got = s3.get_object(Bucket=bucket, Key=f"{a.package}/{f.name}")["Body"].read()
                    assert hashlib.sha256(got).digest() == hashlib.sha256(b).digest()
                best = max(best, logical / (1 << 20) / (time.perf_counter() - t))
            res[bucket] = (put, best)
        data = tmp / "data"
        stored = sum(p.stat().st_size for p in (data / "releases").rglob("*") if p.is_file())
        stored += sum(p.stat().st_size for p in (data / ".dg" / "refs" / "releases").rglob("ref-*"))
        rss = 0
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) / 1024
        print(f"{a.package} {a.versions}: {len(files)} files, logical {logical / (1 << 20):.1f} MiB")
        for f in files:
            m = __import__("json").loads(os.getxattr(data / "releases" / a.package / f.name, "user.dg.metadata"))
            print(f"  {f.name}: {len(f.read_bytes()) / (1 << 20):.1f} MiB -> stored {(data / 'releases' / a.package / f.name).stat().st_size / (1 << 20):.2f} MiB ({m.get('dg-note', 'whole')})")
        print(f"stored {stored / (1 << 20):.1f} MiB (reference included): {100 * (1 - stored / logical):.1f}% reduction")
        print(f"delta bucket:       PUT {res['releases'][0]:7.1f} MiB/s   GET {res['releases'][1]:7.1f} MiB/s")
        print(f"passthrough bucket: PUT {res['whole'][0]:7.1f} MiB/s   GET {res['whole'][1]:7.1f} MiB/s")
        print(f"delta GET / passthrough GET: {100 * res['releases'][1] / res['whole'][1]:.0f}%")
        print(f"server peak RSS: {rss:.1f} MiB")
        st = subprocess.run([str(BIN), "stats", "--config", str(cfg), "--bucket", "releases"], capture_output=True, text=True)
        print(st.stdout.strip())
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
