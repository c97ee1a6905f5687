#!/usr/bin/env bash
# The main job, end to end on this machine: starts a real local Kubernetes control plane
# (etcd + kube-apiserver), shows it serving, and stops it again.
#
#   scripts/demo.sh          run and clean up
#   scripts/demo.sh --keep   leave the control plane running and print how to use it
set -euo pipefail
cd "$(dirname "$0")/.."

keep=false
[ "${1:-}" = "--keep" ] && keep=true

scripts/install-deps.sh
scripts/testenv.sh build

dir=$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-demo.XXXXXX")
rmdir "$dir"
cleanup() { $keep || scripts/testenv.sh stop "$dir"; }
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Starting a local control plane (etcd + kube-apiserver) in $dir"
scripts/testenv.sh start "$dir"
# shellcheck disable=SC1091
source "$dir/env"

step "The API server is serving"
kubectl version
kubectl get --raw /readyz?verbose | tail -n 3

if $keep; then
  step "Left running. To use it:"
  echo "  source $dir/env && kubectl get namespaces"
  echo "  scripts/testenv.sh stop $dir     # when done"
fi
