#!/bin/sh
# Re-make the verify documents under tests/data/reports/ (see README.md there). Root, from the
# repository root: sh tests/data/reports/capture.sh
#
# The fleet captures need hosts that differ on one machine: each host is an sshd in its own
# network namespace (qcr-NAME), so the per-namespace sysctls and NICs of quiet-net.yaml differ
# between them. Everything is removed again on exit.
set -eu

DATA=tests/data/reports
QC=.venv/bin/quietcore
WORK=$(mktemp -d)
HOSTS=""

cleanup() {
    for name in $HOSTS; do
        [ -f "$WORK/$name.pid" ] && kill "$(cat "$WORK/$name.pid")" 2>/dev/null || true
        ip netns delete "qcr-$name" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

ssh-keygen -q -t ed25519 -N "" -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N "" -f "$WORK/client_key"
cp "$WORK/client_key.pub" "$WORK/authorized_keys"
mkdir -p /run/sshd

# start_host NAME INDEX INNER_INTERFACE [EXTRA_INTERFACE]: an sshd on 10.232.INDEX.2,
# reached through a veth whose inner end is INNER_INTERFACE.
start_host() {
    name=$1 index=$2 inner=$3 extra=${4:-}
    HOSTS="$HOSTS $name"
    ip netns add "qcr-$name"
    ip link add "qcrh$index" type veth peer name "$inner" netns "qcr-$name"
    ip addr add "10.232.$index.1/30" dev "qcrh$index"
    ip link set "qcrh$index" up
    ip -n "qcr-$name" addr add "10.232.$index.2/30" dev "$inner"
    ip -n "qcr-$name" link set "$inner" up
    ip -n "qcr-$name" link set lo up
    if [ -n "$extra" ]; then
        # No dummy driver on every kernel: a veth pair with both ends inside.
        ip -n "qcr-$name" link add "$extra" type veth peer name "${extra}p"
        ip -n "qcr-$name" link set "$extra" up
    fi
    cat >"$WORK/$name.conf" <<EOF
ListenAddress 10.232.$index.2
HostKey $WORK/host_key
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $WORK/$name.pid
Subsystem sftp internal-sftp
EOF
    echo "10.232.$index.2 $(cut -d' ' -f1-2 "$WORK/host_key.pub")" >>"$WORK/known_hosts"
    ip netns exec "qcr-$name" /usr/sbin/sshd -f "$WORK/$name.conf"
}

in_host() {
    name=$1
    shift
    ip netns exec "qcr-$name" "$@"
}

# inventory FILE NAME:INDEX...: a pyinfra inventory; index 0 is a port nothing listens on.
inventory() {
    file=$1
    shift
    {
        echo "common = {'ssh_user': 'root', 'ssh_key': '$WORK/client_key',"
        echo "          'ssh_known_hosts_file': '$WORK/known_hosts', 'ssh_allow_agent': False,"
        echo "          'ssh_look_for_keys': False, 'ssh_strict_host_key_checking': 'yes'}"
        echo "hosts = ["
        for entry in "$@"; do
            name=${entry%%:*} index=${entry##*:}
            if [ "$index" = 0 ]; then
                echo "    ('$name', {**common, 'ssh_hostname': '127.0.0.1', 'ssh_port': 9}),"
            else
                echo "    ('$name', {**common, 'ssh_hostname': '10.232.$index.2'}),"
            fi
        done
        echo "]"
    } >"$file"
}

# verify OUT ARGS...: the JSON document, whatever the exit status (drift is the point).
verify() {
    out=$1
    shift
    "$QC" verify --format json -o "$out" "$@" || true
}

start_host ok-a 1 qa bx
in_host ok-a sysctl -qw net.ipv4.tcp_fastopen=3 net.core.somaxconn=8192
in_host ok-a sh -c 'echo 1 >/sys/class/net/qa/queues/rx-0/rps_cpus;
                    echo 2 >/sys/class/net/bx/queues/rx-0/rps_cpus'
start_host refused-b 2 qx
start_host drift-c 3 qc
inventory "$WORK/before.py" ok-a:1 refused-b:2 drift-c:3 gone-d:0
verify "$DATA/fleet-before.json" -p "$DATA/quiet-net.yaml" "$WORK/before.py"

# A day later: ok-a lost its fastopen, drift-c had fastopen fixed and somaxconn changed, gone-d
# left the fleet, new-e joined it, and the profile dropped one sysctl and gained another.
in_host ok-a sysctl -qw net.ipv4.tcp_fastopen=1
in_host drift-c sysctl -qw net.ipv4.tcp_fastopen=3 net.core.somaxconn=1024
start_host new-e 5 qe bx
in_host new-e sysctl -qw net.ipv4.tcp_fastopen=3 net.core.somaxconn=8192 net.ipv4.tcp_timestamps=0
in_host new-e sh -c 'echo 1 >/sys/class/net/qe/queues/rx-0/rps_cpus;
                     echo 2 >/sys/class/net/bx/queues/rx-0/rps_cpus'
inventory "$WORK/after.py" ok-a:1 refused-b:2 drift-c:3 new-e:5
verify "$DATA/fleet-after.json" -p "$DATA/quiet-net-v2.yaml" "$WORK/after.py"

# An hour later drift-c's sshd is gone.
kill "$(cat "$WORK/drift-c.pid")"
verify "$DATA/fleet-outage.json" -p "$DATA/quiet-net-v2.yaml" "$WORK/after.py"

verify "$DATA/network-latency-local.json" -p network-latency @local
inventory "$WORK/jitter.py" gone-d:0
verify "$DATA/jitter-before.json" --jitter -p "$DATA/jitter-cpu1.yaml" @local "$WORK/jitter.py"
# The same while stress-ng competes for CPU 1: the rules that passed now fail.
stress-ng --quiet --cpu 1 --taskset 1 --timeout 5s &
sleep 1
verify "$DATA/jitter-after.json" --jitter -p "$DATA/jitter-cpu1.yaml" @local
wait
