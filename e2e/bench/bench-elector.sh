#!/usr/bin/env bash
# singleton-elect beside client-go's leader-election example (built from the same Debian source tree), on one local
# control plane, each group of three candidates on its own Lease at 15s/10s/2s. Prints one table. singleton-elect's
# leader renews every --renew-interval (default a third of the lease: 5s), client-go's every retry period.
# Usage: e2e/bench/bench-elector.sh [BUILD_DIR]   (BENCH_WINDOW=60 seconds of steady state to count requests)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
build=$(cd "${1:-$bench_root/build}" && pwd)
elect="$build/cli/singleton-elect"
window=${BENCH_WINDOW:-60}
[[ -x $elect ]] || { echo "bench-elector: $elect not built (make build)" >&2; exit 1; }

dir=$(mktemp -d /tmp/singleton-bench-elector.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  bash "$bench_root/e2e/cluster/cluster.sh" down "$dir/cluster" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM
log() { echo "bench-elector: $*" >&2; }

log "starting a local control plane"
bench_cluster_up "$dir/cluster"
peer="$BIN_DIR/leader-election-example"

declare -A result

start_group() {  # start_group KIND LEASE -> sets group_pids (id=pid)
  local kind=$1 lease=$2
  declare -gA group_pids=()
  for id in one two three; do
    if [[ $kind == client-go ]]; then
      LE_LEASE_DURATION=15s LE_RENEW_DEADLINE=10s LE_RETRY_PERIOD=2s \
        "$peer" -kubeconfig "$KUBECONFIG" -lease-lock-name "$lease" -lease-lock-namespace default -id "$id" \
        >"$dir/$kind-$id.log" 2>&1 &
    else
      "$elect" --lease "default/$lease" --identity "$id" --kubeconfig "$KUBECONFIG" \
        --lease-duration 15s --renew-deadline 10s --retry-period 2s >"$dir/$kind-$id.log" 2>&1 &
    fi
    group_pids[$id]=$!
    pids+=($!)
  done
}

run_group() {  # run_group KIND LEASE
  local kind=$1 lease=$2
  local watch_file="$dir/$kind.watch"
  local watcher
  watcher=$(lease_watch_start default "$lease" "$watch_file")
  pids+=("$watcher")
  sleep 0.5
  log "$kind: three candidates on default/$lease"
  local t0=$EPOCHREALTIME
  start_group "$kind" "$lease"
  local first leader
  first=$(lease_wait_holder "$watch_file" "$t0" "" 60) || { log "$kind: no leader"; tail "$dir/$kind"-*.log >&2; exit 1; }
  leader=${first#* }
  result[$kind,startup]=$(ms_between "$t0" "${first%% *}")

  sleep 5  # settle: every candidate has started and synced
  log "$kind: steady state for ${window}s"
  local before after
  before=$(lease_requests_total)
  sleep "$window"
  after=$(lease_requests_total)
  result[$kind,rpm]=$(awk -v d=$((after - before)) -v w="$window" 'BEGIN { printf "%d", d * 60 / w }')
  local rss=()
  for id in one two three; do rss+=("$(rss_mib "${group_pids[$id]}")"); done
  result[$kind,rss]="${rss[*]}"

  log "$kind: SIGKILL the leader ($leader)"
  local t_kill=$EPOCHREALTIME next
  kill -KILL "${group_pids[$leader]}"
  next=$(lease_wait_holder "$watch_file" "$t_kill" "$leader" 120) || { log "$kind: no takeover"; exit 1; }
  result[$kind,kill]=$(ms_between "$t_kill" "${next%% *}")
  leader=${next#* }

  sleep 4  # the survivors see the new leader renew
  log "$kind: SIGTERM the leader ($leader)"
  local t_term=$EPOCHREALTIME
  kill -TERM "${group_pids[$leader]}"
  next=$(lease_wait_holder "$watch_file" "$t_term" "$leader" 120) || { log "$kind: no takeover"; exit 1; }
  result[$kind,term]=$(ms_between "$t_term" "${next%% *}")
  for id in one two three; do kill -TERM "${group_pids[$id]}" 2>/dev/null || true; done
  sleep 1
  kill "$watcher" 2>/dev/null || true
}

run_group client-go bench-client-go
run_group singleton-elect bench-singleton

avg() { awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.1f", s / NF }' <<<"$1"; }
printf '\nElector benchmark: 3 candidates per group, lease 15s / renew 10s / retry 2s, steady window %ss\n' "$window"
printf '%-34s %18s %18s   %s\n' "" "client-go example" "singleton-elect" "target (singleton-elect)"
printf '%-34s %18s %18s   %s\n' "startup election (ms)" "${result[client-go,startup]}" "${result[singleton-elect,startup]}" "-"
printf '%-34s %18s %18s   %s\n' "lease API requests/min (group)" "${result[client-go,rpm]}" "${result[singleton-elect,rpm]}" "<= 12 (renew interval 5s)"
printf '%-34s %18s %18s   %s\n' "RSS per candidate, avg (MiB)" "$(avg "${result[client-go,rss]}")" "$(avg "${result[singleton-elect,rss]}")" "<= 10"
printf '%-34s %18s %18s   %s\n' "  (each)" "${result[client-go,rss]// /,}" "${result[singleton-elect,rss]// /,}" ""
printf '%-34s %18s %18s   %s\n' "takeover after SIGKILL (ms)" "${result[client-go,kill]}" "${result[singleton-elect,kill]}" "<= 15200 (LeaseDuration + 200 ms)"
printf '%-34s %18s %18s   %s\n' "takeover after SIGTERM (ms)" "${result[client-go,term]}" "${result[singleton-elect,term]}" "<= 200"
echo "(SIGKILL takeover is measured from the kill; the lease was last renewed up to one renew interval (client-go: one retry period) before it.)"
