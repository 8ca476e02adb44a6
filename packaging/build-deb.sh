#!/usr/bin/env bash
# Builds the framegate .deb from this checkout and prints its path on the last line.
#
#   packaging/build-deb.sh
#
# Installs cargo-deb if it lacks it, builds the release binary, generates the man page and
# the shell completions from the clap definitions (`framegate man`, `framegate completions`)
# under target/packaging/share/ (laid out as under /usr/share), then packages with
# `cargo deb --no-build`; the files, units and maintainer scripts are listed in Cargo.toml,
# [package.metadata.deb].
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --locked --version 3.8.0
fi

cargo build --release
bin=${CARGO_TARGET_DIR:-target}/release/framegate
share=target/packaging/share
rm -rf "$share"
mkdir -p "$share/man/man1"
"$bin" man >"$share/man/man1/framegate.1"
for shell_path in bash:bash-completion/completions/framegate zsh:zsh/vendor-completions/_framegate \
    fish:fish/vendor_completions.d/framegate.fish; do
    path=$share/${shell_path#*:}
    mkdir -p "$(dirname "$path")"
    "$bin" completions "${shell_path%%:*}" >"$path"
done

cargo deb --no-build --no-separate-debug-symbols --strip --output target/debian/ \
    | tee target/packaging/cargo-deb.out
deb=$(tail -n 1 target/packaging/cargo-deb.out)
if [ ! -f "$deb" ]; then
    echo "error: cargo deb did not print the path of a .deb (last line: $deb)" >&2
    exit 1
fi
echo "$deb"
