#!/usr/bin/env bash
# Throw-away single-node Ceph RGW (RADOS Gateway) S3 endpoint on loopback,
# for integration tests and the docs/scale-out.md example.
#
#   ceph_rgw.sh start DIR PORT   # S3 on http://127.0.0.1:PORT, state under DIR
#   ceph_rgw.sh stop  DIR        # kill the daemons started from DIR
#
# Topology: one monitor, one memstore OSD (data lives in RAM only), cephx off,
# no ceph-mgr, one radosgw with the beast frontend. Everything (config, mon
# store, OSD dir, logs, admin sockets, pids) lives under DIR; every command is
# run with -c DIR/ceph.conf, so /etc/ceph and /var/lib/ceph are never used.
# Daemons run in the foreground (-f) in their own session, backgrounded by
# this script; their pids go to DIR/pids/*.pid. Works without systemd.
#
# Needs (Debian 12, Ceph 16.2): apt-get install -y --no-install-recommends \
#   ceph-mon ceph-osd radosgw        (plus curl, uuid-runtime or python3)
#
# Env overrides:
#   CEPH_RGW_ACCESS_KEY / CEPH_RGW_SECRET_KEY  S3 credentials of user "test"
#   CEPH_MON_PORT      monitor port (default: first free port from PORT+1)
#   CEPH_MEMSTORE_BYTES  OSD capacity (default 2 GiB); memstore only reports
#       it (writes are refused near full), RAM use grows with stored data
#   CEPH_START_TIMEOUT   seconds to wait for each stage (default 120)
#   CEPH_RGW_SSE_OVER_HTTP=1  accept x-amz-server-side-encryption on plain
#       HTTP (rgw_crypt_require_ssl = false). Without it such a PUT gets
#       400 InvalidRequest; with it Ceph 16 accepts the header but stores the
#       object unencrypted and sends no SSE header back.
#
# On success `start` prints, on stdout, shell-sourceable lines:
#   CEPH_RGW_ENDPOINT=http://127.0.0.1:PORT
#   CEPH_RGW_ACCESS_KEY=...
#   CEPH_RGW_SECRET_KEY=...
# Progress goes to stderr. On failure it exits non-zero after printing the
# last 50 lines of every daemon log.
set -euo pipefail

ACCESS_KEY=${CEPH_RGW_ACCESS_KEY:-dgtestaccess}
SECRET_KEY=${CEPH_RGW_SECRET_KEY:-dgtestsecret1234567890}
MEMSTORE_BYTES=${CEPH_MEMSTORE_BYTES:-2147483648}
TIMEOUT=${CEPH_START_TIMEOUT:-120}
DAEMONS=(mon.a osd.0 client.rgw.a)   # start order

usage() { echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2; }
say()   { echo "ceph_rgw: $*" >&2; }

die() {
  say "ERROR: $*"
  local f
  for f in "$DIR"/log/*.log "$DIR"/log/*.stdout; do
    [ -s "$f" ] || continue
    echo "----- last 50 lines of $f -----" >&2
    tail -n 50 "$f" >&2
  done
  stop_daemons
  exit 1
}

# ceph CLI against our cluster only; --connect-timeout so a dead mon
# fails instead of hanging forever.
cephc() { ceph -c "$DIR/ceph.conf" --connect-timeout 10 "$@"; }

# running PID: exists and is not a zombie (daemons killed by die() stay
# zombies of this script until it exits).
running() { kill -0 "$1" 2>/dev/null && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
pid_alive() { [ -f "$1" ] && running "$(cat "$1")"; }

port_free() {
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
# Ceph and beast bind with SO_REUSEADDR, so a port in TIME_WAIT is free.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND once a second.
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what did not happen within ${secs}s"
    sleep 1
  done
}

# start_daemon NAME COMMAND...: run in its own session (setsid) so it
# survives this script and the test harness' terminal, record its pid.
start_daemon() {
  local name=$1; shift
  setsid "$@" </dev/null >>"$DIR/log/$name.stdout" 2>&1 &
  echo $! >"$DIR/pids/$name.pid"
}

# term_wait SECS NAME...: SIGTERM those daemons of DIR together, wait up to
# SECS for all of them to exit, then SIGKILL what is left.
term_wait() {
  local secs=$1 name pidf pid n pids=() alive=(); shift
  for name in "$@"; do
    pidf="$DIR/pids/$name.pid"
    [ -f "$pidf" ] || continue
    pid=$(cat "$pidf")
    # only signal it if it still is the ceph daemon we started
    if running "$pid" &&
       tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-c $DIR/ceph.conf"; then
      kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    fi
    rm -f "$pidf"
  done
  for ((n = 0; n < secs * 10; n++)); do
    alive=()
    for pid in ${pids[@]+"${pids[@]}"}; do running "$pid" && alive+=("$pid"); done
    [ ${#alive[@]} -eq 0 ] && return 0
    sleep 0.1
  done
  for pid in "${alive[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

# One by one, in reverse start order, each while the mon is still up: an
# OSD whose mon is gone waits osd_mon_shutdown_timeout (5 s) to report
# itself down. radosgw 16.2 sometimes hangs on SIGTERM (it arms a 120 s
# alarm); it keeps no state of its own, so it gets SIGKILL after 2 s.
stop_daemons() {
  term_wait 2 client.rgw.a
  term_wait 10 osd.0
  term_wait 10 mon.a
}

write_conf() {
  local fsid
  fsid=$(uuidgen 2>/dev/null || python3 -c 'import uuid; print(uuid.uuid4())')
  cat >"$DIR/ceph.conf" <<EOF
# Generated by tests/upstreams/ceph_rgw.sh -- throw-away test cluster.
[global]
fsid = $fsid
# One monitor on loopback, messenger v2 only (one port, every 16.x client
# speaks it). public_addr keeps the OSD/RGW on loopback too.
mon_host = [v2:127.0.0.1:$MON_PORT]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr1 = false
ms_bind_msgr2 = true
# No cephx: no keyrings to create or distribute.
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# That cephx-only warning would keep "ceph health" at HEALTH_WARN.
mon_warn_on_insecure_global_id_reclaim_allowed = false
# Every path under DIR, nothing in /var/lib/ceph, /var/run/ceph, /var/log/ceph.
run_dir = $DIR/run
admin_socket = $DIR/run/\$name.asok
log_file = $DIR/log/\$name.log
mon_data = $DIR/mon.\$id
osd_data = $DIR/osd.\$id
rgw_data = $DIR/rgw.\$id
keyring = $DIR/keyring
# (the mon writes its cluster log here; default is /var/log/ceph)
mon_cluster_log_file = $DIR/log/cluster.log
# A single OSD: every pool has one replica, and that must be allowed.
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
# ...and the CRUSH rule must not insist on separate hosts.
osd_crush_chooseleaf_type = 0
# RGW creates ~7 pools on first start; keep PGs few so one OSD takes them
# all quickly (defaults: 32 PGs/pool, 250 PGs/OSD).
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_max_pg_per_osd = 1000
# The autoscaler lives in ceph-mgr, which we do not run.
osd_pool_default_pg_autoscale_mode = off
# No ceph-mgr at all: without this "ceph health" turns HEALTH_ERR
# (MGR_DOWN, "no active mgr") 120 s after mkfs. RGW does not need a mgr;
# only the pool/PG usage numbers of "ceph -s"/"ceph df" stay empty.
mon_mgr_mkfs_grace = 31536000
# Each osdmap change (OSD boot, every pool RGW creates) waits for the next
# paxos proposal, 1 s apart by default: ~2 s per pool, ~10 s of RGW's first
# start. A single mon can propose at once.
paxos_propose_interval = 0.05
# Only used in tests: let them delete pools freely.
mon_allow_pool_delete = true
# The mon refuses to run when its disk is <5% free; tests may run on a
# full-ish /tmp, and the mon store here is tiny.
mon_data_avail_crit = 1
mon_data_avail_warn = 2

[osd]
# RAM-only object store: no block device, no disk I/O; the data is thrown
# away with DIR (start always begins with an empty cluster).
osd_objectstore = memstore
memstore_device_bytes = $MEMSTORE_BYTES
# Register itself in the CRUSH map (root=default, host=\$hostname) at boot.
osd_crush_update_on_start = true

[client.rgw.a]
# radosgw forces ms_mon_client_mode = secure by default, and auth "none"
# only works with crc mode: without this it loops on
# "send_auth_request get_initial_auth_request returned -13".
ms_mon_client_mode = crc
rgw_frontends = beast endpoint=127.0.0.1:$PORT
# No rgw_dns_name: every request is path-style (http://127.0.0.1:PORT/bucket).
EOF
  if [ "${CEPH_RGW_SSE_OVER_HTTP:-0}" = 1 ]; then
    echo "rgw_crypt_require_ssl = false" >>"$DIR/ceph.conf"
  fi
}

s3_answers() { curl -fsS -o /dev/null --max-time 3 "http://127.0.0.1:$PORT/"; }
osd_up()     { cephc osd dump 2>/dev/null | grep -q '^osd.0 up'; }

cmd_start() {
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)

  # Idempotent-ish: already running from this DIR -> just print the endpoint.
  if [ -f "$DIR/ceph.conf" ] && pid_alive "$DIR/pids/client.rgw.a.pid" &&
     pid_alive "$DIR/pids/osd.0.pid" && pid_alive "$DIR/pids/mon.a.pid" &&
     grep -q "endpoint=127.0.0.1:$PORT\$" "$DIR/ceph.conf" && s3_answers; then
    say "already running from $DIR"
    print_endpoint; return 0
  fi
  for c in ceph ceph-mon ceph-osd radosgw radosgw-admin monmaptool curl python3; do
    command -v "$c" >/dev/null ||
      { say "ERROR: missing $c (apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw curl)"; exit 1; }
  done
  # Otherwise start from scratch: kill leftovers, drop only what we made.
  stop_daemons
  rm -rf "$DIR/ceph.conf" "$DIR/keyring" "$DIR/monmap" "$DIR/mon.a" \
         "$DIR/osd.0" "$DIR/rgw.a" "$DIR/run" "$DIR/log" "$DIR/pids"
  mkdir -p "$DIR/run" "$DIR/log" "$DIR/pids" "$DIR/osd.0" "$DIR/rgw.a"
  # The OSD binds 4 ports from ms_bind_port_min..max (6800-7300) before
  # radosgw starts, so a PORT in there could be taken from under it.
  if [ "$PORT" -ge 6800 ] && [ "$PORT" -le 7300 ]; then
    die "PORT $PORT is in Ceph's daemon port range 6800-7300; pick another"
  fi
  port_free "$PORT" || die "port $PORT is already in use"
  if [ -n "${CEPH_MON_PORT:-}" ]; then
    MON_PORT=$CEPH_MON_PORT
    port_free "$MON_PORT" || die "mon port $MON_PORT is already in use"
  else
    MON_PORT=$((PORT + 1))
    until port_free "$MON_PORT"; do
      MON_PORT=$((MON_PORT + 1))
      [ $MON_PORT -lt $((PORT + 50)) ] || die "no free mon port in PORT+1..PORT+49"
    done
  fi

  local t0=$SECONDS
  write_conf
  local conf="$DIR/ceph.conf" fsid
  fsid=$(sed -n 's/^fsid = //p' "$conf")

  # --- monitor -----------------------------------------------------------
  say "mon.a on 127.0.0.1:$MON_PORT"
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_PORT]" \
    "$DIR/monmap" >"$DIR/log/monmaptool.log" 2>&1 || die "monmaptool failed"
  ceph-mon -c "$conf" -i a --mkfs --monmap "$DIR/monmap" \
    >"$DIR/log/mon-mkfs.log" 2>&1 || die "ceph-mon --mkfs failed"
  start_daemon mon.a ceph-mon -c "$conf" -i a -f
  wait_for "$TIMEOUT" "mon.a answering" cephc mon stat

  # --- OSD ---------------------------------------------------------------
  local osd_uuid id
  osd_uuid=$(uuidgen 2>/dev/null || python3 -c 'import uuid; print(uuid.uuid4())')
  id=$(cephc osd create "$osd_uuid") || die "ceph osd create failed"
  [ "$id" = 0 ] || die "expected osd id 0, got '$id'"
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" \
    >"$DIR/log/osd-mkfs.log" 2>&1 || die "ceph-osd --mkfs failed"
  start_daemon osd.0 ceph-osd -c "$conf" -i 0 -f
  say "osd.0 (memstore, $MEMSTORE_BYTES bytes) starting"
  wait_for "$TIMEOUT" "osd.0 up" osd_up

  # --- RGW ---------------------------------------------------------------
  # On first start it creates the default realm/zonegroup/zone and its pools,
  # then opens the beast listener: an HTTP answer means S3 is ready.
  start_daemon client.rgw.a radosgw -c "$conf" -n client.rgw.a -f
  say "radosgw on 127.0.0.1:$PORT starting"
  wait_for "$TIMEOUT" "radosgw answering on port $PORT" s3_answers
  for name in "${DAEMONS[@]}"; do
    pid_alive "$DIR/pids/$name.pid" || die "$name died"
  done

  # --- S3 user -----------------------------------------------------------
  radosgw-admin -c "$conf" user create --uid=test --display-name=test \
    --access-key="$ACCESS_KEY" --secret="$SECRET_KEY" \
    >"$DIR/log/user-create.log" 2>&1 || die "radosgw-admin user create failed: $(cat "$DIR/log/user-create.log")"
  say "S3 ready in $((SECONDS - t0))s"
  print_endpoint
}

print_endpoint() {
  echo "CEPH_RGW_ENDPOINT=http://127.0.0.1:$PORT"
  echo "CEPH_RGW_ACCESS_KEY=$ACCESS_KEY"
  echo "CEPH_RGW_SECRET_KEY=$SECRET_KEY"
}

cmd_stop() {
  [ -d "$DIR" ] || { say "no such dir $DIR"; return 0; }
  DIR=$(cd "$DIR" && pwd)
  stop_daemons
  say "stopped daemons of $DIR"
}

case "${1:-}" in
  start) [ $# -eq 3 ] || usage; DIR=$2; PORT=$3; cmd_start ;;
  stop)  [ $# -eq 2 ] || usage; DIR=$2; cmd_stop ;;
  *) usage ;;
esac
