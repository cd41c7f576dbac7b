#!/usr/bin/env bash
# singleton-operator on a local control plane with the simulated kubelet: failover latency, idle API writes, memory
# and cold start, each printed beside its target. Three operator replicas throughout (the figures about one process,
# RSS, are the leader's; followers are shown too). Timings are measured by singleton-bench-operator from the arrival
# times of events on one pod watch, which also audits every run: never two pods labelled leader, tokens only grow.
# Usage: e2e/bench/bench-operator.sh [BUILD_DIR]
# Each failover with a target starts on a quiet cluster (every workload steady, then BENCH_SETTLE_MS without a
# failover), so it measures one failover, not its contention with the last one's aftermath (the deleted pod
# recreated, status, events); a back-to-back run of deletions is reported beside it.
# Env: BENCH_WORKLOADS=1000 (cold start and memory), BENCH_FAILOVERS=100 (per kind), BENCH_IDLE_WORKLOADS=100,
#      BENCH_AGENT_FAILOVERS (per kind, agent workloads; default BENCH_FAILOVERS), BENCH_IDLE_WINDOW=60 (seconds), BENCH_SETTLE_MS=200, BENCH_STALLS=3 (15 s apiserver stalls, each followed by
#      a failover timed from the recovery), BENCH_OPERATOR_WORKERS (the operator's --workers;
#      default: its own default), BENCH_KEEP=1 (keep logs)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
build=$(cd "${1:-$bench_root/build}" && pwd)
operator="$build/operator/singleton-operator"
kubelet="$build/e2e/kubelet/singleton-sim-kubelet"
driver="$build/e2e/bench/singleton-bench-operator"
for b in "$operator" "$kubelet" "$driver"; do
  [[ -x $b ]] || { echo "bench-operator: $b not built (make build)" >&2; exit 1; }
done
workloads=${BENCH_WORKLOADS:-1000}
failovers=${BENCH_FAILOVERS:-100}
idle_workloads=${BENCH_IDLE_WORKLOADS:-100}
idle_window=${BENCH_IDLE_WINDOW:-60}
settle_ms=${BENCH_SETTLE_MS:-200}
stalls=${BENCH_STALLS:-3}
worker_flags=()
[[ -n ${BENCH_OPERATOR_WORKERS:-} ]] && worker_flags=(--workers "$BENCH_OPERATOR_WORKERS")
# 6 simulated nodes of 1,000 pods each: room for the cold start, the idle and the failover workloads together.
nodes=6

dir=$(mktemp -d /tmp/singleton-bench-operator.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if ((rc != 0)) || [[ -n ${BENCH_KEEP:-} ]]; then
    bash "$bench_root/e2e/cluster/cluster.sh" down "$dir/cluster" --keep >/dev/null 2>&1 || true
    echo "bench-operator: logs kept in $dir (cluster logs in $dir/cluster/logs)" >&2
  else
    bash "$bench_root/e2e/cluster/cluster.sh" down "$dir/cluster" >/dev/null 2>&1 || true
    rm -rf "$dir"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "bench-operator: $*" >&2; }
started=$SECONDS

log "starting a local control plane"
bench_cluster_up "$dir/cluster"
export KUBECONFIG
kubectl apply -f "$bench_root/crds/singleton.dev_singletonworkloads.yaml" >/dev/null
bash "$bench_root/e2e/cluster/wait-established.sh" singletonworkloads.singleton.dev
kubectl create namespace singleton-system >/dev/null
"$kubelet" --nodes "$nodes" --heartbeat 2s --workers 8 --log-level warn >"$dir/kubelet.log" 2>&1 &
kubelet_pid=$!
pids+=($!)
disown
declare -A op_pid
for id in op-0 op-1 op-2; do
  "$operator" --identity "$id" --leader-election-namespace singleton-system --health-probe-bind-address 0 \
    --metrics-bind-address 0 --log-level warn "${worker_flags[@]}" >"$dir/operator-$id.log" 2>&1 &
  op_pid[$id]=$!
  pids+=($!)
  disown
done
operator_leader() { kubectl get lease singleton-operator -n singleton-system -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
deadline=$((SECONDS + 90))
until [[ -n $(operator_leader) ]]; do
  ((SECONDS < deadline)) || { log "no operator leader"; tail "$dir"/operator-*.log >&2; exit 1; }
  sleep 0.2
done
until [[ $(kubectl get nodes --no-headers 2>/dev/null | grep -c ' Ready ') == "$nodes" ]]; do sleep 0.2; done
leader=$(operator_leader)
first_leader=$leader
log "operator leader: $leader (3 replicas, lease 15s / renew 10s / retry 2s, ${BENCH_OPERATOR_WORKERS:-default} workers); $nodes simulated nodes"

bench() { "$driver" --kubeconfig "$KUBECONFIG" "$@"; }
val() { local v; v=$(sed -n "s/^$1=//p" "$2" 2>/dev/null || true); echo "${v:--}"; }
rss_100="-" rss_scale_leader="-" rss_scale_all="-"
# "name=cpu-seconds ..." for every process of the run; cpu_spent BEFORE AFTER prints the differences.
cpu_all() {
  local name
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler; do
    printf '%s=%s ' "$name" "$(cpu_seconds "$(cat "$dir/cluster/run/$name.pid" 2>/dev/null)")"
  done
  printf 'sim-kubelet=%s ' "$(cpu_seconds "$kubelet_pid")"
  for name in op-0 op-1 op-2; do printf '%s=%s ' "$name" "$(cpu_seconds "${op_pid[$name]}")"; done
}
cpu_spent() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    n = split(a, x, " "); for (i = 1; i <= n; i++) { split(x[i], kv, "="); before[kv[1]] = kv[2] }
    n = split(b, y, " "); for (i = 1; i <= n; i++) {
      split(y[i], kv, "="); d = kv[2] - before[kv[1]]; total += d; out = out sprintf("%s %.0f, ", kv[1], d)
    }
    printf "%stogether %.0f", out, total }'
}
cpu_coldstart="-"
rss_all() { for id in op-0 op-1 op-2; do printf '%s%s ' "$id" "$([[ $id == "$leader" ]] && echo '*')=$(rss_mib "${op_pid[$id]}")"; done; }

sleep 5
rss_idle_leader=$(rss_mib "${op_pid[$leader]}")
rss_idle_all=$(rss_all)
log "RSS idle (no workloads): $rss_idle_all"

failed_steps=()
step() {  # step NAME OUTFILE DRIVER-ARGS...: runs the driver; a failure is reported and the run goes on
  local name=$1 out=$2
  shift 2
  if ! bench "$@" >"$out" 2>"$out.err"; then
    failed_steps+=("$name")
    log "$name FAILED (see $out.err):"
    tail -n 15 "$out.err" >&2
    return 1
  fi
  cat "$out.err" >&2
}

# --- failover latency ----------------------------------------------------------------------------------------------
if ((failovers > 0)); then
  log "failover latency: 10 workloads x 3 pods, $failovers failovers by deleting the leader pod"
  step "create failover workloads" "$dir/fo-create.out" --namespace bench-failover create --count 10 --replicas 3 --prefix fo
  step "failover workloads steady" "$dir/fo-steady.out" --namespace bench-failover steady --count 10 --replicas 3 \
    --prefix fo --timeout 120
  step "failovers (delete)" "$dir/failover-delete.out" --namespace bench-failover failover --prefix fo --workloads 10 \
    --replicas 3 --count "$failovers" --mode delete --settle-ms "$settle_ms" --timeout 120 || true
  log "failover latency: $failovers failovers by the leader turning not Ready (sim.singleton.dev/ready=false)"
  step "failovers (not ready)" "$dir/failover-notready.out" --namespace bench-failover failover --prefix fo \
    --workloads 10 --replicas 3 --count "$failovers" --mode notready --settle-ms "$settle_ms" --timeout 120 || true
  log "failover latency: $failovers failovers by deletion, back to back (each during the last one's aftermath)"
  step "failovers (delete, back to back)" "$dir/failover-b2b.out" --namespace bench-failover failover --prefix fo \
    --workloads 10 --replicas 3 --count "$failovers" --mode delete --timeout 120 || true
fi

# --- agent workloads: the leader's process, not only its label -----------------------------------------------------
# Each replica runs singleton-agent around singleton-activity (real processes under the simulated kubelet, in-cluster
# config, the RBAC of manifests/agent-rbac.yaml). A failover is timed from the trigger to the successor's COMMAND
# logging its start (CLOCK_MONOTONIC, the driver's clock), and every run checks that no two active windows of a
# workload overlap. The agents' cost in steady state: their RSS, and the API requests the apiserver served per
# workload per minute beyond a window of the same length without them.
agent_failovers=${BENCH_AGENT_FAILOVERS:-$failovers}
agent_bin="$build/cli/singleton-agent"
activity_bin="$build/tests/singleton-activity"
agent_rss="-" agent_requests="-"
if ((agent_failovers > 0)); then
  activity_dir="$dir/activity"
  mkdir -p "$activity_dir"
  chmod 0777 "$activity_dir"
  kubectl create namespace bench-agent >/dev/null
  kubectl apply -n bench-agent -f "$bench_root/manifests/agent-rbac.yaml" >/dev/null
  agent_flags=(--agent "$agent_bin" --activity "$activity_bin" --activity-dir "$activity_dir")
  log "agent workloads: API requests in a 30 s window before they exist (the baseline)"
  step "requests, baseline" "$dir/agent-baseline.out" --namespace bench-agent requests --seconds 30 || true
  log "agent workloads: 10 x 3 pods running singleton-agent -- singleton-activity"
  step "create agent workloads" "$dir/agent-create.out" --namespace bench-agent create --count 10 --replicas 3 \
    --prefix ag "${agent_flags[@]}"
  step "agent workloads steady" "$dir/agent-steady.out" --namespace bench-agent steady --count 10 --replicas 3 \
    --prefix ag --timeout 180 || true
  sleep 10
  step "requests, agents steady" "$dir/agent-requests.out" --namespace bench-agent requests --seconds 30 || true
  agent_requests=$(awk -v a="$(val requests_per_min "$dir/agent-requests.out")" -v b="$(val requests_per_min "$dir/agent-baseline.out")" \
    'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.1f", (a - b) / 10 }')
  # This run's agents only (tests elsewhere on the machine may run agents too).
  agent_pids=$(pgrep -d, -f -- "$agent_bin -- $activity_bin $activity_dir" || true)
  if [[ -n $agent_pids ]]; then
    agent_rss=$(ps -o rss= -p "$agent_pids" | awk '{ s += $1; if ($1 > m) m = $1; n++ }
      END { if (n) printf "%.1f / %.1f (n=%d)", s / n / 1024, m / 1024, n; else print "-" }')
  fi
  log "agent failovers: $agent_failovers by deleting the leader pod (COMMAND stops at once on SIGTERM)"
  step "agent failovers (delete)" "$dir/agent-delete.out" --namespace bench-agent failover --prefix ag --workloads 10 \
    --replicas 3 --count "$agent_failovers" --mode delete --settle-ms "$settle_ms" --timeout 120 "${agent_flags[@]}" || true
  log "agent failovers: $agent_failovers by the leader turning not Ready (its process stays alive)"
  step "agent failovers (not ready)" "$dir/agent-notready.out" --namespace bench-agent failover --prefix ag \
    --workloads 10 --replicas 3 --count "$agent_failovers" --mode notready --settle-ms "$settle_ms" --timeout 120 \
    "${agent_flags[@]}" || true
fi

# --- recovery from a stalled apiserver ------------------------------------------------------------------------------
if ((failovers > 0 && stalls > 0)); then
  log "apiserver stall: $stalls times SIGSTOP for 15 s (past the operator's renew deadline), SIGCONT, then delete a leader pod"
  step "failovers after a stall" "$dir/failover-stall.out" --namespace bench-failover failover --prefix fo \
    --workloads 10 --replicas 3 --count "$stalls" --mode delete --settle-ms "$settle_ms" --timeout 120 \
    --stall-pid "$(cat "$dir/cluster/run/kube-apiserver.pid")" --stall-seconds 15 || true
fi

# --- idle writes ---------------------------------------------------------------------------------------------------
if ((idle_window > 0)); then
  log "idle writes: $idle_workloads workloads x 3 pods, steady, then a ${idle_window}s window"
  step "create idle workloads" "$dir/idle-create.out" --namespace bench-idle create --count "$idle_workloads" \
    --replicas 3 --prefix idle --nodes "sim-node-:$nodes"
  step "idle workloads steady" "$dir/idle-steady.out" --namespace bench-idle steady --count "$idle_workloads" \
    --replicas 3 --prefix idle --timeout 300 || true
  sleep 10 # status writes after the last election have landed
  step "idle window" "$dir/idle.out" --namespace bench-idle idle --seconds "$idle_window" || true
  rss_100=$(rss_all)
fi

# --- cold start and memory at scale --------------------------------------------------------------------------------
if ((workloads > 0)); then
  log "cold start: $workloads workloads x 3 pods created at once, until every one has a labelled leader"
  cpu_before=$(cpu_all)
  step "cold start" "$dir/coldstart.out" --namespace bench-scale coldstart --count "$workloads" --replicas 3 \
    --prefix cs --nodes "sim-node-:$nodes" --timeout 600 || true
  cpu_coldstart=$(cpu_spent "$cpu_before" "$(cpu_all)")
  sleep 10
  leader=$(operator_leader) # the stalls above may have moved it
  rss_scale_leader=$(rss_mib "${op_pid[$leader]}")
  rss_scale_all=$(rss_all)
  if ((failovers > 0)); then
    # Under that load, one more sample of failovers (a check that latency holds, not a figure with a target).
    log "failover latency with $workloads more workloads in the cluster: 30 failovers by deletion"
    step "failovers under load" "$dir/failover-loaded.out" --namespace bench-failover failover --prefix fo \
      --workloads 10 --replicas 3 --count 30 --mode delete --timeout 300 || true
  fi
fi

# --- the fencing stamp's cost on an operator takeover ----------------------------------------------------------------
# docs/design.md "the label fence": a takeover writes no stamp; a term's first label change in a workload stamps
# each pod an earlier term may still write (3 per workload here), once per workload per term.
takeover_n=$((workloads < 100 ? workloads : 100))
takeover_seconds="-"
if ((workloads > 0 && failovers > 0)); then
  bench --namespace bench-scale stamps --seconds 45 >"$dir/takeover.out" 2>"$dir/takeover.out.err" &
  stamps_pid=$!
  sleep 5
  old_leader=$(operator_leader)
  log "operator takeover with $workloads workloads: SIGKILL the leader $old_leader, stamps counted for 45 s"
  kill -KILL "${op_pid[$old_leader]}"
  killed_at=$SECONDS
  deadline=$((SECONDS + 60))
  until leader=$(operator_leader) && [[ -n $leader && $leader != "$old_leader" ]]; do
    ((SECONDS < deadline)) || { log "no new operator leader after the SIGKILL"; break; }
    sleep 0.1
  done
  takeover_seconds=$((SECONDS - killed_at))
  wait "$stamps_pid" || failed_steps+=("takeover stamps")
  log "new operator leader $leader after ${takeover_seconds} s; first failover of $takeover_n of those workloads in its term"
  step "failovers, first in the term" "$dir/failover-first.out" --namespace bench-scale failover --prefix cs \
    --workloads "$takeover_n" --replicas 3 --count "$takeover_n" --mode delete --settle-ms "$settle_ms" --timeout 300 || true
  log "the same $takeover_n workloads failed over again in the same term"
  step "failovers, second in the term" "$dir/failover-second.out" --namespace bench-scale failover --prefix cs \
    --workloads "$takeover_n" --replicas 3 --count "$takeover_n" --mode delete --settle-ms "$settle_ms" --timeout 300 || true
fi
log "done in $((SECONDS - started)) s"

d="$dir/failover-delete.out"
b="$dir/failover-b2b.out"
n="$dir/failover-notready.out"
l="$dir/failover-loaded.out"
s="$dir/failover-stall.out"
row() { printf '%-58s %14s   %s\n' "$1" "$2" "$3"; }
echo
echo "Operator benchmark: 3 operator replicas (leader $first_leader), $nodes simulated nodes, local control plane on $(nproc) CPUs"
row "figure" "measured" "target"
row "failover after leader pod deletion, p50 (ms)" "$(val watch_p50_ms "$d")" "<= 50"
row "failover after leader pod deletion, p99 (ms)" "$(val watch_p99_ms "$d")" "<= 250"
row "  (n, p90, max; p50/p99 from the DELETE request)" "$(val watch_n "$d"), $(val watch_p90_ms "$d"), $(val watch_max_ms "$d"); $(val request_p50_ms "$d")/$(val request_p99_ms "$d")" ""
row "failover after deletion, back to back, p50/p99 (ms)" "$(val watch_p50_ms "$b")/$(val watch_p99_ms "$b")" "(no target)"
row "failover after leader Ready=False, p50 (ms)" "$(val watch_p50_ms "$n")" "<= 50"
row "failover after leader Ready=False, p99 (ms)" "$(val watch_p99_ms "$n")" "<= 250"
row "  (n, p90, max)" "$(val watch_n "$n"), $(val watch_p90_ms "$n"), $(val watch_max_ms "$n")" ""
row "apiserver recovery -> first failover done, 15 s stall, p50/max (ms)" "$(val request_p50_ms "$s")/$(val request_max_ms "$s")" "(no target; n=$(val request_n "$s"))"
row "API writes/min, $idle_workloads idle workloads, beyond own Lease" "$(val api_writes_beyond_per_min "$dir/idle.out")" "0"
row "  object changes/min in the workloads' namespace" "$(val namespace_changes_per_min "$dir/idle.out")" "0"
row "  operator's own Lease renewals/min" "$(val operator_lease_renewals_per_min "$dir/idle.out")" "(30 at retry 2s)"
row "operator leader RSS, idle, no workloads (MiB)" "$rss_idle_leader" "<= 20"
row "operator leader RSS, $workloads workloads x 3 pods (MiB)" "$rss_scale_leader" "<= 64"
row "cold start, $workloads workloads x 3 pods, all led (s)" "$(val coldstart_seconds "$dir/coldstart.out")" "<= 60"
row "  first workload led / every pod Ready after (s)" "$(val coldstart_first_leader_seconds "$dir/coldstart.out") / $(val coldstart_all_pods_ready_seconds "$dir/coldstart.out")" ""
row "failover after deletion with $workloads workloads, p50/p99 (ms)" "$(val watch_p50_ms "$l")/$(val watch_p99_ms "$l")" "(no target)"
ad="$dir/agent-delete.out"
an="$dir/agent-notready.out"
row "agent: pod deletion -> new COMMAND active, p50 (ms)" "$(val active_p50_ms "$ad")" "<= 100"
row "agent: pod deletion -> new COMMAND active, p99 (ms)" "$(val active_p99_ms "$ad")" "<= 300"
row "  (n, p90, max; active windows overlapping, smallest gap ms)" "$(val active_n "$ad"), $(val active_p90_ms "$ad"), $(val active_max_ms "$ad"); $(val overlaps "$ad"), $(val smallest_gap_ms "$ad")" "overlaps 0"
row "agent: Ready=False seen -> new COMMAND active, p50 (ms)" "$(val active_from_loss_p50_ms "$an")" "<= 100"
row "agent: Ready=False seen -> new COMMAND active, p99 (ms)" "$(val active_from_loss_p99_ms "$an")" "<= 300"
row "  (n, p90, max; active windows overlapping, smallest gap ms)" "$(val active_from_loss_n "$an"), $(val active_from_loss_p90_ms "$an"), $(val active_from_loss_max_ms "$an"); $(val overlaps "$an"), $(val smallest_gap_ms "$an")" "overlaps 0"
row "agent RSS, mean / max (MiB)" "$agent_rss" "<= 8"
row "agent API requests per workload per minute, steady" "$agent_requests" "<= 12 (one per 5 s)"
f1="$dir/failover-first.out"
f2="$dir/failover-second.out"
row "operator takeover (SIGKILL), $workloads workloads: stamps / pod PATCHes" "$(val stamps "$dir/takeover.out") / $(val pod_patches "$dir/takeover.out")" "0 / 0 (new leader after ${takeover_seconds} s)"
row "  first failover per workload in the new term: stamps, p50/p99 (ms)" "$(val stamps "$f1"), $(val watch_p50_ms "$f1")/$(val watch_p99_ms "$f1")" "<= 3 per failover (n=$(val watch_n "$f1"))"
row "  second failover of the same workloads: stamps, p50/p99 (ms)" "$(val stamps "$f2"), $(val watch_p50_ms "$f2")/$(val watch_p99_ms "$f2")" "0 (n=$(val watch_n "$f2"))"
echo "RSS of every replica (* = leader), MiB: idle: $rss_idle_all"
echo "                                      $idle_workloads workloads: $rss_100"
echo "                                      $workloads workloads: $rss_scale_all"
# A partial run (BENCH_FAILOVERS=0 ...) has no output from the skipped steps.
violations=$({ cat "$d" "$b" "$n" "$l" "$s" "$f1" "$f2" "$ad" "$an" "$dir/coldstart.out" 2>/dev/null || true; } | sed -n 's/^violations=//p' | awk '{ s += $1 } END { print s + 0 }')
echo "CPU seconds during the cold start: $cpu_coldstart; the benchmark's driver $(val coldstart_driver_cpu_seconds "$dir/coldstart.out")"
echo "leader auditor over every run: $violations violations (two pods labelled leader, or a token that did not grow)"
if ((${#failed_steps[@]})); then
  echo "FAILED steps: ${failed_steps[*]} (logs in $dir)"
fi
echo "Notes: latencies are arrival-time differences on one pod watch (the loss of the leader, then the new leader's"
echo "label); each failover with a target starts with every workload steady and ${settle_ms} ms without a failover."
echo "Pods of the idle and cold-start workloads name their node in spec.nodeName, so kube-scheduler's binding rate"
echo "(client QPS 50 in 1.20) is not part of the cold start; the apiserver's writes are counted from its /metrics,"
echo "minus the simulated kubelet's heartbeats and the operator's own Lease renewals (both counted by watches)."
((${#failed_steps[@]} == 0))
