#!/usr/bin/env bash
# Builds the libFuzzer target with clang (ASan + UBSan) when its sources changed, and fuzzes for
# the given number of seconds (default 60) from the seed corpus. Exits non-zero on a finding.
#
#   tests/fuzz/run.sh [seconds] [extra libFuzzer flags...]
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
shift || true
out=build/fuzz
mkdir -p "$out/corpus" "$out/artifacts"
bin="$out/admission_fuzz"
sources=(tests/fuzz/admission_fuzz.cc webhooks/admission_review.cc webhooks/admission_rules.cc policy/*.cc
         common/status.cc common/time_format.cc common/flags.cc)
stale=false
[ -x "$bin" ] || stale=true
for f in "${sources[@]}" policy/*.h webhooks/admission_review.h common/*.h; do
  [ "$f" -nt "$bin" ] && stale=true
done
if $stale; then
  clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -fno-omit-frame-pointer -I. -Ibuild/generated "${sources[@]}" -lsimdjson -o "$bin"
fi
cp -n tests/fuzz/corpus/* "$out/corpus/" 2>/dev/null || true
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  "$bin" "$out/corpus" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$out/artifacts/" -print_final_stats=1 "$@"
