#!/usr/bin/env bash
# Builds the framegate .deb from this checkout and prints its path on the last line.
#
#   packaging/build-deb.sh
#
# Installs what it lacks (cargo-deb with cargo; help2man with apt-get, only when the binary
# cannot print its own man page), builds the release binary, generates the man page and the
# shell completions under target/packaging/share/ (laid out as under /usr/share), then
# packages with `cargo deb --no-build`; the files, units and maintainer scripts are listed in
# Cargo.toml, [package.metadata.deb].
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

# The man page: from the clap definitions when the binary has a `man` subcommand, else
# help2man's rendering of --help.
if ! "$bin" man >"$share/man/man1/framegate.1" 2>/dev/null; then
    if ! command -v help2man >/dev/null; then
        apt-get update && apt-get install -y help2man
    fi
    help2man --no-info --section=1 --source="framegate $("$bin" --version | cut -d' ' -f2)" \
        --name="receives camera frames from many devices over TCP" \
        --output="$share/man/man1/framegate.1" "$bin"
fi

# Shell completions, from `framegate completions SHELL`. A binary without that subcommand
# gives a package without completions (and a warning here).
completion() { # SHELL PATH-UNDER-SHARE
    mkdir -p "$(dirname "$share/$2")"
    if ! "$bin" completions "$1" >"$share/$2" 2>/dev/null; then
        rm -f "$share/$2"
        echo "warning: $bin has no 'completions' subcommand: no $1 completions" >&2
    fi
}
completion bash bash-completion/completions/framegate
completion zsh zsh/vendor-completions/_framegate
completion fish fish/vendor_completions.d/framegate.fish
find "$share" -type d -empty -delete

cargo deb --no-build --no-separate-debug-symbols --strip --output target/debian/ | tee target/packaging/cargo-deb.out
deb=$(tail -n 1 target/packaging/cargo-deb.out)
if [ ! -f "$deb" ]; then
    echo "error: cargo deb did not print the path of a .deb (last line: $deb)" >&2
    exit 1
fi
echo "$deb"
