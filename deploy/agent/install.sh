#!/bin/sh
# Installs cronium-agent on this host as a systemd service in remote-executor mode:
#
#   curl -fsSL https://<control-plane>/install.sh | sh -s -- \
#     --control-plane cp.example.com:8443 --join-token TOKEN --labels zone=eu
#
# Puts the binary in /usr/local/bin/cronium-agent, the config in
# /etc/cronium/agent.yaml (0600), state in /var/lib/cronium-agent, creates the
# `cronium` system user (in the `docker` group when there is one), installs
# /etc/systemd/system/cronium-agent.service and, when systemd runs, enables and
# (re)starts it. Run again to upgrade: without --control-plane/--join-token the
# existing config is kept.
set -euf # no globbing: labels and paths are never patterns

usage() {
  cat <<'EOF'
Usage: install.sh [options]

  --binary PATH|URL       cronium-agent executable: a file, or an http(s):// or
                          file:// URL (default: $CRONIUM_AGENT_URL)
  --control-plane ADDRS   host:port[,host:port…] of the control plane's agent link
  --join-token TOKEN      one-time enrollment token from the control plane
  --labels K=V[,K=V…]     routing labels (may be repeated)
  --slots N               jobs run at once (default 4)
  --dry-run               print what would be done, change nothing
  --prefix DIR            install under DIR (a staging root, for tests or
                          packaging): no user, no chown, no systemctl; the
                          written config and unit still name the final paths
  --help                  this text

--control-plane and --join-token are required unless /etc/cronium/agent.yaml
already exists (an upgrade).
EOF
}

die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
say() { printf 'install.sh: %s\n' "$*" >&2; }

binary=${CRONIUM_AGENT_URL:-}
control_plane=
join_token=
labels=
slots=
dry_run=0
prefix=

while [ $# -gt 0 ]; do
  case $1 in
    --*=*) opt=${1%%=*} val=${1#*=}; shift; set -- "$opt" "$val" "$@"; continue ;;
    --dry-run) dry_run=1; shift; continue ;;
    -h|--help) usage; exit 0 ;;
    --binary|--control-plane|--join-token|--labels|--slots|--prefix)
      [ $# -ge 2 ] || die "$1 needs a value" ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
  case $1 in
    --binary) binary=$2 ;;
    --control-plane) control_plane=$2 ;;
    --join-token) join_token=$2 ;;
    --labels) labels=${labels:+$labels,}$2 ;;
    --slots) slots=$2 ;;
    --prefix) prefix=${2%/} ;;
  esac
  shift 2
done

bin_path=$prefix/usr/local/bin/cronium-agent
conf_dir=$prefix/etc/cronium
conf=$conf_dir/agent.yaml
unit_path=$prefix/etc/systemd/system/cronium-agent.service
data_dir=$prefix/var/lib/cronium-agent

# ---- validate -------------------------------------------------------------
[ -n "$binary" ] || die "no binary: give --binary PATH|URL or set CRONIUM_AGENT_URL"
case $binary in
  http://*|https://*|file://*) ;;
  *) [ -f "$binary" ] || die "--binary $binary: no such file" ;;
esac
write_config=1
if [ -z "$control_plane$join_token" ] && [ -f "$conf" ]; then
  write_config=0
  [ -z "$labels$slots" ] || die "--labels/--slots rewrite the config: give --control-plane and --join-token too, or edit $conf"
else
  [ -n "$control_plane" ] || die "--control-plane is required"
  [ -n "$join_token" ] || die "--join-token is required"
fi
addr='([A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\]):[0-9]{1,5}'
if [ -n "$control_plane" ]; then
  printf '%s\n' "$control_plane" | grep -Eqx "$addr(,$addr)*" || die "--control-plane $control_plane: expected host:port[,host:port…]"
fi
case $join_token in *[[:space:]]*) die "--join-token must not contain spaces" ;; esac
case ${slots:-4} in ''|*[!0-9]*) die "--slots $slots: expected a number" ;; esac
[ "${slots:-4}" -ge 1 ] && [ "${slots:-4}" -le 1024 ] || die "--slots $slots: expected 1 to 1024"
if [ "$dry_run" = 0 ] && [ -z "$prefix" ] && [ "$(id -u)" != 0 ]; then
  die "run as root (… | sudo sh -s -- …), or use --prefix DIR / --dry-run"
fi

# YAML double-quoted scalar.
quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"; }

label_lines=
old_ifs=$IFS; IFS=,
for label in $labels; do
  IFS=$old_ifs
  label=$(printf '%s' "$label" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
  [ -n "$label" ] || continue
  printf '%s\n' "$label" | grep -Eq '^[A-Za-z0-9_./-]{1,63}=' || die "--labels: \"$label\" is not key=value"
  label_lines="$label_lines
  - $(quote "$label")"
done
IFS=$old_ifs

config_text() { # $1: the join token to show
  printf '# Written by cronium-agent install.sh. See agent.example.yaml for every key.\n'
  printf 'mode: remote-executor\n'
  printf 'control_plane: %s\n' "$(quote "$control_plane")"
  printf 'join_token: %s\n' "$(quote "$1")"
  if [ -n "$label_lines" ]; then printf 'labels:%s\n' "$label_lines"; else printf 'labels: []\n'; fi
  printf 'data_dir: /var/lib/cronium-agent\n'
  printf 'slots: %s\n' "${slots:-4}"
}

unit_text() {
  cat <<'EOF'
# systemd unit for cronium-agent, installed by deploy/agent/install.sh as
# /etc/systemd/system/cronium-agent.service.
[Unit]
Description=Cronium agent (runs jobs pushed by a Cronium control plane)
Wants=network-online.target
After=network-online.target docker.service
# Keep restarting for as long as it takes (the control plane may be down for a while).
StartLimitIntervalSec=0

[Service]
Type=simple
User=cronium
Group=cronium
# The Docker socket. install.sh comments this out on a host without a docker group.
SupplementaryGroups=docker
ExecStart=/usr/local/bin/cronium-agent --config /etc/cronium/agent.yaml
Restart=always
# Backoff: 1 s, growing to 60 s over 10 restarts (systemd >= 254; older ones use RestartSec).
RestartSec=1
RestartSteps=10
RestartMaxDelaySec=60
# SIGTERM drains: no new jobs, running ones finish and report. SIGKILL after 120 s.
KillSignal=SIGTERM
TimeoutStopSec=120

# State, credentials and the runtime helpers mounted into job containers. Job
# files must live here, not in /tmp: dockerd does not see this unit's private /tmp.
StateDirectory=cronium-agent
StateDirectoryMode=0750
ReadWritePaths=/var/lib/cronium-agent
UMask=0027
LimitNOFILE=65536

# Hardening. The Docker socket is a Unix socket: connecting needs no write access
# to /run. No MemoryDenyWriteExecute: V8's JIT needs it off.
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
CapabilityBoundingSet=
AmbientCapabilities=

[Install]
WantedBy=multi-user.target
EOF
}

has_docker_group=0
grep -q '^docker:' /etc/group 2>/dev/null && has_docker_group=1
system=0 # touch users, ownership and systemd: only for a real install
[ -z "$prefix" ] && [ "$dry_run" = 0 ] && system=1

# ---- act ------------------------------------------------------------------
# run CMD…: runs it, or prints it with --dry-run.
run() {
  if [ "$dry_run" = 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}
# put FILE MODE OWNER < content: writes through FILE.new and a rename.
put() {
  if [ "$dry_run" = 1 ]; then
    printf '+ write %s (mode %s, owner %s):\n' "$1" "$2" "$3"
    sed 's/^/    /'
    return
  fi
  (umask 077 && cat > "$1.new")
  chmod "$2" "$1.new"
  [ "$system" = 1 ] && chown "$3" "$1.new"
  mv -f "$1.new" "$1"
}

umask 022
[ "$dry_run" = 1 ] && say "dry run: nothing is changed"

# 1. The user (real installs only).
if [ -z "$prefix" ] && ! id cronium >/dev/null 2>&1; then
  nologin=$(command -v nologin || echo /bin/false)
  if command -v useradd >/dev/null 2>&1; then
    run useradd --system --user-group --no-create-home --home-dir /var/lib/cronium-agent --shell "$nologin" cronium
  elif command -v adduser >/dev/null 2>&1; then # busybox (Alpine)
    run addgroup -S cronium
    run adduser -S -D -H -h /var/lib/cronium-agent -s "$nologin" -G cronium cronium
  else
    die "neither useradd nor adduser found: create a system user 'cronium' and run again"
  fi
fi
if [ -z "$prefix" ] && [ "$has_docker_group" = 1 ]; then
  if command -v usermod >/dev/null 2>&1; then run usermod -aG docker cronium; else run addgroup cronium docker; fi
elif [ "$has_docker_group" = 0 ]; then
  say "warning: no docker group on this host: Docker jobs will fail until Docker is installed (then run this again)"
fi

# 2. Folders.
run mkdir -p "${bin_path%/*}" "$conf_dir" "${unit_path%/*}" "$data_dir"
run chmod 0750 "$data_dir"
[ "$system" = 1 ] && run chown cronium:cronium "$data_dir"

# 3. The binary: fetched next to its final place, checked, then renamed over it.
case $binary in
  http://*|https://*|file://*)
    if command -v curl >/dev/null 2>&1; then run curl -fsSL -o "$bin_path.new" "$binary"
    elif command -v wget >/dev/null 2>&1; then run wget -q -O "$bin_path.new" "$binary"
    else die "need curl or wget to download $binary"
    fi ;;
  *) run cp "$binary" "$bin_path.new" ;;
esac
run chmod 0755 "$bin_path.new"
if [ "$dry_run" = 1 ]; then
  printf '+ %s --version\n' "$bin_path.new"
else
  version=$("$bin_path.new" --version) || { rm -f "$bin_path.new"; die "$binary does not run on this host (wrong architecture?)"; }
  say "binary: $version"
fi
run mv -f "$bin_path.new" "$bin_path"

# 4. The config.
if [ "$write_config" = 1 ]; then
  if [ -f "$conf" ]; then run cp -p "$conf" "$conf.bak"; fi
  if [ "$dry_run" = 1 ]; then config_text '<redacted>'; else config_text "$join_token"; fi | put "$conf" 0600 cronium:cronium
else
  say "keeping $conf"
fi

# 5. The unit.
if [ "$has_docker_group" = 1 ]; then unit_text; else unit_text | sed 's/^SupplementaryGroups=docker$/# &/'; fi | put "$unit_path" 0644 root:root

# 6. Start.
if [ "$system" = 1 ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable cronium-agent
  systemctl restart cronium-agent
  say "cronium-agent is running; logs: journalctl -u cronium-agent -f"
elif [ "$dry_run" = 1 ] && [ -z "$prefix" ] && [ -d /run/systemd/system ]; then
  run systemctl daemon-reload
  run systemctl enable cronium-agent
  run systemctl restart cronium-agent
elif [ "$dry_run" = 1 ]; then
  say "dry run done"
else
  say "installed; systemd is not managing this install. To start the agent:"
  if [ -n "$prefix" ]; then
    say "  (staged under $prefix: copy it to / first)"
  fi
  say "  systemctl daemon-reload && systemctl enable --now cronium-agent      # with systemd"
  say "  su -s /bin/sh cronium -c '/usr/local/bin/cronium-agent --config /etc/cronium/agent.yaml'   # without"
fi
