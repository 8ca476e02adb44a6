#!/usr/bin/env bash
# The package test: builds the .deb, inspects it, installs it on this machine, runs the
# installed daemon as the framegate user, runs lintian, removes and purges it. Exits non-zero
# on the first failure.
#
#   sudo packaging/test-deb.sh        (needs root: it installs a package and runs as a user)
#
# No systemd needs to be running: without /run/systemd/system the maintainer scripts enable
# the unit (symlinks only) and start nothing, which this test checks. It binds port 1919 on
# every address, as the shipped config does, and talks to it over 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
step() { echo "test-deb: $*"; }

[ "$(id -u)" = 0 ] || fail "must run as root (dpkg -i, runs the daemon as the framegate user)"
need=()
command -v lintian >/dev/null || need+=(lintian)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update && apt-get install -y "${need[@]}"
fi
if dpkg -s framegate >/dev/null 2>&1; then
    fail "framegate is already installed here; purge it first (dpkg --purge framegate)"
fi

work=$(mktemp -d)
daemon=
cleanup() {
    [ -n "$daemon" ] && kill -KILL "$daemon" 2>/dev/null || true
    if dpkg -s framegate >/dev/null 2>&1; then
        echo "test-deb: purging the package left installed by a failed run" >&2
        dpkg --purge framegate >/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# ---- build -------------------------------------------------------------------------------
deb=$(packaging/build-deb.sh | tail -n 1)
[ -f "$deb" ] || fail "build-deb.sh printed no .deb path"
# The Debian changelog must name the version being packaged (Cargo's version, revision 1).
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
head -n 1 packaging/debian/changelog | grep -qF "framegate ($version-1)" \
    || fail "packaging/debian/changelog's first entry is not for $version-1: add one"
step "built $deb ($(du -h "$deb" | cut -f1))"

# ---- inspect -----------------------------------------------------------------------------
dpkg-deb --info "$deb" >"$work/info"
cat "$work/info"
grep -q '^ Package: framegate$' "$work/info" || fail "control: Package is not framegate"
grep -q '^ Depends: .*systemd | systemd-standalone-sysusers' "$work/info" \
    || fail "control: Depends lacks a systemd-sysusers provider"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$work/conffiles"
[ "$(cat "$work/conffiles")" = /etc/framegate/framegate.toml ] \
    || fail "conffiles is not exactly /etc/framegate/framegate.toml: $(cat "$work/conffiles")"

dpkg-deb --contents "$deb" >"$work/contents"
cat "$work/contents"
# "MODE OWNER/GROUP SIZE DATE TIME ./PATH" per entry.
while read -r mode owner _ _ _ path _; do
    case $owner in root/root | 0/0) ;; *) fail "$path is owned by $owner, not root:root" ;; esac
    case $path in
        */) want=drwxr-xr-x ;;
        ./usr/bin/framegate) want=-rwxr-xr-x ;;
        *) want=-rw-r--r-- ;;
    esac
    [ "$mode" = "$want" ] || fail "$path has mode $mode, not $want"
done < <(dpkg-deb --contents "$deb" | awk '{ print $1, $2, $3, $4, $5, $6 }')
expected=(
    ./usr/bin/framegate
    ./etc/framegate/framegate.toml
    ./usr/lib/systemd/system/framegate.service
    ./usr/lib/sysusers.d/framegate.conf
    ./usr/share/man/man1/framegate.1.gz
    ./usr/share/doc/framegate/copyright
    ./usr/share/doc/framegate/changelog.Debian.gz
    ./usr/share/doc/framegate/examples/framegate.socket
    ./usr/share/lintian/overrides/framegate
    ./usr/share/bash-completion/completions/framegate
    ./usr/share/zsh/vendor-completions/_framegate
    ./usr/share/fish/vendor_completions.d/framegate.fish
)
for path in "${expected[@]}"; do
    grep -q " $path\$" "$work/contents" || fail "the package lacks $path"
done
if grep -qE ' \./(var|run|tmp)/| \./usr/lib/systemd/system/framegate\.socket$' "$work/contents"; then
    fail "the package ships state, runtime files or the (not yet usable) socket unit"
fi
step "inspected: control, conffiles, ${#expected[@]} expected files, all root:root with sane modes"

# ---- lintian -----------------------------------------------------------------------------
# Tags the package overrides are justified in packaging/debian/lintian-overrides.
# (Decided from the output: --show-overrides makes lintian's exit status count overridden tags.)
lintian --fail-on none --display-info --show-overrides "$deb" 2>&1 | tee "$work/lintian"
if grep -qE '^[EW]: ' "$work/lintian"; then
    fail "lintian reported errors or warnings (above)"
fi
step "lintian: no error or warning; $(grep -c '^O: ' "$work/lintian") overridden, $(grep -c '^I: ' "$work/lintian") info"

# ---- install -----------------------------------------------------------------------------
dpkg -i "$deb" || fail "dpkg -i failed"
dpkg -s framegate | grep -q '^Status: install ok installed$' || fail "not installed ok"
getent passwd framegate >"$work/passwd" || fail "no framegate user after install"
IFS=: read -r _ _ uid _ _ home shell <"$work/passwd"
[ "$uid" -lt 1000 ] || fail "framegate is not a system user (uid $uid)"
[ "$home" = /var/lib/framegate ] || fail "framegate's home is $home"
case $shell in */nologin | /bin/false) ;; *) fail "framegate has a login shell: $shell" ;; esac
getent group framegate >/dev/null || fail "no framegate group after install"
[ "$(stat -c '%U:%G %a' /var/lib/framegate)" = "framegate:framegate 750" ] \
    || fail "/var/lib/framegate is $(stat -c '%U:%G %a' /var/lib/framegate), not framegate:framegate 750"
# (bookworm's deb-systemd-helper links to /lib/..., the same file on a merged-/usr system)
case $(readlink /etc/systemd/system/multi-user.target.wants/framegate.service) in
    /lib/systemd/system/framegate.service | /usr/lib/systemd/system/framegate.service) ;;
    *) fail "framegate.service was not enabled" ;;
esac
if [ ! -d /run/systemd/system ] && pgrep -u framegate -x framegate >/dev/null; then
    fail "a framegate process runs although systemd does not"
fi
step "installed: system user $uid, /var/lib/framegate framegate:framegate 750, unit enabled"

/usr/bin/framegate check --config /etc/framegate/framegate.toml || fail "framegate check failed"
# With the man page installed, verify also resolves Documentation=man:framegate(1).
man_check=no
command -v man >/dev/null && man_check=yes
systemd-analyze verify --man="$man_check" /usr/lib/systemd/system/framegate.service \
    || fail "systemd-analyze verify framegate.service"
systemd-analyze verify --man="$man_check" /usr/share/doc/framegate/examples/framegate.socket \
    /usr/lib/systemd/system/framegate.service || fail "systemd-analyze verify framegate.socket"
# Exposure on systemd's 0-100 scale (shown as 0.0-10.0); 1.1 when this test was written.
systemd-analyze security --offline=yes --threshold=15 /usr/lib/systemd/system/framegate.service \
    >"$work/security" || { cat "$work/security"; fail "security exposure above 1.5"; }
step "unit verified; $(grep -o 'Overall exposure level.*' "$work/security")"

# ---- the installed daemon, as its unit runs it (user, umask, no privileges) ---------------
# Where systemd runs, the package started the service: stop it to free the port.
if [ -d /run/systemd/system ]; then
    systemctl stop framegate.service
fi
printf '\xff\xd8\xff\xe0test-deb frame\xff\xd9' >"$work/frame.jpg"
setpriv --reuid=framegate --regid=framegate --init-groups --no-new-privs --inh-caps=-all \
    --bounding-set=-all sh -c 'umask 0027; exec /usr/bin/framegate run --config "$1"' \
    sh /etc/framegate/framegate.toml 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 100); do
    grep -q 'framegate ready' "$work/daemon.log" && break
    kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log"; fail "the daemon exited at start"; }
    sleep 0.1
done
grep -q 'framegate ready' "$work/daemon.log" || { cat "$work/daemon.log"; fail "not ready in 10 s"; }
/usr/bin/framegate send --to 127.0.0.1:1919 --device test-deb --retry-for 10s "$work/frame.jpg" \
    || { cat "$work/daemon.log"; fail "framegate send was not acknowledged"; }
stored=$(find /var/lib/framegate/frames/test-deb -type f -name '*.jpg')
[ -n "$stored" ] || fail "no frame stored under /var/lib/framegate/frames/test-deb"
cmp -s "$stored" "$work/frame.jpg" || fail "$stored differs from the frame sent"
[ "$(stat -c '%U:%G %a' "$stored")" = "framegate:framegate 640" ] \
    || fail "$stored is $(stat -c '%U:%G %a' "$stored"), not framegate:framegate 640"
# systemctl reload sends SIGHUP (ExecReload): the daemon must keep running.
kill -HUP "$daemon"
sleep 0.5
kill -0 "$daemon" 2>/dev/null || { cat "$work/daemon.log"; fail "SIGHUP (systemctl reload) stopped the daemon"; }
kill -TERM "$daemon"
status=0
wait "$daemon" || status=$?
daemon=
[ "$status" = 0 ] || { cat "$work/daemon.log"; fail "the daemon exited $status after SIGTERM"; }
step "daemon as user framegate: stored $stored (framegate:framegate 640), survived SIGHUP, exit 0 on SIGTERM"

# ---- remove, then purge ------------------------------------------------------------------
dpkg -r framegate || fail "dpkg -r failed"
[ ! -e /usr/bin/framegate ] || fail "/usr/bin/framegate left after remove"
[ -f /etc/framegate/framegate.toml ] || fail "remove deleted the conffile (only purge may)"
[ -d /var/lib/framegate/frames ] || fail "remove deleted /var/lib/framegate (only purge may)"
dpkg --purge framegate || fail "dpkg --purge failed"
for gone in /etc/framegate /var/lib/framegate /usr/lib/systemd/system/framegate.service \
    /etc/systemd/system/multi-user.target.wants/framegate.service; do
    [ ! -e "$gone" ] && [ ! -L "$gone" ] || fail "$gone left after purge"
done
if dpkg -s framegate >/dev/null 2>&1; then fail "dpkg still knows framegate after purge"; fi
getent passwd framegate >/dev/null || fail "purge removed the framegate user (it keeps it on purpose)"
step "removed (conffile and state kept), purged (config, state, unit links gone; the user stays)"

echo "test-deb: OK in $((SECONDS - started)) s"
