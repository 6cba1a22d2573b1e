"""Real clients end to end: the aws CLI, rclone and s3cmd."""

import filecmp
import hashlib
import os
import shutil
import subprocess

import pytest

from conftest import ACCESS_KEY, SECRET_KEY, aws_env, random_bytes

MiB = 1024 * 1024


def aws(server, *args, check=True):
    cmd = ["aws", "--endpoint-url", server.url, "s3"] + list(args)
    return subprocess.run(cmd, env=aws_env(server), capture_output=True, text=True, check=check, timeout=300)


def test_aws_cli_cp_multipart_sync_ls_rm(server, s3, tmp_path):
    aws(server, "mb", "s3://cli-bucket")
    big = tmp_path / "big.bin"
    big.write_bytes(random_bytes(50 * MiB))
    aws(server, "cp", str(big), "s3://cli-bucket/releases/big.bin")
    head = s3.head_object(Bucket="cli-bucket", Key="releases/big.bin")
    assert head["ContentLength"] == 50 * MiB
    assert head["ETag"].strip('"').endswith("-7"), "50 MiB goes multipart in 8 MiB parts"
    back = tmp_path / "back.bin"
    aws(server, "cp", "s3://cli-bucket/releases/big.bin", str(back))
    assert filecmp.cmp(big, back, shallow=False)

    src = tmp_path / "tree"
    for i in range(12):
        p = src / f"d{i % 3}" / f"f{i}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"file {i}\n".encode() * (i + 1))
    aws(server, "sync", str(src), "s3://cli-bucket/tree")
    out = aws(server, "ls", "--recursive", "s3://cli-bucket/tree/").stdout
    assert len(out.strip().splitlines()) == 12
    dst = tmp_path / "tree-back"
    aws(server, "sync", "s3://cli-bucket/tree", str(dst))
    for i in range(12):
        rel = f"d{i % 3}/f{i}.txt"
        assert (dst / rel).read_bytes() == (src / rel).read_bytes()
    # a second sync uploads nothing
    again = aws(server, "sync", str(src), "s3://cli-bucket/tree").stdout
    assert "upload:" not in again
    ls = aws(server, "ls", "s3://cli-bucket/").stdout
    assert "PRE releases/" in ls and "PRE tree/" in ls
    aws(server, "rm", "--recursive", "s3://cli-bucket/")
    assert s3.list_objects_v2(Bucket="cli-bucket")["KeyCount"] == 0
    aws(server, "rb", "s3://cli-bucket")


def rclone_conf(server, tmp_path):
    conf = tmp_path / "rclone.conf"
    conf.write_text(
        "[dgp]\ntype = s3\nprovider = Other\n"
        f"access_key_id = {ACCESS_KEY}\nsecret_access_key = {SECRET_KEY}\n"
        f"endpoint = {server.url}\nregion = us-east-1\nforce_path_style = true\n"
    )
    return conf


def rclone(conf, *args):
    return subprocess.run(["rclone", "--config", str(conf)] + list(args), capture_output=True, text=True, check=True, timeout=300)


def test_rclone_copy_check_and_delete(server, s3, tmp_path):
    conf = rclone_conf(server, tmp_path)
    src = tmp_path / "src"
    for i in range(8):
        p = src / f"sub{i % 2}" / f"x{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(random_bytes(1000 * i + 1))
    (src / "large.bin").write_bytes(random_bytes(12 * MiB))
    rclone(conf, "mkdir", "dgp:rclone-bucket")
    rclone(conf, "copy", str(src), "dgp:rclone-bucket/data", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M")
    # rclone check compares sizes and hashes (MD5 against ETag) of every file
    rclone(conf, "check", str(src), "dgp:rclone-bucket/data")
    listed = rclone(conf, "lsf", "-R", "dgp:rclone-bucket/data").stdout.split()
    assert "large.bin" in listed and "sub0/x0.bin" in listed
    out = tmp_path / "out"
    rclone(conf, "copy", "dgp:rclone-bucket/data", str(out))
    assert (out / "large.bin").read_bytes() == (src / "large.bin").read_bytes()
    rclone(conf, "purge", "dgp:rclone-bucket")
    assert "rclone-bucket" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.mark.skipif(shutil.which("s3cmd") is None, reason="s3cmd not installed")
def test_s3cmd(server, tmp_path):
    host = server.addr
    cfg = tmp_path / "s3cfg"
    cfg.write_text(
        "[default]\n"
        f"access_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\n"
        f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\nsignature_v2 = False\n"
    )
    run = lambda *a: subprocess.run(["s3cmd", "-c", str(cfg)] + list(a), capture_output=True, text=True, check=True, timeout=120)
    run("mb", "s3://s3cmd-bucket")
    f = tmp_path / "f.txt"
    f.write_bytes(b"s3cmd data\n" * 1000)
    run("put", str(f), "s3://s3cmd-bucket/dir/f.txt")
    assert "s3://s3cmd-bucket/dir/f.txt" in run("ls", "-r", "s3://s3cmd-bucket").stdout
    g = tmp_path / "g.txt"
    run("get", "s3://s3cmd-bucket/dir/f.txt", str(g))
    assert g.read_bytes() == f.read_bytes()
    run("del", "s3://s3cmd-bucket/dir/f.txt")
    run("rb", "s3://s3cmd-bucket")
