#!/usr/bin/env bash
# What a node leaves behind on the machine, compared before and after it ran.
#
#   tests/node/leftovers.sh snapshot FILE   record the machine's state
#   tests/node/leftovers.sh check DIR FILE  fail, listing them, if processes or mounts naming
#                                           DIR remain, or anything differs from FILE: network
#                                           namespaces, links, addresses, nftables tables,
#                                           iptables chains, ipsets, cgroups, mounts
set -euo pipefail

state() {
  set +e +o pipefail
  echo "# netns"; ls /run/netns 2>/dev/null | sort
  echo "# links"; ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort
  echo "# addresses"; ip -o addr show | awk '{print $2, $4}' | sort
  echo "# nftables"; nft list tables 2>/dev/null | sort
  echo "# iptables chains"
  for t in filter nat mangle raw; do iptables-save -t "$t" 2>/dev/null | sed -n "s/^:\([^ ]*\).*/$t \1/p"; done | sort
  echo "# ipsets"; ipset list -n 2>/dev/null | sort
  echo "# cgroups"; find /sys/fs/cgroup -maxdepth 2 -type d -name 'bulkhead*' 2>/dev/null | sort
  echo "# mounts"; awk '{print $5}' /proc/self/mountinfo | grep -vE '^/(proc|sys|dev)(/|$)' | sort
  echo "# sysctls"
  cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null
}

case "${1:-}" in
  snapshot) state >"${2:?FILE}" ;;
  check)
    dir=${2:?DIR} before=${3:?FILE} left=0
    # (A watchdog notices its directory is gone within half a second.)
    for _ in $(seq 1 20); do
      procs=$(pgrep -af -- "$dir" | grep -v "leftovers.sh" || true)
      [ -z "$procs" ] && break
      sleep 0.25
    done
    [ -z "$procs" ] || { echo "leftovers: processes remain:"; echo "$procs"; left=1; }
    if ! diff <(cat "$before") <(state) >/tmp/leftovers.$$; then
      echo "leftovers: the machine differs from before the node (< before, > after):"
      cat /tmp/leftovers.$$
      left=1
    fi
    rm -f /tmp/leftovers.$$
    [ $left -eq 0 ] && echo "leftovers: none (processes, mounts, netns, links, rules, ipsets, cgroups)"
    exit $left ;;
  *) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 2 ;;
esac
