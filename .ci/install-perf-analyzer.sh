#!/usr/bin/env bash
# Triton's perf_analyzer for the gRPC/HTTP client tests. PyPI's `perf-analyzer` 2.60.0 ships the real binary,
# but only as a manylinux_2_38 wheel (plain `pip install perf-analyzer` here resolves to a 0.1.0 placeholder),
# and the binary needs glibc >= 2.38 and GLIBCXX_3.4.32: Debian 12 has glibc 2.36, so it fails with
# "version `GLIBC_2.38' not found". This script unpacks the wheel plus Debian 13 (trixie) libc6/libstdc++6/
# libgcc-s1/libssl3t64/zlib1g into $2 (not into /) and writes $1/perf_analyzer, a wrapper that runs the binary
# through trixie's dynamic loader with only those libraries. Usage: install-perf-analyzer.sh [bin dir] [lib dir]
set -euo pipefail
dest="${1:-.venv/bin}"
root="$(mkdir -p "${2:-.venv/perf_analyzer}" && cd "${2:-.venv/perf_analyzer}" && pwd)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_38_x86_64 -d "$tmp" perf-analyzer==2.60.0
python -m zipfile -e "$tmp"/perf_analyzer-2.60.0-*.whl "$tmp/wheel"
install -m 0755 "$tmp/wheel/perf_analyzer/bin/perf_analyzer" "$root/perf_analyzer.bin"
if ! "$root/perf_analyzer.bin" --version >/dev/null 2>&1; then
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs"
  # the machine's own Debian mirror (the first active "URIs:" of its deb822 sources), with the trixie suite
  mirror=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v -- '-security' | head -n 1)
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror} trixie main" >"$tmp/trixie.list"
  o=(-oDir::Etc::SourceList="$tmp/trixie.list" -oDir::Etc::SourceParts=/dev/null -oDir::State::Lists="$tmp/lists" -oDir::Cache="$tmp/cache")
  apt-get "${o[@]}" update -q >/dev/null
  (cd "$tmp/debs" && apt-get "${o[@]}" download libc6 libstdc++6 libgcc-s1 libssl3t64 zlib1g >/dev/null 2>&1)
  rm -rf "$root/sysroot"
  for deb in "$tmp"/debs/*.deb; do dpkg -x "$deb" "$root/sysroot"; done
  lib="$root/sysroot/usr/lib/x86_64-linux-gnu"
  printf '#!/bin/sh\nexec "%s/ld-linux-x86-64.so.2" --library-path "%s" "%s/perf_analyzer.bin" "$@"\n' "$lib" "$lib" "$root" >"$dest/perf_analyzer"
else
  printf '#!/bin/sh\nexec "%s/perf_analyzer.bin" "$@"\n' "$root" >"$dest/perf_analyzer"
fi
chmod 0755 "$dest/perf_analyzer"
"$dest/perf_analyzer" --version
