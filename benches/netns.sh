#!/bin/sh
# Runs `cargo bench --bench ingest` with the daemon and the devices in two network namespaces
# joined by a veth link, instead of both on loopback. On loopback, the kernel delivers each
# packet inside the sender's system call: every native ACK the daemon writes is received,
# TCP and all, by the device's socket on the daemon's thread, and the device's poller is woken
# from there too. Devices on their own machines do that work on their own CPUs. A veth link
# with threaded NAPI moves it to kernel threads (napi/fgbench-*), off the daemon's loop.
#
# Usage (root, iproute2 and ethtool): benches/netns.sh [filter words], e.g.
#   FG_BENCH_ROUNDS=15 benches/netns.sh native
# The namespaces fgbench-d and fgbench-c (10.77.0.1 and 10.77.0.2) exist only during the run.
set -eu
cd "$(dirname "$0")/.."
D=fgbench-d C=fgbench-c
if [ "$(id -u)" != 0 ]; then
    echo "benches/netns.sh: creating network namespaces needs root" >&2
    exit 1
fi
for tool in ip ethtool; do
    command -v "$tool" >/dev/null || {
        echo "benches/netns.sh: needs $tool (apt-get install -y iproute2 ethtool)" >&2
        exit 1
    }
done
# Build outside the namespaces (cargo may want the network); the run below only runs it.
cargo bench --bench ingest --no-run
cleanup() {
    ip netns del "$D" 2>/dev/null || true
    ip netns del "$C" 2>/dev/null || true
}
cleanup
trap cleanup EXIT INT TERM
ip netns add "$D"
ip netns add "$C"
ip link add fgbench-vd type veth peer name fgbench-vc
ip link set fgbench-vd netns "$D"
ip link set fgbench-vc netns "$C"
ip -n "$D" addr add 10.77.0.1/24 dev fgbench-vd
ip -n "$C" addr add 10.77.0.2/24 dev fgbench-vc
link_up() { # namespace, device
    ip -n "$1" link set lo up
    ip -n "$1" link set "$2" up
    # GRO makes veth receive through NAPI; threaded NAPI runs that in its own kernel thread
    # rather than in whichever task sent the packet.
    ip netns exec "$1" ethtool -K "$2" gro on >/dev/null
    ip netns exec "$1" sh -c "echo 1 > /sys/class/net/$2/threaded"
}
link_up "$D" fgbench-vd
link_up "$C" fgbench-vc
ip netns exec "$C" env FG_BENCH_DAEMON_NETNS="$D" FG_BENCH_BIND=10.77.0.1 \
    cargo bench --bench ingest -- "$@"
