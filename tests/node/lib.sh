# shellcheck shell=bash
# Helpers for the node tests (tests/node/*.sh): timestamped logging, bounded waits, agnhost
# probes run in pods, and reachability matrices printed the way sig-network's NetworkPolicy e2e
# tests print theirs (rows from, columns to, '.' connected, 'X' blocked). Sourced, never run.
#
# For the probes, the sourcing script sets PODS (("ns/name" ...)), IP (pod -> pod IP), WORK (a
# scratch directory), AGNHOST (the binary's path in the image), PROBE_TIMEOUT and PROBE_JOBS.

FAILURES=0
WATCHERS=() TIMINGS=() LAST_PROBE=
declare -gA IP EXPECTED OBSERVED REASON

now_ms() { date +%s%3N; }
T0_MS=$(now_ms)
since() { echo $(($(now_ms) - $1)); }  # since T_MS: milliseconds elapsed since T_MS
if [ -t 1 ]; then B=$'\033[1m' D=$'\033[2m' G=$'\033[32m' R=$'\033[31m' N=$'\033[0m'; else
  B='' D='' G='' R='' N=''; fi
stamp() { local t; t=$(since "$T0_MS"); printf '%d.%d' $((t / 1000)) $((t % 1000 / 100)); }
step() { printf '\n%s== [+%ss] %s%s\n' "$B" "$(stamp)" "$*" "$N"; }
log() { printf '[+%ss] %s\n' "$(stamp)" "$*"; }
show() { printf '%s[+%ss] $ %s%s\n' "$D" "$(stamp)" "$*" "$N"; }
pass() { printf '%sok%s   %s\n' "$G" "$N" "$*"; }
fail() { printf '%sFAIL%s %s\n' "$R" "$N" "$*"; FAILURES=$((FAILURES + 1)); }
die() { printf '%sFATAL%s %s\n' "$R" "$N" "$*"; exit 1; }
check() { if "$@"; then pass "$DESC"; else fail "$DESC"; fi; }  # DESC=... check CMD...

# k ARGS...: kubectl, killed after 150 s so that no call can hang the test.
k() { timeout 150 kubectl "$@"; }
# run CMD...: shows the command, runs it, prints its output; $out and $rc keep them.
run() {
  if [ "$1" = k ]; then show "kubectl ${*:2}"; else show "$*"; fi
  rc=0
  out=$("$@" 2>&1) || rc=$?
  if [ -n "$out" ]; then printf '%s\n' "$out"; fi
  return 0
}
# until_true SECONDS CMD...: polls CMD every 0.2 s; false if it never succeeds in time.
until_true() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then return 1; fi
    sleep 0.2
  done
}
# watch_for FILE SECONDS CMD...: in the background, writes the time (ms) at which CMD first
# succeeds into FILE; gives up silently after SECONDS. Killed by the cleanup if still running.
watch_for() {
  local file=$1 secs=$2
  shift 2
  (until_true "$secs" "$@" && now_ms >"$file") &
  WATCHERS+=($!)
}
# read_ms FILE: the time a watcher wrote, or empty.
read_ms() { cat "$1" 2>/dev/null || true; }
# rel T_MS T0_MS: "+N ms" (or "never" when T_MS is empty).
rel() { if [ -n "$1" ]; then echo "+$(($1 - $2)) ms"; else echo never; fi; }

# probe_cmd FROM DEST PROTO: the command a probe runs, to reproduce it by hand.
probe_cmd() {
  echo "kubectl exec -n ${1%/*} ${1#*/} -c agnhost -- $AGNHOST connect $2" \
    "--timeout=$PROBE_TIMEOUT --protocol=$3"
}
# probe FROM DEST PROTO: one `agnhost connect` from pod FROM ("ns/name") to DEST ("ip:port" or
# "name:port"), as sig-network's prober runs it. Prints "connected", agnhost's own reason
# (TIMEOUT, REFUSED, OTHER: ..., UNKNOWN: ..., DNS: ...) or "EXEC(rc): ..." when kubectl itself
# failed; returns 0 only when connected.
probe() {
  local out rc=0 why
  out=$(timeout 30 kubectl exec -n "${1%/*}" "${1#*/}" -c agnhost -- \
    "$AGNHOST" connect "$2" --timeout="$PROBE_TIMEOUT" --protocol="$3" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo connected
    return 0
  fi
  why=$(grep -m1 -E '^(TIMEOUT|REFUSED|OTHER|UNKNOWN|DNS)' <<<"$out" || true)
  if [ -z "$why" ]; then why="EXEC($rc): $(tr "\n" " " <<<"$out" | cut -c1-300 | sed "s/ *$//")"; fi
  echo "$why"
  return 1
}
# mark REASON: '.' connected; 'X' refused or dropped (kube-router REJECTs: REFUSED, or a
# TIMEOUT, or an ICMP error agnhost reports as OTHER/UNKNOWN); '?' when the probe itself broke
# (a DNS failure or kubectl exec failing), which never counts as blocked.
mark() {
  case $1 in
    connected) echo . ;;
    DNS* | EXEC*) echo '?' ;;
    *) echo X ;;
  esac
}

# load_expected TEXT: fills EXPECTED["from to"] from a literal matrix whose header row is
# "- POD..." (PODS, in order) and whose rows are "FROM MARK...".
load_expected() {
  local row=() i
  EXPECTED=()
  while read -r -a row; do
    if [ ${#row[@]} -eq 0 ]; then continue; fi
    if [ "${row[0]}" = - ]; then
      [ "${row[*]:1}" = "${PODS[*]}" ] || die "expected matrix columns '${row[*]:1}' are not '${PODS[*]}'"
      continue
    fi
    [ ${#row[@]} -eq $((${#PODS[@]} + 1)) ] || die "expected matrix row '${row[*]}' has the wrong width"
    for i in "${!PODS[@]}"; do EXPECTED["${row[0]} ${PODS[$i]}"]=${row[$((i + 1))]}; done
  done <<<"$1"
  [ ${#EXPECTED[@]} -eq $((${#PODS[@]} * ${#PODS[@]})) ] || die "expected matrix is incomplete"
}
# print_matrix TITLE ARRAY: one table, in the format load_expected reads (so an observed table
# can be pasted into a script as the expectation).
print_matrix() {
  local -n table=$2
  local from to line
  echo "$1"
  line=$(printf '%-6s' -)
  for to in "${PODS[@]}"; do line+=$(printf '%-5s' "$to"); done
  echo "  $line"
  for from in "${PODS[@]}"; do
    line=$(printf '%-6s' "$from")
    for to in "${PODS[@]}"; do line+=$(printf '%-5s' "${table["$from $to"]:-?}"); done
    echo "  $line"
  done
}
# throttle PID...: returns once fewer than PROBE_JOBS of these processes are still running.
throttle() {
  local n p
  while :; do
    n=0
    for p in "$@"; do if kill -0 "$p" 2>/dev/null; then n=$((n + 1)); fi; done
    if [ "$n" -lt "$PROBE_JOBS" ]; then return 0; fi
    sleep 0.05
  done
}
# probe_cell DIR FROM TO PORT PROTO EXPECTED_MARK: writes "MARK<TAB>REASON" into DIR. A probe
# that fails where the flow should be open is tried once more after a second (a lost UDP
# datagram or SYN is otherwise indistinguishable from a policy); a success is never ambiguous,
# and a flow that should be blocked is never retried until it happens to fail.
probe_cell() {
  local r tries=1 i
  if [ "$6" = . ]; then tries=2; fi
  for ((i = 1; i <= tries; i++)); do
    if r=$(probe "$2" "${IP[$3]}:$4" "$5"); then break; fi
    if [ "$i" -lt "$tries" ]; then sleep 1; fi
  done
  printf '%s\t%s\n' "$(mark "$r")" "$r" >"$1/${2/\//_}-${3/\//_}"
}
# probe_matrix PORT PROTO EXPECTED_TEXT: probes every pod to every pod's IP on PORT/PROTO,
# PROBE_JOBS at a time; prints the observed matrix, and on a difference the expected one and
# every differing cell with its reason and the command that reproduces it. Returns 1 then.
probe_matrix() {
  local port=$1 proto=$2 title dir from to pids=() bad=0 m r answers
  title="${proto^^}/$port"
  load_expected "$3"
  dir=$(mktemp -d "$WORK/matrix.XXXXXX")
  log "$title: ${#PODS[@]}x${#PODS[@]} probes to pod IPs, $PROBE_JOBS at a time, each like:"
  show "$(probe_cmd "${PODS[0]}" "${IP[${PODS[1]}]}:$port" "$proto")"
  for from in "${PODS[@]}"; do
    for to in "${PODS[@]}"; do
      throttle "${pids[@]}"
      probe_cell "$dir" "$from" "$to" "$port" "$proto" "${EXPECTED["$from $to"]}" &
      pids+=($!)
    done
  done
  wait "${pids[@]}"
  for from in "${PODS[@]}"; do
    for to in "${PODS[@]}"; do
      IFS=$'\t' read -r m r <"$dir/${from/\//_}-${to/\//_}"
      OBSERVED["$from $to"]=$m
      REASON["$from $to"]=$r
    done
  done
  print_matrix "$title observed:" OBSERVED
  answers=$(for cell in "${!REASON[@]}"; do
    if [ "${OBSERVED[$cell]}" = X ]; then echo "${REASON[$cell]%%:*}"; fi; done | sort | uniq -c | xargs echo)
  echo "  blocked probes answered: ${answers:-none blocked}"
  explain_matrix "$port" "$proto" || bad=$((bad + 1))
  for from in "${PODS[@]}"; do
    for to in "${PODS[@]}"; do
      if [ "${OBSERVED["$from $to"]}" != "${EXPECTED["$from $to"]}" ]; then
        if [ "$bad" -eq 0 ]; then print_matrix "$title expected:" EXPECTED; echo "  differences:"; fi
        bad=$((bad + 1))
        echo "  $from -> $to: expected ${EXPECTED["$from $to"]}, observed ${OBSERVED["$from $to"]}" \
          "(${REASON["$from $to"]}); $(probe_cmd "$from" "${IP[$to]}:$port" "$proto")"
      fi
    done
  done
  [ "$bad" -eq 0 ]
}

# explain_matrix PORT PROTO: `bulkhead explain --matrix` over the same pods, from the cluster's
# objects, must equal the OBSERVED matrix (the node is the oracle). Skipped, saying so, when
# BULKHEAD_EXPLAIN (a bulkhead binary on this host) is not set.
explain_matrix() {
  local text row=() i bad=0
  if [ -z "${BULKHEAD_EXPLAIN:-}" ]; then
    log "bulkhead explain: not compared (BULKHEAD_EXPLAIN is not set)"
    return 0
  fi
  text=$("$BULKHEAD_EXPLAIN" explain --matrix --pods "$(IFS=,; echo "${PODS[*]}")" --port "$1/${2^^}") || {
    fail "bulkhead explain --matrix failed: $text"; return 1; }
  while read -r -a row; do
    if [ ${#row[@]} -ne $((${#PODS[@]} + 1)) ] || [ "${row[0]}" = - ]; then continue; fi
    for i in "${!PODS[@]}"; do
      if [ "${row[$((i + 1))]}" != "${OBSERVED["${row[0]} ${PODS[$i]}"]}" ]; then
        bad=$((bad + 1))
        echo "  bulkhead explain says ${row[$((i + 1))]} for ${row[0]} -> ${PODS[$i]}, the wire ${OBSERVED["${row[0]} ${PODS[$i]}"]}"
      fi
    done
  done <<<"$text"
  if [ "$bad" -eq 0 ]; then
    pass "bulkhead explain --matrix equals the observed ${2^^}/$1 matrix"
  else
    printf '%s\n' "$text"
    fail "bulkhead explain --matrix differs from the observed ${2^^}/$1 matrix in $bad cells"
  fi
  [ "$bad" -eq 0 ]
}

# expect_probe WANT FROM DEST PROTO DESC: one probe (a second one after a failure when WANT is
# '.', as in the matrix), shown with its answer, which stays in LAST_PROBE; passes when its
# mark is WANT ('.' connected, 'X' blocked, '?' failed in DNS).
expect_probe() {
  local want=$1 tries=1 i
  shift
  if [ "$want" = . ]; then tries=2; fi
  for ((i = 1; i <= tries; i++)); do
    show "$(probe_cmd "$1" "$2" "$3")"
    LAST_PROBE=$(probe "$1" "$2" "$3") || true
    echo "  -> $LAST_PROBE"
    if [ "$(mark "$LAST_PROBE")" = "$want" ]; then break; fi
    if [ "$i" -lt "$tries" ]; then sleep 1; fi
  done
  if [ "$(mark "$LAST_PROBE")" = "$want" ]; then pass "$4"; else fail "$4 (got: $LAST_PROBE)"; fi
}
# wait_until_denied FROM DEST PROTO T0 SECONDS NAME: probes back to back until one is blocked;
# prints and records in TIMINGS when, relative to T0 (ms), with the last probe that connected.
wait_until_denied() {
  local t last_ok='' deadline=$((SECONDS + $5)) r prev
  log "$6: probing $1 -> $2 $3 back to back (up to $5 s)"
  while [ "$SECONDS" -lt "$deadline" ]; do
    t=$(now_ms)
    if r=$(probe "$1" "$2" "$3"); then last_ok=$t; continue; fi
    if [ "$(mark "$r")" != X ]; then log "probe broke ($r); retrying"; continue; fi
    prev="no probe connected after t=0"
    if [ -n "$last_ok" ]; then prev="the last one that connected started $(rel "$last_ok" "$4")"; fi
    pass "$6: $1 -> $2 $3 blocked ($r) by a probe started $(rel "$t" "$4"); $prev"
    TIMINGS+=("$6: blocked by a probe started $(rel "$t" "$4"); $prev")
    return 0
  done
  fail "$6: $1 -> $2 $3 still connects after $5 s"
}
