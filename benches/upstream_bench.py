#!/usr/bin/env python3
"""boto3 throughput straight to an S3 upstream versus through the proxy's
S3 backend (plain and aes256-gcm-proxy), in one run, on 127.0.0.1.

Upstreams: a second deltaglider_proxy serving a filesystem backend (fast,
Rust) and `rclone serve s3` over a directory. Usage:

    cargo build --release
    python3 benches/upstream_bench.py [--secs 8] [--threads 4] [--upstreams ours,rclone]

Prints a Markdown table (MiB/s for 4 MiB objects, ops/s for 4 KiB objects,
the proxy's peak RSS) for docs/benchmarks.md.
"""

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("DGP_BIN", REPO / "target" / "release" / "deltaglider_proxy"))
AK, SK = "benchadmin", "bench-secret-" + "y" * 20
UK, US = "upstreamkey", "upstreamsecret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc):
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError("process exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def client(url, ak, sk):
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=ak, aws_secret_access_key=sk,
                        region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, max_pool_connections=32,
                                      retries={"total_max_attempts": 1}))


def peak_rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_for(secs, threads, op):
    """Runs op(thread_index, n) in `threads` threads for `secs`; returns calls made."""
    stop = time.time() + secs
    counts = [0] * threads

    def worker(i):
        n = 0
        while time.time() < stop:
            op(i, n)
            n += 1
        counts[i] = n

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts)


def workload(s3, bucket, secs, threads):
    big = secrets.token_bytes(4 * 1024 * 1024)
    small = secrets.token_bytes(4096)
    out = {}
    # .txt keys: never delta-eligible, so this measures the gateway path.
    n = run_for(secs, threads, lambda i, k: s3.put_object(Bucket=bucket, Key=f"big/{i}-{k % 8}.txt", Body=big))
    out["put4m"] = n * 4 / secs
    n = run_for(secs, threads, lambda i, k: s3.get_object(Bucket=bucket, Key=f"big/{i}-{k % 8}.txt")["Body"].read())
    out["get4m"] = n * 4 / secs
    n = run_for(secs, threads, lambda i, k: s3.put_object(Bucket=bucket, Key=f"small/{i}-{k % 64}.txt", Body=small))
    out["put4k"] = n / secs
    n = run_for(secs, threads, lambda i, k: s3.get_object(Bucket=bucket, Key=f"small/{i}-{k % 64}.txt")["Body"].read())
    out["get4k"] = n / secs
    return out


def start_upstream(kind, tmp):
    port = free_port()
    if kind == "ours":
        env = dict(os.environ, DGP_ACCESS_KEY_ID=UK, DGP_SECRET_ACCESS_KEY=US, DGP_LOG_LEVEL="warn")
        cmd = [str(BIN), "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp / "updata")]
    else:
        (tmp / "rclone").mkdir()
        env = dict(os.environ)
        cmd = ["rclone", "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{UK},{US}", str(tmp / "rclone")]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, p)
    return p, f"http://127.0.0.1:{port}"


def start_proxy(tmp, upstream_url, mode, real):
    port = free_port()
    cfg = tmp / f"proxy-{mode}.yaml"
    cfg.write_text(f"""
storage:
  backends:
    - name: up
      type: s3
      endpoint: {upstream_url}
      access_key_id: {UK}
      secret_access_key: {US}
      encryption: {{mode: {mode}}}
  buckets:
    bench: {{alias: {real}}}
advanced:
  spool_dir: {tmp / ('spool-' + mode)}
""")
    env = dict(os.environ, DGP_ACCESS_KEY_ID=AK, DGP_SECRET_ACCESS_KEY=SK, DGP_LOG_LEVEL="warn",
               DGP_BACKEND_UP_ENCRYPTION_KEY=secrets.token_hex(32))
    p = subprocess.Popen([str(BIN), "serve", "--listen", f"127.0.0.1:{port}", "--config", str(cfg)],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, p)
    return p, f"http://127.0.0.1:{port}"


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=float, default=8)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--upstreams", default="ours,rclone")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        for kind in a.upstreams.split(","):
            d = tmp / kind
            d.mkdir()
            up, url = start_upstream(kind, d)
            try:
                direct = client(url, UK, US)
                for b in ("direct", "via-none", "via-aes"):
                    direct.create_bucket(Bucket=f"{kind}-{b}")
                r = workload(direct, f"{kind}-direct", a.secs, a.threads)
                rows.append((kind, "client → upstream", r, None))
                for mode, b in (("none", "via-none"), ("aes256-gcm-proxy", "via-aes")):
                    px, purl = start_proxy(d, url, mode, f"{kind}-{b}")
                    try:
                        r = workload(client(purl, AK, SK), "bench", a.secs, a.threads)
                        rows.append((kind, f"client → proxy ({mode}) → upstream", r, peak_rss_mib(px.pid)))
                    finally:
                        stop(px)
            finally:
                stop(up)
    print(f"{a.threads} boto3 threads, {a.secs:g} s per cell, 127.0.0.1\n")
    print("| upstream | path | PUT 4 MiB MiB/s | GET 4 MiB MiB/s | PUT 4 KiB ops/s | GET 4 KiB ops/s | proxy peak RSS MiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    base = {}
    for kind, path, r, rss in rows:
        if rss is None:
            base[kind] = r
        b = base[kind]

        def cell(k, fmt="{:.0f}"):
            v = fmt.format(r[k])
            return v if rss is None else f"{v} ({100 * r[k] / b[k]:.0f}%)"

        print(f"| {kind} | {path} | {cell('put4m')} | {cell('get4m')} | {cell('put4k')} | {cell('get4k')} | "
              f"{'-' if rss is None else f'{rss:.0f}'} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
