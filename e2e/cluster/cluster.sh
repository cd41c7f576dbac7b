#!/usr/bin/env bash
# Runs a real, throw-away Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)
# on loopback ports, as ordinary local processes. Several clusters can run side by side: each one lives in its own
# directory and gets its own free ports. See e2e/cluster/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: cluster.sh COMMAND DIR [OPTIONS]

Commands:
  up DIR [--owner-pid PID] [--node-monitor-grace-period DURATION]
        Start etcd, kube-apiserver, kube-controller-manager and kube-scheduler with all state under DIR
        (created if missing). Waits until /readyz is ok and the `default` namespace can be read. Prints DIR on
        stdout, progress on stderr. Writes DIR/kubeconfig and DIR/env (sourceable KEY=value lines).
        --owner-pid PID   tear the cluster down (and remove DIR) as soon as process PID exits
        --node-monitor-grace-period DURATION   passed to kube-controller-manager (default 10s)
  down DIR [--keep]
        Stop every process of the cluster (TERM, then KILL after 5 s), including the watchdog, and remove DIR
        (only if it holds a cluster). --keep leaves DIR (logs, etcd data, certificates) in place.
        Safe to run again, or on a cluster that is already down.
  stop-apiserver DIR [--kill]
        Stop kube-apiserver only: TERM, and KILL about a second after it stops listening (so open watches are
        cut promptly instead of lingering up to its 60 s request timeout). --kill: KILL at once (a crash).
  start-apiserver DIR
        Start kube-apiserver again on the same port with the same flags and certificate; wait for /readyz.
  restart-apiserver DIR [--kill]
        stop-apiserver, then start-apiserver.
  stop-etcd DIR [--kill]  Stop etcd only: TERM (KILL after 10 s); --kill: KILL at once (a crash).
  start-etcd DIR          Start etcd again on the same ports with its data kept; wait until it is healthy.
  restart-etcd DIR [--kill]
        stop-etcd, then start-etcd.
  status DIR              Show each component's pid and state and the apiserver's /readyz; exit 0 only if all
                          components run and the apiserver is ready.
  -h, --help              Show this help.

Environment:
  CLUSTER_READY_TIMEOUT   seconds to wait for the apiserver to become ready (default 90)
  CLUSTER_LOG_VERBOSITY   klog -v level for the Kubernetes components (default 1)
  CLUSTER_APISERVER_FLAGS extra kube-apiserver flags, space-separated (e.g. --profiling=true to read
                          /debug/pprof with `go tool pprof`)
  SINGLETON_KEEP_CLUSTER  if set (not 0) when `up --owner-pid` runs, the watchdog keeps DIR (logs) on teardown
EOF
}

SELF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF="$SELF_DIR/$(basename "${BASH_SOURCE[0]}")"
readonly SELF_DIR SELF
readonly COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler)
readonly MARKER=.singleton-cluster
readonly READY_TIMEOUT=${CLUSTER_READY_TIMEOUT:-90}
readonly VERBOSITY=${CLUSTER_LOG_VERBOSITY:-1}

log() { echo "cluster: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------------------------------------------
# Small helpers: processes, ports, state

# Absolute path of $1 (which may not exist yet); refuses characters that would need quoting in DIR/env or YAML.
abs_dir() {
  local d=$1
  [[ $d == /* ]] || d="$PWD/$d"
  d=${d%/}
  [[ $d =~ ^/[A-Za-z0-9._/+@%,:-]+$ ]] || die "DIR must be a plain path ([A-Za-z0-9._/+@%,:-]): $1"
  printf '%s\n' "$d"
}

# A process belongs to the cluster in DIR when its command line mentions DIR. This guards against recycled pids
# and treats zombies (empty command line) as gone.
is_ours() { # pid dir
  local pid=$1 cmdline
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $cmdline == *"$2/"* || " $cmdline" == *" $2 "* ]]
}

# Our own child that is alive but not yet ours by command line: between fork and exec (setsid ... &) its command
# line does not name DIR yet. Waiting on it then would block forever on a healthy process; poll again instead.
still_starting() { # pid
  local state
  state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

# Process start time (clock ticks since boot), to recognise the owner process even if its pid is reused later.
proc_start() { awk '{ sub(/^.*\) /, ""); print $20 }' "/proc/$1/stat" 2>/dev/null || true; }

# TERM the given pids (only those that are ours), wait up to 5 s, then KILL what is left.
stop_pids() { # dir pid...
  local dir=$1 pid live=() left i
  shift
  for pid in "$@"; do
    [[ $pid == "$$" ]] && continue
    if is_ours "$pid" "$dir"; then
      kill -TERM "$pid" 2>/dev/null && live+=("$pid")
    fi
  done
  ((${#live[@]})) || return 0
  for ((i = 0; i < 50; i++)); do
    left=()
    for pid in "${live[@]}"; do is_ours "$pid" "$dir" && left+=("$pid"); done
    ((${#left[@]})) || break
    sleep 0.1
  done
  for pid in "${live[@]}"; do
    if is_ours "$pid" "$dir"; then
      log "pid $pid did not stop within 5 s; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  # Reap our own children (after a failed `up` or a restart); harmless for processes that are not our children.
  for pid in "${live[@]}"; do wait "$pid" 2>/dev/null || true; done
}

# Hex-encoded port as it appears in /proc/net/tcp.
hex_port() { printf '%04X' "$1"; }

# True if any socket (listening or connected, any state) uses local port $1.
port_in_use() {
  awk -v p=":$(hex_port "$1")" 'FNR > 1 && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# True if process $1 holds a listening socket on port $2.
pid_listens() {
  local inode fds
  fds=$(ls -l "/proc/$1/fd" 2>/dev/null) || return 1
  while read -r inode; do
    [[ $fds == *"socket:[$inode]"* ]] && return 0
  done < <(awk -v p=":$(hex_port "$2")" \
    'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { print $10 }' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
  return 1
}

# A free port outside the kernel's ephemeral range (so outgoing connections do not grab it) and not picked before
# by this run; stored in PICKED_PORT (not printed: a command substitution would lose TAKEN_PORTS).
TAKEN_PORTS=" "
PICKED_PORT=
pick_port() {
  local lo=10000 hi=65535 eph_lo=32768 eph_hi=60999 port i
  read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range || true
  if ((eph_lo - lo >= 1000)); then
    hi=$((eph_lo - 1))
  elif ((hi - eph_hi >= 1000)); then
    lo=$((eph_hi + 1))
  fi
  for ((i = 0; i < 500; i++)); do
    port=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
    [[ $TAKEN_PORTS == *" $port "* ]] && continue
    port_in_use "$port" && continue
    TAKEN_PORTS+="$port "
    PICKED_PORT=$port
    return 0
  done
  die "could not find a free port in $lo-$hi"
}

# State: DIR/env holds KEY=value lines (no quoting needed: all values are plain). Loaded into the array S.
declare -A S=()
load_state() {
  local dir=$1 key value
  S=()
  [[ -f $dir/env ]] || return 1
  while IFS='=' read -r key value; do
    [[ $key =~ ^[A-Z_]+$ ]] && S[$key]=$value
  done <"$dir/env"
}
save_state() {
  local dir=$1 key
  {
    echo "# Written by cluster.sh; source it from bash, or read it as KEY=value lines."
    for key in CLUSTER_DIR KUBECONFIG APISERVER_URL APISERVER_PORT CA_FILE ADMIN_TOKEN ETCD_URL ETCD_PORT \
      ETCD_PEER_PORT BIN_DIR LOG_DIR NODE_MONITOR_GRACE_PERIOD OWNER_PID \
      ETCD_PID APISERVER_PID CONTROLLER_MANAGER_PID SCHEDULER_PID WATCHDOG_PID; do
      echo "$key=${S[$key]:-}"
    done
  } >"$dir/env.tmp"
  mv -f "$dir/env.tmp" "$dir/env"
}

pid_key() {
  case $1 in
    etcd) echo ETCD_PID ;;
    kube-apiserver) echo APISERVER_PID ;;
    kube-controller-manager) echo CONTROLLER_MANAGER_PID ;;
    kube-scheduler) echo SCHEDULER_PID ;;
    watchdog) echo WATCHDOG_PID ;;
  esac
}

# Launches a component in its own session (so a signal to the caller's process group does not hit it; the
# watchdog and `down` handle cleanup), with all output going to DIR/logs/NAME.log and the pid recorded.
SPAWNED_PID=
spawn() { # dir name command...
  local dir=$1 name=$2
  shift 2
  printf '==== %s starting: %s\n' "$(date -u +%FT%T.%3NZ)" "$*" >>"$dir/logs/$name.log"
  setsid "$@" </dev/null >>"$dir/logs/$name.log" 2>&1 &
  SPAWNED_PID=$!
  echo "$SPAWNED_PID" >"$dir/run/$name.pid"
  S[$(pid_key "$name")]=$SPAWNED_PID
}

recorded_pid() { cat "$1/run/$2.pid" 2>/dev/null || true; }

bind_failed() { # dir name: did the last start of this component fail because its port was taken?
  tail -n 30 "$1/logs/$2.log" 2>/dev/null | grep -q 'address already in use'
}

show_log_tail() { # dir name
  local f="$1/logs/$2.log"
  [[ -f $f ]] || return 0
  echo "----- last 40 lines of $f -----" >&2
  tail -n 40 "$f" >&2
  echo "----- end of $2 log -----" >&2
}

readyz() { # dir port -> prints the body of /readyz
  curl -sS --max-time 2 --cacert "$1/pki/apiserver.crt" -H "Authorization: Bearer ${S[ADMIN_TOKEN]}" \
    "https://127.0.0.1:$2/readyz" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------------------------
# Components

start_etcd() { # dir [keep-data] -> 0 ready, 1 failed, 2 port taken
  local dir=$1 keep=${2:-} port=${S[ETCD_PORT]} peer=${S[ETCD_PEER_PORT]} pid i state=new
  if [[ -n $keep && -d $dir/etcd/member ]]; then
    state=existing
  else
    rm -rf "$dir/etcd"
  fi
  spawn "$dir" etcd "$(command -v etcd)" \
    --name=default \
    --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$port" \
    --advertise-client-urls="http://127.0.0.1:$port" \
    --listen-peer-urls="http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer" \
    --initial-cluster="default=http://127.0.0.1:$peer" \
    --initial-cluster-state="$state" \
    --initial-cluster-token="singleton-$port" \
    --heartbeat-interval=100 --election-timeout=500 \
    --snapshot-count=10000 \
    --log-level=warn --logger=zap --log-outputs=stderr
  pid=$SPAWNED_PID
  for ((i = 0; i < 300; i++)); do
    if ! is_ours "$pid" "$dir" && ! still_starting "$pid"; then
      wait "$pid" 2>/dev/null || true
      bind_failed "$dir" etcd && return 2
      return 1
    fi
    if pid_listens "$pid" "$port" && pid_listens "$pid" "$peer" &&
      curl -fsS --max-time 1 "http://127.0.0.1:$port/health" 2>/dev/null | grep -q '"health":"true"'; then
      return 0
    fi
    sleep 0.1
  done
  log "etcd did not become healthy within 30 s"
  return 1
}

apiserver_args() { # dir
  local dir=$1
  printf '%s\n' \
    --etcd-servers="${S[ETCD_URL]}" \
    --secure-port="${S[APISERVER_PORT]}" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --cert-dir="$dir/pki" \
    --token-auth-file="$dir/pki/tokens.csv" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$dir/pki/sa.pub" \
    --service-account-signing-key-file="$dir/pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/24 \
    --endpoint-reconciler-type=none \
    --allow-privileged=true \
    --enable-priority-and-fairness=false \
    --profiling=false \
    --v="$VERBOSITY"
  # Later flags win, so these may also override the ones above.
  local extra
  for extra in ${CLUSTER_APISERVER_FLAGS:-}; do printf '%s\n' "$extra"; done
}

# Starts kube-apiserver with the flags recorded in DIR/run/kube-apiserver.args and waits for /readyz.
start_apiserver() { # dir -> 0 ready, 1 failed, 2 port taken
  local dir=$1 port=${S[APISERVER_PORT]} pid deadline args=()
  mapfile -t args <"$dir/run/kube-apiserver.args"
  spawn "$dir" kube-apiserver "${S[BIN_DIR]}/kube-apiserver" "${args[@]}"
  pid=$SPAWNED_PID
  deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! is_ours "$pid" "$dir" && ! still_starting "$pid"; then
      wait "$pid" 2>/dev/null || true
      bind_failed "$dir" kube-apiserver && return 2
      return 1
    fi
    if [[ -f $dir/pki/apiserver.crt ]] && pid_listens "$pid" "$port" && [[ $(readyz "$dir" "$port") == ok ]]; then
      return 0
    fi
    sleep 0.1
  done
  log "kube-apiserver did not become ready within ${READY_TIMEOUT} s"
  return 1
}

start_controller_manager() { # dir
  local dir=$1
  spawn "$dir" kube-controller-manager "${S[BIN_DIR]}/kube-controller-manager" \
    --kubeconfig="$dir/kubeconfig" \
    --leader-elect=false \
    --service-account-private-key-file="$dir/pki/sa.key" \
    --root-ca-file="$dir/pki/apiserver.crt" \
    --use-service-account-credentials=false \
    --controllers='*,-nodeipam' \
    --node-monitor-grace-period="${S[NODE_MONITOR_GRACE_PERIOD]}" \
    --node-monitor-period=2s \
    --port=0 --secure-port=0 \
    --profiling=false \
    --v="$VERBOSITY"
}

start_scheduler() { # dir
  local dir=$1
  spawn "$dir" kube-scheduler "${S[BIN_DIR]}/kube-scheduler" \
    --kubeconfig="$dir/kubeconfig" \
    --leader-elect=false \
    --port=0 --secure-port=0 \
    --profiling=false \
    --v="$VERBOSITY"
}

write_kubeconfig() { # dir
  local dir=$1
  (
    umask 077
    cat >"$dir/kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: singleton-local
  cluster:
    server: ${S[APISERVER_URL]}
    certificate-authority: $dir/pki/apiserver.crt
users:
- name: admin
  user:
    token: ${S[ADMIN_TOKEN]}
contexts:
- name: singleton-local
  context:
    cluster: singleton-local
    user: admin
    namespace: default
current-context: singleton-local
EOF
    mv -f "$dir/kubeconfig.tmp" "$dir/kubeconfig"
  )
}

# kube-apiserver on TERM stops listening at once but then keeps open watch streams alive until they end or its
# --request-timeout (60 s) passes. So: TERM, wait until it exits or no longer listens, give it one more second
# to finish, then KILL. That cuts open watches within about a second, as a restart would. --kill: KILL at once.
stop_apiserver_pid() { # dir pid port [kill]
  local dir=$1 pid=$2 port=$3 hard=${4:-} i
  is_ours "$pid" "$dir" || return 0
  if [[ -z $hard ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      is_ours "$pid" "$dir" || break
      pid_listens "$pid" "$port" || break
      sleep 0.1
    done
    for ((i = 0; i < 10; i++)); do
      is_ours "$pid" "$dir" || break
      sleep 0.1
    done
  fi
  is_ours "$pid" "$dir" && kill -KILL "$pid" 2>/dev/null
  for ((i = 0; i < 50; i++)); do
    is_ours "$pid" "$dir" || break
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || true
}

# Stops everything recorded under DIR/run: first the watchdog (so it does not race with us) and the apiserver's
# clients, then the apiserver, then etcd.
stop_all() { # dir
  local dir=$1 pids=() name pid
  for name in watchdog kube-scheduler kube-controller-manager; do
    pid=$(recorded_pid "$dir" "$name")
    [[ -n $pid ]] && pids+=("$pid")
  done
  ((${#pids[@]})) && stop_pids "$dir" "${pids[@]}"
  # One the watchdog revived just before it stopped.
  for name in kube-scheduler kube-controller-manager; do
    pid=$(recorded_pid "$dir" "$name")
    [[ -n $pid ]] && is_ours "$pid" "$dir" && stop_pids "$dir" "$pid"
  done
  pid=$(recorded_pid "$dir" kube-apiserver)
  if [[ -n $pid ]]; then
    [[ -n ${S[APISERVER_PORT]:-} ]] || load_state "$dir" || true
    stop_apiserver_pid "$dir" "$pid" "${S[APISERVER_PORT]:-0}"
  fi
  pid=$(recorded_pid "$dir" etcd)
  [[ -n $pid ]] && stop_pids "$dir" "$pid"
  return 0
}

# ---------------------------------------------------------------------------------------------------------------
# Commands

UP_DIR=
FAILED_COMPONENT=
up_on_exit() {
  local rc=$?
  ((rc == 0)) && return 0
  log "up failed (exit $rc); tearing down what was started"
  [[ -n $FAILED_COMPONENT ]] && ((rc != 130)) && show_log_tail "$UP_DIR" "$FAILED_COMPONENT"
  [[ -n $UP_DIR ]] && stop_all "$UP_DIR"
  [[ -n $UP_DIR && -d $UP_DIR/run ]] && rm -f "$UP_DIR"/run/*.pid
  log "logs are in $UP_DIR/logs"
  return "$rc"
}

cmd_up() {
  local dir="" owner="" grace=10s start attempt rc name pid
  while (($#)); do
    case $1 in
      --owner-pid) owner=${2:?--owner-pid needs a value}; shift 2 ;;
      --owner-pid=*) owner=${1#*=}; shift ;;
      --node-monitor-grace-period) grace=${2:?--node-monitor-grace-period needs a value}; shift 2 ;;
      --node-monitor-grace-period=*) grace=${1#*=}; shift ;;
      -h | --help) usage; exit 0 ;;
      -*) die "unknown option for up: $1" ;;
      *) [[ -z $dir ]] || die "unexpected argument: $1"; dir=$1; shift ;;
    esac
  done
  [[ -n $dir ]] || die "usage: cluster.sh up DIR [--owner-pid PID] [--node-monitor-grace-period DURATION]"
  dir=$(abs_dir "$dir")
  [[ -z $owner || $owner =~ ^[0-9]+$ ]] || die "--owner-pid must be a pid: $owner"
  [[ -z $owner ]] || kill -0 "$owner" 2>/dev/null || die "owner pid $owner is not running"
  [[ $grace =~ ^[0-9]+(ms|s|m)$ ]] || die "--node-monitor-grace-period must be a duration like 10s: $grace"

  start=$(now)
  if [[ -d $dir/run ]]; then
    for name in "${COMPONENTS[@]}" watchdog; do
      pid=$(recorded_pid "$dir" "$name")
      [[ -n $pid ]] && is_ours "$pid" "$dir" && die "a cluster is already running in $dir ($name, pid $pid)"
    done
  fi
  if [[ -d $dir && ! -f $dir/$MARKER && -n $(ls -A "$dir") ]]; then
    die "$dir is not empty and holds no cluster; give an empty or new directory"
  fi
  mkdir -p "$dir"
  rm -rf "$dir/etcd" "$dir/pki" "$dir/run" "$dir/env" "$dir/kubeconfig"
  mkdir -p "$dir/logs" "$dir/run" "$dir/pki"
  : >"$dir/$MARKER"

  UP_DIR=$dir
  trap up_on_exit EXIT
  trap 'exit 130' INT TERM HUP

  local bin_dir
  bin_dir=$("$SELF_DIR/build-binaries.sh") || die "build-binaries.sh failed"
  for name in kube-apiserver kube-controller-manager kube-scheduler; do
    [[ -x $bin_dir/$name ]] || die "missing $bin_dir/$name"
  done
  for name in etcd openssl curl kubectl setsid; do
    command -v "$name" >/dev/null || die "$name not found (run scripts/deps.sh)"
  done

  S=([CLUSTER_DIR]=$dir [KUBECONFIG]=$dir/kubeconfig [CA_FILE]=$dir/pki/apiserver.crt [BIN_DIR]=$bin_dir
    [LOG_DIR]=$dir/logs [NODE_MONITOR_GRACE_PERIOD]=$grace [OWNER_PID]=$owner)

  # Credentials: a random admin token in system:masters, and the service-account signing key pair.
  S[ADMIN_TOKEN]=$(openssl rand -hex 32)
  # The key is generated while etcd starts.
  (umask 077 && echo "${S[ADMIN_TOKEN]},admin,admin,\"system:masters\"" >"$dir/pki/tokens.csv")
  local keygen_pid
  (
    umask 077
    openssl genrsa -out "$dir/pki/sa.key" 2048 2>/dev/null &&
      openssl rsa -in "$dir/pki/sa.key" -pubout -out "$dir/pki/sa.pub" 2>/dev/null
  ) &
  keygen_pid=$!

  FAILED_COMPONENT=etcd
  for attempt in 1 2 3 4 5; do
    pick_port
    S[ETCD_PORT]=$PICKED_PORT
    pick_port
    S[ETCD_PEER_PORT]=$PICKED_PORT
    S[ETCD_URL]=http://127.0.0.1:${S[ETCD_PORT]}
    rc=0
    start_etcd "$dir" || rc=$?
    ((rc == 0)) && break
    ((rc == 2 && attempt < 5)) || die "etcd failed to start"
    log "etcd: port taken, retrying with other ports"
  done
  log "etcd ready on ${S[ETCD_URL]} ($(elapsed "$start") s)"

  FAILED_COMPONENT=
  wait "$keygen_pid" || die "openssl could not generate the service-account key"

  FAILED_COMPONENT=kube-apiserver
  for attempt in 1 2 3 4 5; do
    pick_port
    S[APISERVER_PORT]=$PICKED_PORT
    S[APISERVER_URL]=https://127.0.0.1:${S[APISERVER_PORT]}
    apiserver_args "$dir" >"$dir/run/kube-apiserver.args"
    rc=0
    start_apiserver "$dir" || rc=$?
    ((rc == 0)) && break
    ((rc == 2 && attempt < 5)) || die "kube-apiserver failed to start"
    log "kube-apiserver: port taken, retrying with another port"
  done
  write_kubeconfig "$dir"
  save_state "$dir"
  log "kube-apiserver ready on ${S[APISERVER_URL]} ($(elapsed "$start") s)"

  FAILED_COMPONENT=
  start_controller_manager "$dir"
  start_scheduler "$dir"
  save_state "$dir"

  local ok=""
  for ((attempt = 0; attempt < 300; attempt++)); do
    if kubectl --kubeconfig="$dir/kubeconfig" get namespace default -o name >/dev/null 2>&1; then
      ok=1
      break
    fi
    sleep 0.1
  done
  [[ -n $ok ]] || die "namespace default did not appear within 30 s"
  for name in kube-controller-manager kube-scheduler; do
    FAILED_COMPONENT=$name
    is_ours "$(recorded_pid "$dir" "$name")" "$dir" || die "$name exited during start-up"
  done
  FAILED_COMPONENT=

  if [[ -n $owner ]]; then
    local owner_start
    owner_start=$(proc_start "$owner")
    [[ -n $owner_start ]] || die "owner pid $owner is gone"
    (cd / && spawn "$dir" watchdog "$SELF" _watchdog "$dir" "$owner" "$owner_start")
    S[WATCHDOG_PID]=$(recorded_pid "$dir" watchdog)
  fi
  save_state "$dir"

  trap - EXIT INT TERM HUP
  log "cluster up in $(elapsed "$start") s: ${S[APISERVER_URL]} (KUBECONFIG=$dir/kubeconfig)"
  echo "$dir"
}

cmd_down() {
  local dir="" keep=""
  while (($#)); do
    case $1 in
      --keep) keep=1; shift ;;
      -h | --help) usage; exit 0 ;;
      -*) die "unknown option for down: $1" ;;
      *) [[ -z $dir ]] || die "unexpected argument: $1"; dir=$1; shift ;;
    esac
  done
  [[ -n $dir ]] || die "usage: cluster.sh down DIR [--keep]"
  dir=$(abs_dir "$dir")
  [[ -d $dir ]] || return 0
  [[ -d $dir/run ]] && stop_all "$dir"
  rm -f "$dir"/run/*.pid
  if [[ -n $keep ]]; then
    log "cluster in $dir is down (kept)"
    return 0
  fi
  if [[ -f $dir/$MARKER ]]; then
    rm -rf "$dir" 2>/dev/null || rm -rf "$dir"
    log "cluster in $dir is down and removed"
  else
    log "cluster processes stopped; not removing $dir (it does not look like a cluster directory)"
  fi
}

need_cluster_dir() { # dir -> loads state
  [[ -f $1/env ]] || die "no cluster in $1 (missing $1/env)"
  load_state "$1"
}

stop_apiserver() { # dir [kill]
  local dir=$1 pid
  pid=$(recorded_pid "$dir" kube-apiserver)
  [[ -n $pid ]] && stop_apiserver_pid "$dir" "$pid" "${S[APISERVER_PORT]}" "${2:-}"
  rm -f "$dir/run/kube-apiserver.pid"
  S[APISERVER_PID]=
  save_state "$dir"
}

start_apiserver_again() {
  local dir=$1 start attempt rc pid
  start=$(now)
  pid=$(recorded_pid "$dir" kube-apiserver)
  [[ -n $pid ]] && is_ours "$pid" "$dir" && die "kube-apiserver is already running (pid $pid)"
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    rc=0
    start_apiserver "$dir" || rc=$?
    ((rc == 0)) && break
    if ((rc == 2 && attempt < 10)); then
      log "kube-apiserver: port ${S[APISERVER_PORT]} is still taken; retrying"
      sleep 0.5
      continue
    fi
    show_log_tail "$dir" kube-apiserver
    rm -f "$dir/run/kube-apiserver.pid"
    S[APISERVER_PID]=
    save_state "$dir"
    die "kube-apiserver failed to start"
  done
  save_state "$dir"
  log "kube-apiserver ready again on ${S[APISERVER_URL]} ($(elapsed "$start") s)"
}

# etcd: TERM (or KILL at once with --kill, a crash), then start it again on the same ports with its data kept.
stop_etcd() { # dir [kill]
  local dir=$1 pid i
  pid=$(recorded_pid "$dir" etcd)
  if [[ -n $pid ]] && is_ours "$pid" "$dir"; then
    if [[ -n ${2:-} ]]; then kill -KILL "$pid" 2>/dev/null || true; else kill -TERM "$pid" 2>/dev/null || true; fi
    for ((i = 0; i < 100; i++)); do
      is_ours "$pid" "$dir" || break
      sleep 0.1
    done
    is_ours "$pid" "$dir" && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/run/etcd.pid"
  S[ETCD_PID]=
  save_state "$dir"
}

start_etcd_again() { # dir
  local dir=$1 start attempt rc pid
  start=$(now)
  pid=$(recorded_pid "$dir" etcd)
  [[ -n $pid ]] && is_ours "$pid" "$dir" && die "etcd is already running (pid $pid)"
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    rc=0
    start_etcd "$dir" keep || rc=$?
    ((rc == 0)) && break
    if ((rc == 2 && attempt < 10)); then
      log "etcd: a port is still taken; retrying"
      sleep 0.5
      continue
    fi
    show_log_tail "$dir" etcd
    die "etcd failed to start"
  done
  save_state "$dir"
  log "etcd ready again on ${S[ETCD_URL]} ($(elapsed "$start") s)"
}

# stop-, start- and restart- of one component (apiserver or etcd), with its ports and data kept.
cmd_component() { # component action dir [--kill]
  local component=$1 action=$2 dir="" hard="" name
  shift 2
  name=$([[ $component == apiserver ]] && echo kube-apiserver || echo "$component")
  while (($#)); do
    case $1 in
      --kill) [[ $action != start ]] || die "start-$component takes no --kill"; hard=1; shift ;;
      -h | --help) usage; exit 0 ;;
      -*) die "unknown option for $action-$component: $1" ;;
      *) [[ -z $dir ]] || die "unexpected argument: $1"; dir=$1; shift ;;
    esac
  done
  [[ -n $dir ]] || die "usage: cluster.sh $action-$component DIR"
  dir=$(abs_dir "$dir")
  need_cluster_dir "$dir"
  case $action in
    stop) "stop_$component" "$dir" "$hard"; log "$name stopped" ;;
    start) "start_${component}_again" "$dir" ;;
    restart) "stop_$component" "$dir" "$hard"; "start_${component}_again" "$dir" ;;
  esac
}

cmd_status() {
  local dir=${1:-} name pid healthy=1 ready
  [[ -n $dir ]] || die "usage: cluster.sh status DIR"
  dir=$(abs_dir "$dir")
  if [[ ! -f $dir/env ]]; then
    echo "no cluster in $dir"
    return 1
  fi
  load_state "$dir"
  for name in "${COMPONENTS[@]}" watchdog; do
    pid=$(recorded_pid "$dir" "$name")
    if [[ -n $pid ]] && is_ours "$pid" "$dir"; then
      printf '%-24s running (pid %s)\n' "$name" "$pid"
    elif [[ $name == watchdog && -z ${S[OWNER_PID]} ]]; then
      printf '%-24s none (no --owner-pid)\n' "$name"
    else
      printf '%-24s stopped\n' "$name"
      healthy=""
    fi
  done
  ready=$(readyz "$dir" "${S[APISERVER_PORT]}")
  printf '%-24s %s\n' "apiserver /readyz" "${ready:-unreachable}"
  printf '%-24s %s\n' "apiserver" "${S[APISERVER_URL]}"
  printf '%-24s %s\n' "kubeconfig" "${S[KUBECONFIG]}"
  [[ $ready == ok ]] || healthy=""
  [[ -n $healthy ]]
}

# kube-controller-manager and kube-scheduler exit on some errors while the apiserver is unreachable (the namespace
# controller's discovery at start-up calls klog.Fatalf): tests that restart or freeze the apiserver would otherwise
# lose them for good (no default ServiceAccount in new namespaces, so no pods). A kubelet restarts such static pods;
# the watchdog does the same.
revive_clients() { # dir
  local dir=$1 name pid
  for name in kube-controller-manager kube-scheduler; do
    pid=$(recorded_pid "$dir" "$name")
    [[ -n $pid ]] || continue
    is_ours "$pid" "$dir" && continue
    still_starting "$pid" && continue
    wait "$pid" 2>/dev/null || true
    log "$name (pid $pid) exited; starting it again (its log: $dir/logs/$name.log)"
    load_state "$dir" || return 0
    if [[ $name == kube-controller-manager ]]; then start_controller_manager "$dir"; else start_scheduler "$dir"; fi
    save_state "$dir"
  done
}

# Runs detached; revives the apiserver's clients, and tears the cluster down once the owner process is gone.
cmd_watchdog() { # dir owner-pid owner-start
  local dir=$1 owner=$2 owner_start=$3
  while [[ $(proc_start "$owner") == "$owner_start" ]]; do
    sleep 0.5
    [[ -d $dir ]] || exit 0
    revive_clients "$dir"
  done
  log "owner pid $owner exited; tearing down the cluster in $dir"
  if [[ -n ${SINGLETON_KEEP_CLUSTER:-} && ${SINGLETON_KEEP_CLUSTER} != 0 ]]; then
    cmd_down "$dir" --keep
  else
    cmd_down "$dir"
  fi
}

main() {
  local cmd=${1:-}
  (($#)) && shift
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    stop-apiserver) cmd_component apiserver stop "$@" ;;
    start-apiserver) cmd_component apiserver start "$@" ;;
    restart-apiserver) cmd_component apiserver restart "$@" ;;
    stop-etcd) cmd_component etcd stop "$@" ;;
    start-etcd) cmd_component etcd start "$@" ;;
    restart-etcd) cmd_component etcd restart "$@" ;;
    status) cmd_status "$@" ;;
    _watchdog) cmd_watchdog "$@" ;;
    -h | --help | help) usage ;;
    "") usage >&2; exit 2 ;;
    *) log "unknown command: $cmd"; usage >&2; exit 2 ;;
  esac
}

main "$@"
