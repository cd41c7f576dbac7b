#!/usr/bin/env bash
# Smoke test for e2e/cluster/cluster.sh: brings a real local control plane up, talks to it, runs a second one side
# by side, restarts an apiserver, lets a watchdog clean up after a dead owner, tears everything down and checks
# that no process of these clusters is left. Exits non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cluster_sh="$here/../../e2e/cluster/cluster.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/singleton-smoke-XXXXXX")
a="$work/a"
b="$work/b"
owner_pid=""
passed=0
failed=0

ok() {
  passed=$((passed + 1))
  echo "ok   - $*"
}
fail() {
  failed=$((failed + 1))
  echo "FAIL - $*"
}
check() { # description command...
  local what=$1
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}

# Processes (not zombies) whose command line mentions $1.
leftovers() {
  ps -eo pid=,stat=,args= | D=$1 awk 'index($0, ENVIRON["D"]) && $2 !~ /^Z/' || true
}

cleanup() {
  local rc=$?
  [[ -n $owner_pid ]] && kill "$owner_pid" 2>/dev/null
  "$cluster_sh" down "$a" 2>/dev/null || true
  "$cluster_sh" down "$b" 2>/dev/null || true
  rm -rf "$work"
  return "$rc"
}
trap cleanup EXIT

envval() { sed -n "s/^$2=//p" "$1/env"; }
kc() { # dir kubectl-args...
  local dir=$1
  shift
  kubectl --kubeconfig="$dir/kubeconfig" "$@"
}
readyz_ok() { [[ $(kc "$1" get --raw /readyz 2>/dev/null) == ok ]]; }

# --- cluster A -----------------------------------------------------------------------------------------------
start=$(date +%s.%N)
if "$cluster_sh" up "$a" >"$work/up-a.out"; then
  ok "cluster A up in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
else
  fail "cluster A up"
  echo "cluster smoke: $passed passed, $failed failed"
  exit 1
fi
check "up prints DIR on stdout" [ "$(cat "$work/up-a.out")" = "$a" ]
check "kubectl get --raw /readyz is ok" readyz_ok "$a"
check "kubeconfig verifies TLS against the generated cert" \
  bash -c "grep -q 'certificate-authority: $a/pki/apiserver.crt' '$a/kubeconfig' && ! grep -q insecure '$a/kubeconfig'"
check "curl --cacert reaches /readyz with the admin token" \
  bash -c "[ \"\$(curl -sS --cacert '$(envval "$a" CA_FILE)' -H 'Authorization: Bearer $(envval "$a" ADMIN_TOKEN)' \
    '$(envval "$a" APISERVER_URL)/readyz')\" = ok ]"

lease_yaml='apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: smoke
  namespace: default
spec:
  holderIdentity: smoke-holder
  leaseDurationSeconds: 15'
check "create a coordination.k8s.io/v1 Lease" bash -c "kubectl --kubeconfig='$a/kubeconfig' create -f - >/dev/null <<<'$lease_yaml'"
check "read the Lease back" \
  bash -c "[ \"\$(kubectl --kubeconfig='$a/kubeconfig' get lease smoke -o jsonpath='{.spec.holderIdentity}')\" = smoke-holder ]"

# --- cluster B, side by side, owned by a process we will kill ------------------------------------------------
sleep 600 &
owner_pid=$!
if "$cluster_sh" up "$b" --owner-pid "$owner_pid" >/dev/null; then ok "cluster B up next to A"; else fail "cluster B up"; fi
check "B uses other ports than A" \
  bash -c "[ '$(envval "$a" APISERVER_PORT)' != '$(envval "$b" APISERVER_PORT)' ] &&
    [ '$(envval "$a" ETCD_PORT)' != '$(envval "$b" ETCD_PORT)' ]"
check "B is ready" readyz_ok "$b"
check "B has its own etcd (no Lease smoke there)" bash -c "! kubectl --kubeconfig='$b/kubeconfig' get lease smoke 2>/dev/null"
check "A is still ready" readyz_ok "$a"

# --- restart A's apiserver -----------------------------------------------------------------------------------
port_before=$(envval "$a" APISERVER_PORT)
pid_before=$(envval "$a" APISERVER_PID)
check "restart-apiserver A" bash -c "'$cluster_sh' restart-apiserver '$a' 2>/dev/null"
check "same port, new pid" \
  bash -c "[ '$(envval "$a" APISERVER_PORT)' = '$port_before' ] && [ \"\$(sed -n 's/^APISERVER_PID=//p' '$a/env')\" != '$pid_before' ]"
check "A is ready after the restart" readyz_ok "$a"
check "the Lease survived the restart" bash -c "kubectl --kubeconfig='$a/kubeconfig' get lease smoke >/dev/null"
check "status A reports everything running" bash -c "'$cluster_sh' status '$a' >/dev/null"

# --- the watchdog tears B down when its owner exits ----------------------------------------------------------
kill "$owner_pid"
wait "$owner_pid" 2>/dev/null || true
owner_pid=""
gone=""
for _ in $(seq 1 100); do
  if [[ ! -d $b && -z $(leftovers "$b") ]]; then
    gone=1
    break
  fi
  sleep 0.1
done
check "watchdog removed B after its owner exited" [ -n "$gone" ]

# --- tear down -----------------------------------------------------------------------------------------------
check "down A" bash -c "'$cluster_sh' down '$a' 2>/dev/null"
check "A's directory is removed" [ ! -e "$a" ]
check "down is idempotent" bash -c "'$cluster_sh' down '$a' 2>/dev/null"
left=$(leftovers "$work")
check "no etcd/kube-* process of these clusters is left" [ -z "$left" ]
[[ -z $left ]] || echo "$left"

echo "cluster smoke: $passed passed, $failed failed"
((failed == 0))
