#!/usr/bin/env bash
# The SingletonWorkload CRD and the install manifests on a real local control plane (Kubernetes 1.20):
#   - invalid SingletonWorkloads are refused by the apiserver itself (kubectl --validate=false, so no client-side
#     check hides a gap in the schema), each with a message that names the offending field;
#   - valid objects are accepted and defaulted; the samples in manifests/samples/ apply;
#   - `kubectl kustomize manifests/` renders and `kubectl apply -k manifests/` installs (the Deployment's image does
#     not exist here, so its pods never run; that is not checked).
# Prints one line per check and `crd validation: N passed, M failed`; exits non-zero on any failure.
# Env: SINGLETON_SOURCE_DIR (default: this checkout).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${SINGLETON_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
cluster_sh="$src/e2e/cluster/cluster.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/singleton-crd-XXXXXX")
passed=0
failed=0

cleanup() {
  bash "$cluster_sh" down "$work/cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() {
  passed=$((passed + 1))
  echo "ok   - $*"
}
fail() {
  failed=$((failed + 1))
  echo "FAIL - $*"
}
finish() {
  echo "crd validation: $passed passed, $failed failed"
  ((failed == 0))
  exit
}

if ! bash "$cluster_sh" up "$work/cluster" --owner-pid $$ >/dev/null 2>"$work/up.err"; then
  fail "local control plane up"
  tail -n 30 "$work/up.err"
  finish
fi
export KUBECONFIG="$work/cluster/kubeconfig"
kc() { kubectl "$@"; }
ns=crd-validation

# --- the CRD ---------------------------------------------------------------------------------------------------
if kc apply -f "$src/crds/singleton.dev_singletonworkloads.yaml" >"$work/out" 2>&1 &&
  bash "$src/e2e/cluster/wait-established.sh" singletonworkloads.singleton.dev >>"$work/out" 2>&1; then
  ok "CRD applied and Established"
else
  fail "CRD applied and Established: $(cat "$work/out")"
  finish
fi
kc create namespace "$ns" >/dev/null

# A SingletonWorkload named $1 in $ns whose spec is the YAML text $2 (already indented by two spaces).
workload() {
  printf 'apiVersion: singleton.dev/v1alpha1\nkind: SingletonWorkload\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n%s\n' \
    "$1" "$ns" "$2"
}
template='  template:
    spec:
      containers:
        - {name: main, image: busybox:1.36, command: ["sleep", "3600"]}'

# expect_rejected DESCRIPTION FIELD NAME SPEC: the apiserver refuses the object with a message naming FIELD.
expect_rejected() {
  local what=$1 field=$2 name=$3 spec=$4 out rc
  out=$(workload "$name" "$spec" | kc create --validate=false -f - 2>&1)
  rc=$?
  if ((rc == 0)); then
    fail "rejected: $what (the apiserver accepted it)"
    kc delete singletonworkload -n "$ns" "$name" --wait=false >/dev/null 2>&1
  elif ! grep -q "is invalid" <<<"$out"; then
    fail "rejected: $what (not a validation error: $out)"
  elif ! grep -qF "$field" <<<"$out"; then
    fail "rejected: $what (message does not name $field: $out)"
  else
    ok "rejected: $what -> $(grep -F "$field" <<<"$out" | head -n 1 | sed 's/^.*is invalid: //; s/^\* //')"
  fi
}

expect_rejected "replicas 0" spec.replicas r0 "  replicas: 0
$template"
expect_rejected "replicas 101" spec.replicas r101 "  replicas: 101
$template"
expect_rejected 'replicas "two"' spec.replicas rtwo '  replicas: "two"
'"$template"
expect_rejected "missing template" spec.template notemplate "  replicas: 2"
expect_rejected "template without spec" spec.template.spec nospec "  template:
    metadata: {labels: {a: b}}"
expect_rejected "template without containers" spec.template.spec.containers nocontainers "  template:
    spec: {restartPolicy: Always}"
expect_rejected "template with an empty container list" spec.template.spec.containers emptycontainers "  template:
    spec: {containers: []}"
expect_rejected "container without image" spec.template.spec.containers.image noimage "  template:
    spec:
      containers:
        - {name: main}"
expect_rejected "service port 70000" spec.service.ports.port port70000 "$template
  service:
    ports:
      - {name: http, port: 70000}"
expect_rejected "service port 0" spec.service.ports.port port0 "$template
  service:
    ports:
      - {name: http, port: 0}"
expect_rejected "service without ports" spec.service.ports noports "$template
  service: {type: ClusterIP}"
expect_rejected "service protocol HTTP" spec.service.ports.protocol badproto "$template
  service:
    ports:
      - {port: 80, protocol: HTTP}"
expect_rejected "service type ExternalName" spec.service.type badtype "$template
  service:
    type: ExternalName
    ports:
      - {port: 80}"
expect_rejected "leaseDurationSeconds 0" spec.leaseDurationSeconds lease0 "  leaseDurationSeconds: 0
$template"
expect_rejected "leaseDurationSeconds 3601" spec.leaseDurationSeconds lease3601 "  leaseDurationSeconds: 3601
$template"
expect_rejected 'leaseDurationSeconds "15s"' spec.leaseDurationSeconds leasestr '  leaseDurationSeconds: "15s"
'"$template"
expect_rejected "handoff Sometimes" spec.handoff handoffbad "  handoff: Sometimes
$template"
expect_rejected "name of 61 characters" metadata.name "w$(printf 'x%.0s' $(seq 1 60))" "$template"
expect_rejected "name starting with a digit" metadata.name 9lives "$template"

# --- valid objects are accepted and defaulted --------------------------------------------------------------------
if out=$(workload minimal "$template" | kc create --validate=false -f - 2>&1); then
  ok "accepted: minimal workload (template only)"
  replicas=$(kc get sw minimal -n "$ns" -o jsonpath='{.spec.replicas}' 2>&1)
  if [[ $replicas == 2 ]]; then ok "defaulted: spec.replicas = 2"; else fail "defaulted: spec.replicas = 2 (got '$replicas')"; fi
  handoff=$(kc get sw minimal -n "$ns" -o jsonpath='{.spec.handoff}' 2>&1)
  if [[ $handoff == Auto ]]; then ok "defaulted: spec.handoff = Auto"; else fail "defaulted: spec.handoff = Auto (got '$handoff')"; fi
else
  fail "accepted: minimal workload (template only): $out"
fi
if out=$(workload withservice "  replicas: 3
  leaseDurationSeconds: 10
  handoff: WaitForStop
$template
  service:
    ports:
      - {name: http, port: 80, targetPort: http}
      - {name: metrics, port: 9090, targetPort: 9090}" | kc create --validate=false -f - 2>&1); then
  ok "accepted: workload with a two-port service"
  got=$(kc get sw withservice -n "$ns" -o jsonpath='{.spec.service.type} {.spec.service.ports[0].protocol}' 2>&1)
  if [[ $got == "ClusterIP TCP" ]]; then ok "defaulted: service type ClusterIP, protocol TCP"; else fail "defaulted service type/protocol (got '$got')"; fi
else
  fail "accepted: workload with a two-port service: $out"
fi
# The scale subresource and the short name and category.
if out=$(kc scale sw/minimal -n "$ns" --replicas=4 2>&1) &&
  [[ $(kc get sw minimal -n "$ns" -o jsonpath='{.spec.replicas}') == 4 ]]; then
  ok "scale subresource sets spec.replicas"
else
  fail "scale subresource sets spec.replicas: $out"
fi
if out=$(kc get singleton -n "$ns" -o name 2>&1) && grep -q minimal <<<"$out"; then
  ok "category 'singleton' lists workloads"
else
  fail "category 'singleton' lists workloads: $out"
fi
# Printer columns (the server's Table): NAME LEADER TOKEN READY AGE, and LAST-FAILOVER with -o wide.
header=$(kc get sw -n "$ns" 2>&1 || true)
header=${header%%$'\n'*}
if [[ $(awk '{$1=$1; print}' <<<"$header") == "NAME LEADER TOKEN READY AGE" ]]; then
  ok "printer columns: $header"
else
  fail "printer columns: got '$header'"
fi
# (Output captured first: with pipefail, `kubectl | head` fails whenever head closes the pipe before kubectl ends.)
wide=$(kc get sw -n "$ns" -o wide 2>&1 || true)
if grep -q LAST-FAILOVER <<<"${wide%%$'\n'*}"; then
  ok "printer columns -o wide add LAST-FAILOVER"
else
  fail "printer columns -o wide add LAST-FAILOVER"
fi
# Status is a subresource: a status in the main resource is dropped.
kc patch sw minimal -n "$ns" --type merge -p '{"status":{"leader":"x"}}' >/dev/null 2>&1
if [[ -z $(kc get sw minimal -n "$ns" -o jsonpath='{.status.leader}') ]]; then
  ok "status is a subresource (ignored on the main resource)"
else
  fail "status is a subresource (ignored on the main resource)"
fi
if out=$(kc explain singletonworkload.spec.leaseDurationSeconds 2>&1) && grep -q "leaseDurationSeconds" <<<"$out"; then
  ok "kubectl explain documents the fields"
else
  fail "kubectl explain documents the fields: $out"
fi

# --- the samples ---------------------------------------------------------------------------------------------
kc create namespace samples >/dev/null
if out=$(kc apply -k "$src/manifests/samples/" -n samples 2>&1); then
  ok "samples: kubectl apply -k manifests/samples/ ($(tr '\n' ';' <<<"$out"))"
else
  fail "samples: kubectl apply -k manifests/samples/: $out"
fi
for name in billing-cron ledger-writer; do
  if kc get sw "$name" -n samples >/dev/null 2>&1; then ok "samples: $name exists"; else fail "samples: $name exists"; fi
done
for f in "$src"/manifests/samples/singletonworkload*.yaml; do
  if out=$(kc apply --dry-run=server -n samples -f "$f" 2>&1); then
    ok "samples: $(basename "$f") passes server-side dry run"
  else
    fail "samples: $(basename "$f") passes server-side dry run: $out"
  fi
done

# --- the install manifests -------------------------------------------------------------------------------------
if kc kustomize "$src/manifests/" >"$work/rendered.yaml" 2>"$work/kustomize.err"; then
  kinds=$(sed -n 's/^kind: //p' "$work/rendered.yaml" | sort | tr '\n' ' ')
  ok "kubectl kustomize manifests/ renders: $kinds"
  for kind in CustomResourceDefinition Namespace ServiceAccount ClusterRole ClusterRoleBinding Role RoleBinding \
    Deployment Service; do
    if grep -qx "kind: $kind" "$work/rendered.yaml"; then ok "rendered: $kind"; else fail "rendered: $kind"; fi
  done
else
  fail "kubectl kustomize manifests/ renders: $(cat "$work/kustomize.err")"
fi
if out=$(kc apply -k "$src/manifests/" 2>&1); then
  ok "kubectl apply -k manifests/ installs ($(grep -c . <<<"$out") objects)"
else
  fail "kubectl apply -k manifests/: $out"
fi
if kc get deployment singleton-operator -n singleton-system >/dev/null 2>&1 &&
  kc get serviceaccount singleton-operator -n singleton-system >/dev/null 2>&1; then
  ok "installed: Deployment and ServiceAccount singleton-system/singleton-operator"
else
  fail "installed: Deployment and ServiceAccount singleton-system/singleton-operator"
fi
# The operator's RBAC: what its service account may do (impersonation needs system:masters, which the admin has).
sa=system:serviceaccount:singleton-system:singleton-operator
for check in "get singletonworkloads.singleton.dev" "watch singletonworkloads.singleton.dev -A" \
  "update singletonworkloads.singleton.dev --subresource=status" "patch singletonworkloads.singleton.dev" \
  "create pods" "patch pods" "delete pods" "watch pods -A" \
  "create leases.coordination.k8s.io" "update leases.coordination.k8s.io" \
  "create services" "create events" \
  "update leases.coordination.k8s.io/singleton-operator -n singleton-system"; do
  # shellcheck disable=SC2086
  if out=$(kc auth can-i $check --as "$sa" 2>&1) && [[ $out == yes ]]; then
    ok "RBAC: operator can $check"
  else
    fail "RBAC: operator can $check ($out)"
  fi
done
# Applying twice changes nothing.
if out=$(kc apply -k "$src/manifests/" 2>&1) && ! grep -qE ' (created|configured)$' <<<"$out"; then
  ok "kubectl apply -k manifests/ is idempotent"
else
  fail "kubectl apply -k manifests/ is idempotent: $out"
fi

finish
