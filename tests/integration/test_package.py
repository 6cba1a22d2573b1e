"""The Debian package, end to end on this machine: build it with
packaging/build-deb, install it with dpkg, check what an administrator gets
(files, user, modes, generated secrets), run the systemd unit's ExecStart as
the service user and do a PUT/GET with the aws CLI, reinstall, remove, purge.

Needs root and dpkg (skipped otherwise). It refuses to run, with a skip, on
a machine that already has a deltaglider-proxy installation or its data; it
cleans up after itself (package purged, data, env file and the system user
it created deleted).

The build reuses the binary the suite already built (DGP_BIN, passed to
build-deb as DGP_PREBUILT_BIN), so no second compilation happens.
"""

import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("DGP_BIN", REPO / "target" / "release" / "deltaglider_proxy"))
PKG = "deltaglider-proxy"
ETC = Path("/etc/deltaglider_proxy")
ENV_FILE = ETC / "env"
CONFIG = ETC / "config.yaml"
STATE = Path("/var/lib/deltaglider_proxy")
DATA = STATE / "data"
MARKER = STATE / ".created-by-test_package"
USER = "deltaglider"
UNIT = Path("/lib/systemd/system/deltaglider-proxy.service")
MOUNT_UNIT = Path("/lib/systemd/system/deltaglider-proxy-mount.service")
WANTS = Path("/etc/systemd/system/multi-user.target.wants")
HEX64 = re.compile(r"[0-9a-f]{64}")

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                       reason="installs a Debian package with dpkg: needs root"),
    pytest.mark.skipif(shutil.which("dpkg") is None or shutil.which("dpkg-deb") is None,
                       reason="needs dpkg (a Debian system)"),
]


def run(cmd, check=True, timeout=300, **kw):
    """Run a command, capture stdout+stderr as text, fail with the output."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, **kw)
    if check and p.returncode != 0:
        pytest.fail(f"{cmd!r} exited {p.returncode}:\n{p.stdout}")
    return p


def pkg_status():
    """dpkg's two-letter state ("ii", "rc", ...), "" when not installed at all."""
    p = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", PKG],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    status = p.stdout.strip() if p.returncode == 0 else ""
    return "" if status.startswith("un") else status


def as_service_user():
    """Popen arguments that run a command the way systemd's User= does:
    the user's uid, its primary group, no other groups, its passwd HOME."""
    pw = pwd.getpwnam(USER)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": pw.pw_dir,
           "USER": USER, "LOGNAME": USER, "SHELL": pw.pw_shell}
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}, env


def read_env_file(path=ENV_FILE):
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        k, _, v = line.partition("=")
        env[k.strip()] = v.strip()
    return env


def user_exists():
    try:
        pwd.getpwnam(USER)
        return True
    except KeyError:
        return False


def remove_everything(delete_user):
    if pkg_status():
        subprocess.run(["dpkg", "--purge", PKG], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(STATE, ignore_errors=True)
    if ENV_FILE.exists():
        ENV_FILE.unlink()
    for leftover in ETC.glob("*"):
        if leftover.name.startswith(("config.yaml", ".env.")):
            leftover.unlink()
    if ETC.is_dir() and not any(ETC.iterdir()):
        ETC.rmdir()
    if delete_user and user_exists():
        subprocess.run(["deluser", "--system", "--quiet", USER], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        subprocess.run(["delgroup", "--system", "--quiet", USER], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def machine():
    """Guard and clean up: the test owns the package's paths for its run."""
    if (STATE.exists() or ENV_FILE.exists() or pkg_status()) and not MARKER.exists():
        pytest.skip("this machine already has a deltaglider-proxy installation or its "
                    "data/keys (/var/lib/deltaglider_proxy, /etc/deltaglider_proxy/env); "
                    "refusing to touch them")
    if MARKER.exists():  # leftovers of an interrupted earlier run of this test
        remove_everything(delete_user=True)
    state = {"user_existed": user_exists()}
    yield state
    remove_everything(delete_user=not state["user_existed"])


@pytest.fixture(scope="session")
def deb(tmp_path_factory):
    """packaging/build-deb, reusing the suite's binary when there is one."""
    out = tmp_path_factory.mktemp("deb")
    env = dict(os.environ, DGP_DEB_OUTDIR=str(out))
    if BIN.is_file():
        env["DGP_PREBUILT_BIN"] = str(BIN)
    p = subprocess.run([str(REPO / "packaging" / "build-deb")], env=env, cwd=REPO,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=1800)
    if p.returncode != 0:
        pytest.fail(f"packaging/build-deb exited {p.returncode}:\n{p.stderr[-6000:]}")
    last = p.stdout.strip().splitlines()[-1]
    path = Path(last)
    assert path.is_absolute() and path.is_file(), f"last line is not the .deb: {last!r}"
    return path


@pytest.fixture(scope="module")
def installed(machine, deb):
    """First install: dpkg -i on a machine without the package."""
    p = run(["dpkg", "-i", str(deb)])
    MARKER.touch()
    return {"output": p.stdout, "env": read_env_file(), "env_bytes": ENV_FILE.read_bytes()}


def unit_settings(path):
    settings = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        k, _, v = line.partition("=")
        settings.setdefault(k, []).append(v)
    return settings


# --- the .deb itself ---------------------------------------------------------


def test_build_deb_prints_the_package_path_last(deb):
    assert re.fullmatch(r"deltaglider-proxy_[^_]+_[a-z0-9]+\.deb", deb.name), deb.name
    fields = run(["dpkg-deb", "-f", str(deb), "Package", "Depends", "Recommends", "Suggests"]).stdout
    assert "Package: deltaglider-proxy" in fields
    assert re.search(r"^Depends:.*\badduser\b", fields, re.M), fields
    assert re.search(r"^Depends:.*\blibc6\b", fields, re.M), fields
    assert re.search(r"^Depends:.*\bfuse3\b", fields, re.M), fields  # `mount` needs fusermount3 for non-root users
    assert re.search(r"^Suggests:.*\battr\b", fields, re.M), fields


def test_package_contents(deb):
    listing = run(["dpkg-deb", "-c", str(deb)]).stdout
    paths = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for want in ("/usr/bin/deltaglider_proxy", "/etc/deltaglider_proxy/config.yaml",
                 str(UNIT), str(MOUNT_UNIT), "/usr/share/man/man1/deltaglider_proxy.1.gz",
                 "/usr/share/doc/deltaglider-proxy/install.md",
                 "/usr/share/doc/deltaglider-proxy/copyright"):
        assert want in paths, want
    # secrets and data are made by postinst, never shipped (dpkg would delete them)
    assert not any(p.startswith("/var/lib/deltaglider_proxy") for p in paths)
    assert "/etc/deltaglider_proxy/env" not in paths
    assert not any(p.startswith("/srv") for p in paths)
    with tempfile.TemporaryDirectory() as ctl:
        run(["dpkg-deb", "-e", str(deb), ctl])
        assert Path(ctl, "conffiles").read_text().split() == ["/etc/deltaglider_proxy/config.yaml"]


def test_lintian_reports_no_errors(deb):
    if shutil.which("lintian") is None:
        run(["apt-get", "update", "-qq"], timeout=600)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "lintian"],
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), timeout=900)
    p = run(["lintian", "--fail-on", "error", str(deb)], check=False, timeout=600)
    errors = [line for line in p.stdout.splitlines() if line.startswith("E:")]
    assert p.returncode == 0 and not errors, p.stdout


# --- first install -----------------------------------------------------------


def test_installed_files(installed):
    out = run(["/usr/bin/deltaglider_proxy", "--version"]).stdout
    assert "deltaglider_proxy" in out
    assert CONFIG.read_text() == (REPO / "packaging" / "config.yaml").read_text()
    st = CONFIG.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644)
    assert UNIT.is_file() and MOUNT_UNIT.is_file()
    # the S3 service is enabled by postinst, the FUSE view is not
    assert (WANTS / UNIT.name).is_symlink()
    assert not (WANTS / MOUNT_UNIT.name).exists()


def test_service_user_and_state_directory(installed):
    pw = pwd.getpwnam(USER)
    assert pw.pw_uid < 1000, "a system user"
    assert pw.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
    assert pw.pw_dir == str(STATE)
    for d in (STATE, DATA):
        st = d.stat()
        assert stat.S_ISDIR(st.st_mode)
        assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid), d
        assert stat.S_IMODE(st.st_mode) == 0o750, d


def test_generated_env_file(installed):
    st = ENV_FILE.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600)
    env = installed["env"]
    assert sorted(env) == ["DGP_ACCESS_KEY_ID", "DGP_CONFIG_DB_KEY", "DGP_ENCRYPTION_KEY", "DGP_SECRET_ACCESS_KEY"]
    assert HEX64.fullmatch(env["DGP_ENCRYPTION_KEY"]), "64 hex characters"
    assert HEX64.fullmatch(env["DGP_CONFIG_DB_KEY"]), "64 hex characters"
    assert re.fullmatch(r"[A-Z0-9]{16,}", env["DGP_ACCESS_KEY_ID"])
    assert len(env["DGP_SECRET_ACCESS_KEY"]) >= 32
    out = installed["output"]
    # says where the secrets are and that the key must leave the box...
    assert str(ENV_FILE) in out and "DGP_ENCRYPTION_KEY" in out
    assert "off this machine" in out
    # ...without ever printing one (apt logs the terminal)
    for value in env.values():
        assert value not in out


def test_config_lint_passes_with_the_key(installed):
    ids, env = as_service_user()
    env["DGP_ENCRYPTION_KEY"] = installed["env"]["DGP_ENCRYPTION_KEY"]
    p = run(["/usr/bin/deltaglider_proxy", "config", "lint", str(CONFIG)], env=env, cwd="/", **ids)
    assert "OK" in p.stdout
    assert "unresolved" not in p.stdout


# --- the unit's command, as the service user ---------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws(port, env_vars, *args):
    base = [shutil.which("aws")] if shutil.which("aws") else [sys.executable, "-m", "awscli"]
    env = dict(os.environ)
    env.update({
        "AWS_ACCESS_KEY_ID": env_vars["DGP_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": env_vars["DGP_SECRET_ACCESS_KEY"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    })
    return run(base + ["--endpoint-url", f"http://127.0.0.1:{port}", *args], env=env, timeout=120)


def test_unit_command_serves_encrypted_objects(installed, tmp_path):
    settings = unit_settings(UNIT)
    (exec_start,) = settings["ExecStart"]
    (user,) = settings["User"]
    assert user == USER
    port = free_port()
    env_vars = read_env_file()

    # the sd_notify socket systemd would give a Type=notify service
    sockdir = Path(tempfile.mkdtemp(prefix="dgp-notify-"))
    sockdir.chmod(0o755)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sockdir / "notify"))
    (sockdir / "notify").chmod(0o666)
    notify.settimeout(30)

    # what systemd gives the service: User=, WorkingDirectory=, the
    # EnvironmentFile= variables, NOTIFY_SOCKET; the unit's own ExecStart
    ids, env = as_service_user()
    env.update(env_vars)
    env["NOTIFY_SOCKET"] = str(sockdir / "notify")
    cmd = [*shlex.split(exec_start), "--listen", f"127.0.0.1:{port}"]
    log = []
    proc = subprocess.Popen(cmd, env=env, cwd=settings["WorkingDirectory"][0],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **ids)
    threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True).start()
    try:
        messages = []
        while "READY=1" not in messages:
            try:
                messages += notify.recv(4096).decode().split("\n")
            except socket.timeout:
                pytest.fail(f"no READY=1 on NOTIFY_SOCKET within 30 s (got {messages}):\n"
                            + "".join(log))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_/health", timeout=10) as r:
            assert r.status == 200

        bucket = "pkg-" + secrets.token_hex(6)
        body = secrets.token_bytes(300_000)
        src = tmp_path / "upload.bin"
        src.write_bytes(body)
        aws(port, env_vars, "s3", "mb", f"s3://{bucket}")
        aws(port, env_vars, "s3", "cp", "--only-show-errors", str(src), f"s3://{bucket}/dir/object.bin")
        back = tmp_path / "download.bin"
        aws(port, env_vars, "s3", "cp", "--only-show-errors", f"s3://{bucket}/dir/object.bin", str(back))
        assert back.read_bytes() == body

        stored = DATA / bucket / "dir" / "object.bin"
        raw = stored.read_bytes()
        assert raw[:4] == b"DGE1", "encrypted at rest"
        assert body[:64] not in raw
        assert stored.stat().st_uid == pwd.getpwnam(USER).pw_uid
        meta = os.getxattr(stored, "user.dg.metadata").decode()
        assert env_vars["DGP_ENCRYPTION_KEY"] not in meta
    finally:
        # SIGTERM, as systemctl stop sends it: drain and exit 0
        proc.terminate()
        try:
            rc = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        notify.close()
        shutil.rmtree(sockdir, ignore_errors=True)
    assert rc == 0, "".join(log)


# --- the units ---------------------------------------------------------------


def test_unit_settings(installed):
    s = unit_settings(UNIT)
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify"
    assert one["EnvironmentFile"] == str(ENV_FILE)
    assert one["ExecStart"] == f"/usr/bin/deltaglider_proxy serve --config {CONFIG}"
    assert one["User"] == USER
    assert one["StateDirectory"] == "deltaglider_proxy"
    assert one["StateDirectoryMode"] == "0750"
    assert one["Restart"] == "on-failure"
    assert one["ReadWritePaths"] == str(STATE)
    assert one["CapabilityBoundingSet"] == ""
    assert one["LimitNOFILE"] == "65536"
    for k, v in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                 "NoNewPrivileges": "yes"}.items():
        assert one[k] == v, k
    assert s["SystemCallFilter"][0] == "@system-service"

    m = {k: v[-1] for k, v in unit_settings(MOUNT_UNIT).items()}
    assert m["ExecStart"] == f"/usr/bin/deltaglider_proxy mount ${{DGP_MOUNTPOINT}} --config {CONFIG}"
    assert m["Environment"] == "DGP_MOUNTPOINT=/srv/deltaglider"
    assert m["DeviceAllow"] == "/dev/fuse rw"
    assert m["CapabilityBoundingSet"] == "CAP_SYS_ADMIN"
    assert m["NoNewPrivileges"] == "yes"


def test_systemd_analyze_verify(installed):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    man = [] if shutil.which("man") else ["--man=no"]
    for unit in (UNIT, MOUNT_UNIT):
        p = run(["systemd-analyze", "verify", *man, str(unit)], check=False)
        assert p.returncode == 0, f"{unit}:\n{p.stdout}"


def test_systemd_analyze_security(installed):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    limits = {UNIT: 2.0, MOUNT_UNIT: 4.5}  # docs/packaging.md has the full reports
    for unit, limit in limits.items():
        p = run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)], check=False)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout)
        if m is None and "offline" in p.stdout:
            pytest.skip("this systemd-analyze has no --offline")
        assert m, p.stdout
        assert float(m.group(1)) <= limit, p.stdout


# --- upgrade / reinstall, remove, purge ---------------------------------------


def test_reinstall_keeps_every_secret(installed, deb):
    before = ENV_FILE.read_bytes()
    assert before == installed["env_bytes"]
    p = run(["dpkg", "-i", str(deb)])
    assert ENV_FILE.read_bytes() == before
    st = ENV_FILE.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    assert "generated" not in p.stdout


def test_reinstall_only_adds_missing_variables(installed, deb):
    original = ENV_FILE.read_bytes()
    env = read_env_file()
    try:
        # an admin's file: a custom line, no final newline, one credential gone
        edited = (f"# mine\nDGP_LOG_LEVEL=deltaglider_proxy=debug\n"
                  f"DGP_SECRET_ACCESS_KEY={env['DGP_SECRET_ACCESS_KEY']}\n"
                  f"DGP_ENCRYPTION_KEY={env['DGP_ENCRYPTION_KEY']}")
        ENV_FILE.write_text(edited)
        run(["dpkg", "-i", str(deb)])
        text = ENV_FILE.read_text()
        assert text.startswith(edited + "\n"), "existing lines untouched"
        new = read_env_file()
        assert new["DGP_SECRET_ACCESS_KEY"] == env["DGP_SECRET_ACCESS_KEY"]
        assert new["DGP_ENCRYPTION_KEY"] == env["DGP_ENCRYPTION_KEY"]
        assert new["DGP_LOG_LEVEL"] == "deltaglider_proxy=debug"
        assert re.fullmatch(r"[A-Z0-9]{16,}", new["DGP_ACCESS_KEY_ID"])
        assert text.count("DGP_ACCESS_KEY_ID=") == 1

        # the key is missing but data exists: no new key (it could not read
        # that data); a warning instead
        assert any(DATA.iterdir()), "the earlier test stored an object"
        ENV_FILE.write_text(f"DGP_ACCESS_KEY_ID={env['DGP_ACCESS_KEY_ID']}\n"
                            f"DGP_SECRET_ACCESS_KEY={env['DGP_SECRET_ACCESS_KEY']}\n")
        p = run(["dpkg", "-i", str(deb)])
        assert "DGP_ENCRYPTION_KEY" not in read_env_file()
        assert "No new key was generated" in p.stdout
    finally:
        ENV_FILE.write_bytes(original)
        ENV_FILE.chmod(0o600)


def test_remove_keeps_config_data_and_keys(installed):
    env_before = ENV_FILE.read_bytes()
    objects_before = sorted(p for p in DATA.rglob("*") if p.is_file())
    p = run(["dpkg", "--remove", PKG])
    assert "kept" in p.stdout
    assert not Path("/usr/bin/deltaglider_proxy").exists()
    assert not UNIT.exists()
    assert CONFIG.exists(), "remove keeps conffiles"
    assert ENV_FILE.read_bytes() == env_before
    assert sorted(p for p in DATA.rglob("*") if p.is_file()) == objects_before
    st = STATE.stat()
    assert stat.S_IMODE(st.st_mode) == 0o750
    assert user_exists()


def test_purge_removes_only_the_config(installed):
    env_before = ENV_FILE.read_bytes()
    objects_before = sorted(p for p in DATA.rglob("*") if p.is_file())
    assert objects_before, "the earlier test stored an object"
    p = run(["dpkg", "--purge", PKG])
    assert "config.yaml" in p.stdout and "rm -rf /var/lib/deltaglider_proxy" in p.stdout
    assert pkg_status() == ""
    assert not CONFIG.exists()
    assert ENV_FILE.read_bytes() == env_before
    assert HEX64.fullmatch(read_env_file()["DGP_ENCRYPTION_KEY"])
    assert sorted(p for p in DATA.rglob("*") if p.is_file()) == objects_before
    stored = [p for p in objects_before if p.name == "object.bin"]
    assert stored and all(p.read_bytes()[:4] == b"DGE1" for p in stored)
    assert not (WANTS / UNIT.name).exists(), "purge drops the enablement symlink"


# --- under a real systemd -----------------------------------------------------


def test_units_under_real_systemd(deb):
    """packaging/systemd-smoke-test: both units under systemd as PID 1 in a
    throw-away nspawn container (Type=notify start by dpkg, S3 round trip,
    stop/restart, the FUSE unit's sandbox, remove/purge). Runs where
    systemd-nspawn is installed (package systemd-container) or when
    DGP_SYSTEMD_SMOKE=1 (then the script installs it)."""
    if shutil.which("systemd-nspawn") is None and os.environ.get("DGP_SYSTEMD_SMOKE") != "1":
        pytest.skip("systemd-nspawn not installed (apt-get install systemd-container, "
                    "or DGP_SYSTEMD_SMOKE=1 to let the test install it)")
    if pkg_status():
        pytest.skip("the package is installed on this machine; run after the purge test")
    p = run([str(REPO / "packaging" / "systemd-smoke-test"), str(deb)], check=False, timeout=900)
    assert p.returncode == 0, p.stdout
    assert "FAIL" not in p.stdout and "all checks passed" in p.stdout, p.stdout
