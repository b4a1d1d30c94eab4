#!/bin/sh
# Brings up everything the tests need, idempotently (< 2 s when all is up).
# Exports nothing: tests find things at fixed places.
#   - Postgres on 127.0.0.1:5432 (the machine's cluster)
#   - NATS with JetStream on 127.0.0.1:4222
#   - Docker engine on /var/run/docker.sock (docker.io from apt; data under .cache)
#   - base image cronium-test/base:bookworm, built offline with debootstrap
#     (rootfs tarball cached in .cache/base-rootfs.tar)
#   - OpenSSH server binaries (tests run their own sshd instances)
#   - Chromium at /usr/bin/chromium (the console's browser test)
# Overrides (mainly to test this script): CRONIUM_TEST_BASE_IMAGE,
# CRONIUM_TEST_BASE_TARBALL.
set -eu
root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
cd "$root"
cache="$root/.cache"
mkdir -p "$cache"

say() { printf 'test-services: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

base_image=${CRONIUM_TEST_BASE_IMAGE:-cronium-test/base:bookworm}
base_tar=${CRONIUM_TEST_BASE_TARBALL:-$cache/base-rootfs.tar}
docker_sock=/var/run/docker.sock
apt_log="$cache/apt.log"

# Serialise concurrent runs. Daemons started below get `9>&-` so they do
# not inherit (and hold) the lock.
exec 9>"$cache/test-services.lock"
flock 9

dock() { docker -H "unix://$docker_sock" "$@"; }

# --- apt packages -----------------------------------------------------------
apt_install() {
  say "apt-get install $* (log: .cache/apt.log)"
  # Services must not be started by package scripts (the machine's image has a
  # policy-rc.d that forbids it; add a temporary one if it is missing).
  tmp_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    tmp_policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' > "$tmp_policy"
    chmod +x "$tmp_policy"
  fi
  rc=0
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >>"$apt_log" 2>&1; then
    say "apt-get install failed; apt-get update and retry"
    { DEBIAN_FRONTEND=noninteractive apt-get update >>"$apt_log" 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >>"$apt_log" 2>&1; } || rc=$?
  fi
  [ -z "$tmp_policy" ] || rm -f "$tmp_policy"
  if [ "$rc" -ne 0 ]; then
    tail -n 20 "$apt_log" >&2
    die "apt-get install $* failed"
  fi
}

pkgs=
[ -x /usr/sbin/dockerd ] && command -v docker >/dev/null 2>&1 || pkgs="$pkgs docker.io"
[ -x /usr/sbin/sshd ] || pkgs="$pkgs openssh-server"
# The console's browser test drives Debian's Chromium (headless).
[ -x /usr/bin/chromium ] || pkgs="$pkgs chromium"
# debootstrap is only needed to build the base image from scratch.
[ -f "$base_tar" ] || command -v debootstrap >/dev/null 2>&1 || pkgs="$pkgs debootstrap"
# shellcheck disable=SC2086
[ -z "$pkgs" ] || apt_install $pkgs
mkdir -p /run/sshd

# --- services (started in parallel) ------------------------------------------
wait_for() { # SECONDS WHAT COMMAND...
  n=$(($1 * 10)) what=$2
  shift 2
  while ! "$@" >/dev/null 2>&1; do
    n=$((n - 1))
    [ "$n" -gt 0 ] || { say "ERROR: $what not ready"; return 1; }
    sleep 0.1
  done
}

# Is something listening on TCP port $2 of address $1 (hex, as in /proc/net/tcp)?
listening() {
  awk -v a="$1" -v p="$2" '$4 == "0A" && ($2 == a ":" p || $2 == "00000000:" p) { f = 1 } END { exit !f }' /proc/net/tcp
}
nats_up() { listening 0100007F 107E; } # 127.0.0.1:4222

pg_cluster() { pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | tail -n 1)" main "$1" 9>&- </dev/null >&2; }
pg_setting() { psql -h 127.0.0.1 -U postgres -d postgres -Atc "show $1" 2>/dev/null; }

start_postgres() {
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    say "starting Postgres"
    pg_cluster start || :
    wait_for 30 Postgres pg_isready -q -h 127.0.0.1 -p 5432
  fi
  # The dispatch benchmark times jobs from their commit (pg_xact_commit_timestamp); the setting needs a restart, once per machine.
  if [ "$(pg_setting track_commit_timestamp)" = off ]; then
    say "turning on track_commit_timestamp (restarts Postgres once)"
    psql -h 127.0.0.1 -U postgres -d postgres -qc "alter system set track_commit_timestamp = on" >&2
    pg_cluster restart
    wait_for 30 Postgres pg_isready -q -h 127.0.0.1 -p 5432
  fi
}

start_nats() {
  nats_up && return 0
  say "starting NATS"
  # The pidfile makes start-stop-daemon match only this service's process,
  # not any nats-server a test started on another port.
  start-stop-daemon --start --oknodo --background \
    --pidfile /run/cronium-nats-server.pid --make-pidfile --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log 9>&- </dev/null >&2
  wait_for 15 NATS nats_up
}

start_docker() {
  dock info >/dev/null 2>&1 && return 0
  pidfile="$cache/dockerd.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null &&
     grep -q dockerd "/proc/$(cat "$pidfile")/cmdline" 2>/dev/null; then
    say "dockerd (pid $(cat "$pidfile")) is starting; waiting"
  else
    say "starting dockerd (log: .cache/dockerd.log)"
    mkdir -p "$cache/docker-data" "$cache/docker-exec"
    # Own session: a Ctrl-C on `npm test` must not stop the engine.
    setsid nohup dockerd --iptables=false --ip6tables=false --bridge=none \
      --data-root "$cache/docker-data" --exec-root "$cache/docker-exec" \
      --pidfile "$pidfile" </dev/null >>"$cache/dockerd.log" 2>&1 9>&- &
  fi
  wait_for 30 "Docker engine (see .cache/dockerd.log)" dock info
}

start_postgres & pg_pid=$!
start_nats & nats_pid=$!
start_docker & docker_pid=$!
failed=
wait "$pg_pid" || failed="$failed Postgres"
wait "$nats_pid" || failed="$failed NATS"
wait "$docker_pid" || failed="$failed Docker"
[ -z "$failed" ] || die "could not start:$failed"

# --- base image ------------------------------------------------------------------
if ! dock image inspect "$base_image" >/dev/null 2>&1; then
  if [ ! -f "$base_tar" ]; then
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || :)
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$(mktemp -d "$cache/base-rootfs-build.XXXXXX")
    cleanup_rootfs() {
      # debootstrap mounts proc/sys inside the target; never delete through them.
      awk -v d="$rootfs/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || :; done
      rm -rf --one-file-system "$rootfs"
    }
    trap 'cleanup_rootfs' EXIT
    trap 'exit 130' INT TERM
    say "debootstrap bookworm from $mirror (~1 min, log: .cache/debootstrap.log)"
    if ! debootstrap --variant=minbase --include=python3,nodejs,ca-certificates \
         bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1; then
      tail -n 20 "$cache/debootstrap.log" >&2
      die "debootstrap failed"
    fi
    say "writing $base_tar"
    tar -C "$rootfs" -c . > "$base_tar.tmp"
    mv "$base_tar.tmp" "$base_tar"
    cleanup_rootfs
    trap - EXIT INT TERM
  fi
  say "docker import $base_tar as $base_image"
  dock import "$base_tar" "$base_image" >/dev/null
fi

say "ready: Postgres, NATS, Docker ($base_image), sshd"
