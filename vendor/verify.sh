#!/usr/bin/env bash
# Show that a vendored crate differs from the version published on crates.io only by the
# hunks listed in vendor/PATCHES.md.
#
#   vendor/verify.sh            # every crate under vendor/
#   vendor/verify.sh --quiet    # no diff, only the summary (exit status as below)
#
# For each vendor/<name>-<version>/ it takes <name>-<version>.crate from cargo's registry
# cache (~/.cargo/registry/cache, or $CARGO_HOME), or else lets cargo download it into that
# cache (a throw-away project in a temp dir, `cargo fetch`); checks the archive's sha256
# against the one recorded in PATCHES.md; extracts it into a temp dir and diffs it against
# the vendored copy. Exit status 1 if a checksum does not match or a file differs that
# PATCHES.md does not name.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
patches="$here/PATCHES.md"
quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1

cargo_home="${CARGO_HOME:-$HOME/.cargo}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

find_crate() { # name version -> path of the .crate in the registry cache, or nothing
  { ls "$cargo_home"/registry/cache/*/"$1-$2.crate" 2>/dev/null || true; } | head -n 1
}

fetch_crate() { # name version: let cargo download the .crate into its cache
  local proj="$tmp/fetch-$1-$2"
  mkdir -p "$proj/src"
  printf '[package]\nname = "verify-fetch"\nversion = "0.0.0"\nedition = "2021"\n\n[dependencies]\n%s = "=%s"\n' \
    "$1" "$2" >"$proj/Cargo.toml"
  : >"$proj/src/lib.rs"
  (cd "$proj" && cargo fetch --quiet)
}

status=0
for dir in "$here"/*/; do
  dir="${dir%/}"
  base="$(basename "$dir")"
  [ -f "$dir/Cargo.toml" ] || continue
  name="${base%-*}"
  version="${base##*-}"

  crate="$(find_crate "$name" "$version")"
  if [ -z "$crate" ]; then
    echo "== $base: not in $cargo_home/registry/cache, asking cargo to fetch it"
    fetch_crate "$name" "$version"
    crate="$(find_crate "$name" "$version")"
  fi
  if [ -z "$crate" ]; then
    echo "!! $base: could not get $name-$version.crate" >&2
    status=1
    continue
  fi

  sum="$(sha256sum "$crate" | cut -d' ' -f1)"
  if grep -q "$sum" "$patches"; then
    echo "== $base: $crate (sha256 $sum, as recorded in PATCHES.md)"
  else
    echo "!! $base: sha256 $sum of $crate is not the one recorded in PATCHES.md" >&2
    status=1
  fi

  mkdir -p "$tmp/pristine"
  tar -xzf "$crate" -C "$tmp/pristine"
  # `target` only in case someone ran cargo in the vendored directory without
  # CARGO_TARGET_DIR; it is ignored by git anyway.
  changed="$(cd "$tmp/pristine" && diff -rq -x target "$base" "$dir" 2>&1 || true)"
  if [ -z "$changed" ]; then
    echo "   identical to the published crate"
    continue
  fi
  if [ "$quiet" = 0 ]; then
    (cd "$tmp/pristine" && diff -ruN -x target "$base" "$dir" || true)
  fi
  echo "   files that differ:"
  (cd "$tmp/pristine" && diff -rqN -x target "$base" "$dir" || true) |
    sed -E "s#^Files $base/([^ ]+) and .*#\1#" |
    while read -r file; do
      if grep -qF "$base/$file" "$patches"; then
        echo "     $file (listed in PATCHES.md)"
      else
        echo "     $file NOT LISTED in PATCHES.md"
        echo unlisted >>"$tmp/unlisted"
      fi
    done
done
[ -e "$tmp/unlisted" ] && status=1
exit "$status"
