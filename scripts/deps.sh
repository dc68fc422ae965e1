#!/usr/bin/env bash
# Install the Debian packages nindub builds against, if any are missing.
# Build: gcc/make; libraries: PCRE2 (tokenizer regexes), cJSON (tools, tests, server),
# libmicrohttpd (server); clang + compiler-rt for `make fuzz`; nodejs/npm (optional, used
# by tests that fetch a public Hugging Face tokenizer.json).
set -eu
pkgs="make gcc libpcre2-dev libcjson-dev libyaml-dev libmicrohttpd-dev libcurl4-openssl-dev clang libclang-rt-dev"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends $missing; then
  $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends $missing || {
    echo "deps: could not install$missing — install them with apt-get and retry" >&2; exit 1; }
fi
