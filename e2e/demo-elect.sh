#!/usr/bin/env bash
# Three singleton-elect candidates on one Lease of a real local control plane: the election, a SIGKILL of the leader
# (takeover after the lease expires, token +1), then a SIGTERM of the next leader (release, takeover at once); last,
# a candidate with a command is SIGKILLed and its command dies with it.
# Usage: e2e/demo-elect.sh [BUILD_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
elect="$build/cli/singleton-elect"
[[ -x $elect ]] || { echo "demo-elect: $elect not built (run: make build)" >&2; exit 1; }

dir=$(mktemp -d /tmp/singleton-demo-elect.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  bash "$root/e2e/cluster/cluster.sh" down "$dir/cluster" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
now_ms() { date +%s%3N; }

say "starting a local control plane (etcd + kube-apiserver + controller-manager + scheduler)"
bash "$root/e2e/cluster/cluster.sh" up "$dir/cluster" --owner-pid $$ >/dev/null
source "$dir/cluster/env"

LEASE_DURATION=${LEASE_DURATION:-15s}
say "three candidates on Lease default/demo (lease ${LEASE_DURATION}, renew 10s, retry 2s); events as JSON lines"
for id in alpha bravo charlie; do
  "$elect" --lease default/demo --identity "$id" --kubeconfig "$KUBECONFIG" --lease-duration "$LEASE_DURATION" \
    --log-level warn >"$dir/$id.out" 2>"$dir/$id.err" &
  pids+=($!)
  eval "pid_$id=$!"
done
tail -q -n +1 -f "$dir"/alpha.out "$dir"/bravo.out "$dir"/charlie.out 2>/dev/null | sed 's/^/  /' &
tailer=$!
pids+=($tailer)

leader_of() { grep -h '"started_leading"' "$dir"/*.out | sort | tail -n 1 | sed 's/.*"identity":"\([^"]*\)".*/\1/'; }
wait_for_leaders() {  # wait until N started_leading lines exist
  local n=$1 deadline=$((SECONDS + 60))
  while (($(cat "$dir"/*.out | grep -c '"started_leading"') < n)); do
    ((SECONDS < deadline)) || { echo "demo-elect: no leader after 60 s" >&2; cat "$dir"/*.err >&2; exit 1; }
    sleep 0.05
  done
}

wait_for_leaders 1
leader=$(leader_of)
sleep 3
say "leader: $leader; the Lease as Kubernetes stores it:"
kubectl --kubeconfig "$KUBECONFIG" get lease demo -n default -o jsonpath='{.spec}' | sed 's/^/  /'; echo

say "SIGKILL $leader (no release: the others wait for the lease to expire on their own clocks)"
t0=$(now_ms)
eval "kill -KILL \$pid_$leader"
wait_for_leaders 2
t1=$(now_ms)
leader=$(leader_of)
echo "  takeover by $leader after $((t1 - t0)) ms (lease duration $LEASE_DURATION)"
sleep 1

say "SIGTERM $leader (graceful: it releases the Lease, a follower takes over at once)"
t0=$(now_ms)
eval "kill -TERM \$pid_$leader"
wait_for_leaders 3
t1=$(now_ms)
echo "  takeover by $(leader_of) after $((t1 - t0)) ms"
sleep 1
say "tokens handed to successive leaders (leaseTransitions, the fencing token):"
grep -h '"started_leading"' "$dir"/*.out | sort | sed 's/.*"identity":"\([^"]*\)".*"token":\([0-9]*\).*/  \1 -> token \2/'
kill "$tailer" 2>/dev/null || true

say "a candidate with a command on Lease default/demo-command; SIGKILL singleton-elect: its command dies with it"
# shellcheck disable=SC2016 # $$ and $0 are the command's own
"$elect" --lease default/demo-command --kubeconfig "$KUBECONFIG" --log-level warn -- \
  sh -c 'echo $$ > "$0/command.pid"; sleep 1000 & wait' "$dir" >"$dir/command.out" 2>"$dir/command.err" &
supervisor=$!
pids+=("$supervisor")
deadline=$((SECONDS + 30))
until [[ -s $dir/command.pid ]]; do
  ((SECONDS < deadline)) || { echo "demo-elect: the command never started" >&2; cat "$dir/command.err" >&2; exit 1; }
  sleep 0.05
done
command_pid=$(cat "$dir/command.pid")
echo "  identity $(sed -n 's/.*"identity":"\([^"]*\)".*/\1/p' "$dir/command.out" | head -n 1) (the default:" \
  "<hostname>_<random>), command pid $command_pid"
kill -KILL "$supervisor"
sleep 0.2
if kill -0 "$command_pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$command_pid/status" 2>/dev/null; then
  echo "  the command is still running: an orphan" >&2
  exit 1
fi
echo "  the command is gone"
say "done; cleaning up"
