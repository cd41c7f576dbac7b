# Shared helpers for the benchmarks: a local cluster, a timestamped Lease watch, apiserver metrics, RSS.
# shellcheck shell=bash

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

bench_cluster_up() {  # bench_cluster_up DIR
  bash "$bench_root/e2e/cluster/cluster.sh" up "$1" --owner-pid $$ >/dev/null
  # shellcheck disable=SC1091
  source "$1/env"
}

# Streams every change of Lease NS/NAME as "epoch_seconds.micros holder" lines into FILE (holder "" when released).
lease_watch_start() {  # lease_watch_start NS NAME FILE
  local ns=$1 name=$2 file=$3
  (curl -sN --cacert "$CA_FILE" -H "Authorization: Bearer $ADMIN_TOKEN" \
     "$APISERVER_URL/apis/coordination.k8s.io/v1/namespaces/$ns/leases?watch=1&fieldSelector=metadata.name%3D$name" |
     while IFS= read -r line; do
       holder=$(sed -n 's/.*"holderIdentity":"\([^"]*\)".*/\1/p' <<<"$line")
       echo "$EPOCHREALTIME $holder"
     done >"$file") </dev/null >/dev/null 2>&1 &
  echo $!
}

# Waits until FILE has a line after time T0 whose holder is non-empty and not EXCLUDED; prints "time holder".
lease_wait_holder() {  # lease_wait_holder FILE T0 EXCLUDED TIMEOUT_S
  local file=$1 t0=$2 excluded=$3 timeout=$4 deadline=$((SECONDS + $4))
  while ((SECONDS < deadline)); do
    local hit
    hit=$(awk -v t0="$t0" -v ex="$excluded" '$1 > t0 && NF == 2 && $2 != ex { print; exit }' "$file")
    if [[ -n $hit ]]; then echo "$hit"; return 0; fi
    sleep 0.01
  done
  return 1
}

# Sum of apiserver_request_total for resource=leases (all verbs), from the apiserver's own /metrics.
lease_requests_total() {
  curl -s --cacert "$CA_FILE" -H "Authorization: Bearer $ADMIN_TOKEN" "$APISERVER_URL/metrics" |
    awk '/^apiserver_request_total\{/ && /resource="leases"/ { sum += $NF } END { printf "%d\n", sum }'
}

rss_mib() {  # rss_mib PID
  awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"
}

cpu_seconds() {  # cpu_seconds PID: user + system CPU time so far, in seconds
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.1f", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }
