#!/usr/bin/env bash
# singleton-operator end to end on a local control plane: the CRD, a simulated kubelet with three Nodes, three
# operator replicas (one leads, two stand by), and a SingletonWorkload billing-cron whose 3 pods run real processes:
# singleton-agent wrapping a COMMAND (singleton-activity, which logs start, a heartbeat and stop on the monotonic
# clock). One COMMAND is active, two replicas wait warm. Then: delete the leader pod (the old COMMAND stops, then the
# new one starts with token + 1; the gap comes from the COMMANDs' own logs), SIGKILL the leading operator replica
# (another takes over) and fail over once more under the new operator leader.
# Usage: e2e/demo.sh [BUILD_DIR]      (LEASE_DURATION=5s: the operators' own election; DEMO_KEEP=1 keeps the logs)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
operator="$build/operator/singleton-operator"
kubelet="$build/e2e/kubelet/singleton-sim-kubelet"
agent="$build/cli/singleton-agent"
activity="$build/tests/singleton-activity"
for b in "$operator" "$kubelet" "$agent" "$activity"; do
  [[ -x $b ]] || { echo "demo: $b not built (run: make build)" >&2; exit 1; }
done
LEASE_DURATION=${LEASE_DURATION:-5s}
RENEW_DEADLINE=${RENEW_DEADLINE:-4s}
RETRY_PERIOD=${RETRY_PERIOD:-1s}

dir=$(mktemp -d /tmp/singleton-demo.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if ((rc != 0)) || [[ -n ${DEMO_KEEP:-} ]]; then
    bash "$root/e2e/cluster/cluster.sh" down "$dir/cluster" --keep >/dev/null 2>&1 || true
    echo "demo: logs kept in $dir (operator-*.log, kubelet.log, cluster/logs/)" >&2
  else
    bash "$root/e2e/cluster/cluster.sh" down "$dir/cluster" >/dev/null 2>&1 || true
    rm -rf "$dir"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
indent() { sed 's/^/  /'; }
die() {
  echo "demo: $*" >&2
  for f in "$dir"/operator-*.log; do echo "--- $f" >&2; tail -n 15 "$f" >&2; done
  exit 1
}

say "starting a local control plane (etcd, kube-apiserver, controller-manager, scheduler)"
bash "$root/e2e/cluster/cluster.sh" up "$dir/cluster" --owner-pid $$ >/dev/null
# shellcheck disable=SC1091
source "$dir/cluster/env"
export KUBECONFIG
kc() { kubectl "$@"; }
api() {  # api METHOD PATH [CURL ARGS...]: a raw request as the admin, body on stdout
  local method=$1 path=$2
  shift 2
  curl -s --cacert "$CA_FILE" -H "Authorization: Bearer $ADMIN_TOKEN" -X "$method" "$@" "$APISERVER_URL$path"
}

say "installing the CRD; starting a simulated kubelet (3 Nodes) and 3 operator replicas"
kc apply -f "$root/crds/singleton.dev_singletonworkloads.yaml" | indent
bash "$root/e2e/cluster/wait-established.sh" singletonworkloads.singleton.dev
kc create namespace singleton-system >/dev/null
"$kubelet" --nodes 3 --heartbeat 1s >"$dir/kubelet.log" 2>&1 &
pids+=($!)
disown
declare -A op_pid
start_operator() {
  "$operator" --identity "$1" --leader-election-namespace singleton-system --lease-duration "$LEASE_DURATION" \
    --renew-deadline "$RENEW_DEADLINE" --retry-period "$RETRY_PERIOD" --health-probe-bind-address 0 \
    --metrics-bind-address 0 >>"$dir/operator-$1.log" 2>&1 &
  op_pid[$1]=$!
  pids+=($!)
  disown
}
for id in op-0 op-1 op-2; do start_operator "$id"; done

operator_leader() { kc get lease singleton-operator -n singleton-system -o jsonpath='{.spec.holderIdentity}' 2>/dev/null; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || die "timed out waiting for $what"
    sleep 0.1
  done
}
has_operator_leader() { [[ -n $(operator_leader) ]]; }
wait_for 60 "an operator leader" has_operator_leader
echo "  operator replicas: op-0 op-1 op-2 (pids ${op_pid[op-0]} ${op_pid[op-1]} ${op_pid[op-2]}); leading: $(operator_leader)"
echo "  (Lease singleton-system/singleton-operator, lease $LEASE_DURATION; logs in $dir)"

# Every change of the pod that carries the leader label, as "time event pod token deleting" lines, from a watch.
# Stamped on arrival and parsed with bash's own regex matching (no process per line, so no queueing delay).
watch_file="$dir/leader.watch"
(api GET "/api/v1/namespaces/default/pods?watch=1&labelSelector=singleton.dev%2Fworkload%3Dbilling-cron%2Csingleton.dev%2Frole%3Dleader" -N |
  while IFS= read -r line; do
    t=$EPOCHREALTIME
    [[ $line =~ ^\{\"type\":\"([A-Z]+)\" ]] && type=${BASH_REMATCH[1]} || type=-
    [[ $line =~ \"metadata\":\{\"name\":\"([^\"]+)\" ]] && name=${BASH_REMATCH[1]} || name=-
    [[ $line =~ \"singleton\.dev/fencing-token\":\"([0-9]+)\" ]] && token=${BASH_REMATCH[1]} || token=-
    [[ $line == *'"deletionTimestamp"'* ]] && deleting=deleting || deleting=-
    echo "$t $type $name $token $deleting"
  done >"$watch_file") </dev/null >/dev/null 2>&1 &
pids+=($!)
disown

# The sample manifests/samples/singletonworkload.yaml, with this machine's binaries instead of an image: the simulated
# kubelet runs a container whose command names a host executable as a real process, with the pod's service-account
# token and in-cluster config, so the agent runs exactly as in a cluster.
activity_dir="$dir/activity"
mkdir -p "$activity_dir"
chmod 0777 "$activity_dir"
cat >"$dir/billing-cron.yaml" <<EOF
apiVersion: singleton.dev/v1alpha1
kind: SingletonWorkload
metadata:
  name: billing-cron
spec:
  replicas: 3
  leaseDurationSeconds: 15
  template:
    spec:
      serviceAccountName: singleton-agent
      terminationGracePeriodSeconds: 10
      containers:
        - name: billing
          image: host
          command: ["$agent", "--", "$activity", "$activity_dir"]
EOF
say "kubectl apply -f manifests/agent-rbac.yaml   (the agent's ServiceAccount: read the Lease, acknowledge hand-offs)"
kc apply -n default -f "$root/manifests/agent-rbac.yaml" | indent
say "kubectl apply billing-cron: 3 replicas of singleton-agent -- singleton-activity (real processes)"
sed -n '/^spec:/,$p' "$dir/billing-cron.yaml" | sed "s|$build|\$BUILD|g; s|$dir|\$DEMO|g" | indent
kc apply -n default -f "$dir/billing-cron.yaml" | indent
workload_ready() {
  [[ $(kc get sw billing-cron -o jsonpath='{.status.readySummary}/{.status.leader}' 2>/dev/null) == 3/3/?* ]]
}
wait_for 60 "billing-cron to have a leader and 3 ready pods" workload_ready

show() {
  kc get sw billing-cron | indent
  echo
  kc get pods -l singleton.dev/workload=billing-cron -o custom-columns='POD:.metadata.name,ROLE:.metadata.labels.singleton\.dev/role,TOKEN:.metadata.annotations.singleton\.dev/fencing-token,READY:.status.conditions[?(@.type=="Ready")].status,NODE:.spec.nodeName' | indent
}
show
leader=$(kc get sw billing-cron -o jsonpath='{.status.leader}')
token=$(kc get sw billing-cron -o jsonpath='{.status.fencingToken}')

# The COMMANDs' own logs (µs on CLOCK_MONOTONIC): "start T TOKEN UID", "beat T" every 10 ms, "stop T".
window_start() { awk -v tok="$2" '$1 == "start" && $3 == tok { print $2; exit }' "$activity_dir/$1.log" 2>/dev/null || true; }
window_end() {
  awk -v tok="$2" '$1 == "start" { inside = ($3 == tok) } inside && NF >= 2 { last = $2; how = $1 } END { print last, how }' \
    "$activity_dir/$1.log" 2>/dev/null || true
}
command_started() { [[ -n $(window_start "$1" "$2") ]]; }
wait_for 30 "$leader's COMMAND to start" command_started "$leader" "$token"
echo
echo "  the COMMANDs' own logs: one is active, and holds the fencing token in its environment:"
for f in "$activity_dir"/*.log; do
  awk -v pod="$(basename "$f" .log)" '$1 == "start" { printf "  %-16s COMMAND started with SINGLETON_FENCING_TOKEN=%s\n", pod, $3 }' "$f"
done
for p in $(kc get pods -l singleton.dev/workload=billing-cron -o jsonpath='{.items[*].metadata.name}'); do
  [[ -e $activity_dir/$p.log ]] || printf '  %-16s standing by: its agent has not started COMMAND\n' "$p"
done
echo
echo "  Lease default/billing-cron-leader: holder=$(kc get lease billing-cron-leader -o jsonpath='{.spec.holderIdentity}')" \
  "leaseTransitions=$(kc get lease billing-cron-leader -o jsonpath='{.spec.leaseTransitions}') (= the fencing token)"

# failover: deletes the leader pod and reports the next leader from the watch.
failover() {
  local old=$1 old_token=$2 lines t_del hit
  lines=$(wc -l <"$watch_file")
  api DELETE "/api/v1/namespaces/default/pods/$old" >/dev/null
  # The deletion as the watch saw it (the old leader's event with deletionTimestamp), then the next leader label.
  local deadline=$((SECONDS + 30))
  while :; do
    t_del=$(tail -n +$((lines + 1)) "$watch_file" | awk -v p="$old" '$3 == p && ($5 == "deleting" || $2 == "DELETED") { print $1; exit }')
    hit=$(tail -n +$((lines + 1)) "$watch_file" | awk -v p="$old" '$3 != p && $2 != "DELETED" && $4 != "-" { print; exit }')
    [[ -n $t_del && -n $hit ]] && break
    ((SECONDS < deadline)) || die "no new leader within 30 s"
    sleep 0.02
  done
  read -r t_new _ new_leader new_token _ <<<"$hit"
  echo "  $old deleted -> $new_leader labelled leader with token $new_token (was $old_token)" \
    "$(awk -v a="$t_del" -v b="$t_new" 'BEGIN { printf "%.0f ms", (b - a) * 1000 }') after the deletion reached the watch"
  ((new_token == old_token + 1)) || die "expected token $((old_token + 1))"
  # Exclusive activation: the new COMMAND starts only after the old one has stopped (the old agent's ack on the
  # Lease, docs/handoff.md). Both times are the COMMANDs' own, on one clock.
  wait_for 30 "$new_leader's COMMAND to start" command_started "$new_leader" "$new_token"
  local old_end old_how new_start
  read -r old_end old_how <<<"$(window_end "$old" "$old_token")"
  new_start=$(window_start "$new_leader" "$new_token")
  echo "  $old's COMMAND $([[ $old_how == stop ]] && echo "stopped on its agent's SIGTERM" || echo "ended")," \
    "then $new_leader's COMMAND started with token $new_token:" \
    "$(awk -v a="$old_end" -v b="$new_start" 'BEGIN { printf "%.1f ms", (b - a) / 1000 }') between them" \
    "$( ((new_start > old_end)) && echo "(never both active)" || echo "(OVERLAP)")"
  ((new_start > old_end)) || die "the two COMMANDs were active at once"
  leader=$new_leader
  token=$new_token
}

say "failover: deleting the leader pod $leader"
failover "$leader" "$token"
wait_for 30 "the deleted pod to come back as a standby" workload_ready
echo "  the deleted pod is re-created under its name as a standby:"
show

op_leader=$(operator_leader)
say "SIGKILL the leading operator replica $op_leader (no release: the others wait out its lease, $LEASE_DURATION)"
t0=$EPOCHREALTIME
kill -KILL "${op_pid[$op_leader]}"
new_operator_leader() { local h; h=$(operator_leader); [[ -n $h && $h != "$op_leader" ]]; }
wait_for 60 "another operator replica to lead" new_operator_leader
echo "  $(operator_leader) leads the operator after $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }')"

say "failover under the new operator leader: deleting the leader pod $leader"
failover "$leader" "$token"
wait_for 30 "3 ready pods" workload_ready
show
echo
echo "  events on the workload:"
kc get events --field-selector involvedObject.kind=SingletonWorkload,involvedObject.name=billing-cron \
  --sort-by=.lastTimestamp -o custom-columns='REASON:.reason,MESSAGE:.message' | indent

say "done; cleaning up"
