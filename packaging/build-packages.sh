#!/usr/bin/env bash
# Builds the Debian and RPM packages of Ringfence:
#   target/debian/ringfence_VERSION-1_ARCH.deb      (cargo-deb)
#   target/generate-rpm/ringfence-VERSION-1.ARCH.rpm (cargo-generate-rpm)
# The man pages and shell completions are generated here, by the release binary
# that goes into the packages, from its clap definition (`ringfence manpages`,
# `ringfence completions`), so they always match its --help.
# Needs cargo-deb and cargo-generate-rpm (integration/install-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --quiet
bin=target/release/ringfence
gen=target/generated
rm -rf "$gen"
mkdir -p "$gen/man" "$gen/completions"
"$bin" manpages "$gen/man" >/dev/null
# -n: no name or time stamp in the .gz, so rebuilding gives identical files.
gzip -9n "$gen"/man/*.8
"$bin" completions bash >"$gen/completions/ringfence.bash"
"$bin" completions zsh >"$gen/completions/_ringfence"
"$bin" completions fish >"$gen/completions/ringfence.fish"

cargo deb --no-build --locked --quiet
cargo generate-rpm
ls target/debian/ringfence_*.deb target/generate-rpm/ringfence-*.rpm
