#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler and client-go's leader-election example from
# Debian's `kubernetes` source package with Debian's Go, and caches them outside the repository, keyed by version.
# Prints the cache directory (holding the binaries) on stdout. A second run with the cache in place does nothing.
set -euo pipefail

version=${KUBE_SOURCE_VERSION:-1.20.2}
# Bump when the build recipe changes, so caches built by an older recipe are not used.
recipe=2
cache_root=${SINGLETON_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/singleton-operator}
bin_dir="$cache_root/kubernetes-$version-r$recipe/bin"
binaries=(kube-apiserver kube-controller-manager kube-scheduler leader-election-example)

have_all() { for b in "${binaries[@]}"; do [[ -x "$bin_dir/$b" ]] || return 1; done; }
if have_all; then echo "$bin_dir"; exit 0; fi

log() { echo "build-binaries: $*" >&2; }
work="$cache_root/kubernetes-$version/work"
mkdir -p "$work" "$bin_dir"
# One build at a time: a second caller waits for the first and then finds the cache filled.
exec 9>"$cache_root/build.lock"
flock 9
if have_all; then echo "$bin_dir"; exit 0; fi
src="$work/kubernetes-$version"

if [[ ! -d "$src" ]]; then
  # deb-src entries derived from the existing binary entries, so no package host is written anywhere by us.
  if ! apt-get source --download-only --print-uris kubernetes >/dev/null 2>&1 ||
     [[ -z $(apt-get source --download-only --print-uris kubernetes 2>/dev/null | grep -c orig) ]]; then
    for f in /etc/apt/sources.list.d/*.sources; do
      [[ -f $f ]] || continue
      grep -q '^Types:.*deb-src' "$f" && continue
      target="/etc/apt/sources.list.d/singleton-src-$(basename "$f")"
      [[ -f $target ]] || sed 's/^Types: .*/Types: deb-src/' "$f" >"$target"
    done
    if [[ -f /etc/apt/sources.list ]] && grep -q '^deb ' /etc/apt/sources.list; then
      target=/etc/apt/sources.list.d/singleton-src.list
      [[ -f $target ]] || sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >"$target"
    fi
    apt-get update -qq
  fi
  log "downloading the kubernetes source package"
  (cd "$work" && apt-get source --download-only -qq kubernetes >/dev/null)
  origs=("$work"/kubernetes_*.orig.tar.*)
  orig=${origs[0]}
  log "unpacking $(basename "$orig")"
  tar -C "$work" -xf "$orig"
  # awk reads the whole listing: `| head -n 1` would kill tar with SIGPIPE, which pipefail turns into a failure.
  unpacked=$(tar -tf "$orig" | awk -F/ 'NR == 1 { print $1 }')
  [[ "$work/$unpacked" == "$src" ]] || mv "$work/$unpacked" "$src"
fi

export GOPATH="$src/.go" CGO_ENABLED=0 GOFLAGS= GOCACHE="$work/.gocache"
mkdir -p "$GOPATH/src/k8s.io"
ln -sfn "$src" "$GOPATH/src/k8s.io/kubernetes"

# Kubernetes 1.20 vendors modern-go/reflect2 1.0.1, which crashes under Go >= 1.18 ("fatal error: fault" in
# json-iterator's map encoding, e.g. on the first create of a custom resource). Debian ships 1.0.2, which works.
reflect2=/usr/share/gocode/src/github.com/modern-go/reflect2
[[ -d $reflect2 ]] || { log "missing $reflect2 (Debian package golang-github-modern-go-reflect2-dev; run scripts/deps.sh)"; exit 1; }
if ! cmp -s "$reflect2/reflect2.go" "$src/vendor/github.com/modern-go/reflect2/reflect2.go"; then
  log "replacing the vendored modern-go/reflect2 with Debian's (Go 1.18+ compatible)"
  rsync -a --delete --exclude '*_test.go' "$reflect2/" "$src/vendor/github.com/modern-go/reflect2/"
fi

if [[ ! -x "$bin_dir/kube-apiserver" || ! -x "$bin_dir/kube-controller-manager" || ! -x "$bin_dir/kube-scheduler" ]]; then
  log "building the control plane (about 4 minutes on 2 cores the first time)"
  # A build interrupted earlier can leave a half-built code generator behind.
  [[ -f "$src/.singleton-build-ok" ]] || rm -rf "$src/_output"
  (cd "$GOPATH/src/k8s.io/kubernetes" &&
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" >"$work/build.log" 2>&1) ||
    { tail -n 30 "$work/build.log" >&2; exit 1; }
  touch "$src/.singleton-build-ok"
  for b in kube-apiserver kube-controller-manager kube-scheduler; do
    install -m 0755 "$(find "$src/_output" -type f -name "$b" -path '*bin*' -print -quit)" "$bin_dir/$b"
  done
fi

if [[ ! -x "$bin_dir/leader-election-example" ]]; then
  log "building client-go's leader-election example (the peer for benchmarks)"
  example="$src/vendor/k8s.io/client-go/examples/leader-election"
  peer="$src/.go/src/k8s.io/kubernetes/cmd/singleton-peer-leader-election"
  mkdir -p "$peer"
  # Its durations are hard-coded (60/15/5 s); make them come from the environment, defaults unchanged.
  sed -e 's/LeaseDuration: *60 \* time.Second/LeaseDuration: envDuration("LE_LEASE_DURATION", 60*time.Second)/' \
      -e 's/RenewDeadline: *15 \* time.Second/RenewDeadline: envDuration("LE_RENEW_DEADLINE", 15*time.Second)/' \
      -e 's/RetryPeriod: *5 \* time.Second/RetryPeriod: envDuration("LE_RETRY_PERIOD", 5*time.Second)/' \
      "$example/main.go" >"$peer/main.go"
  grep -q 'envDuration("LE_RETRY_PERIOD"' "$peer/main.go" || { log "could not patch the example's durations"; exit 1; }
  cat >>"$peer/main.go" <<'GO'

func envDuration(name string, fallback time.Duration) time.Duration {
	if v, ok := os.LookupEnv(name); ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return fallback
}
GO
  (cd "$GOPATH/src/k8s.io/kubernetes" &&
    GO111MODULE=off go build -o "$bin_dir/leader-election-example" ./cmd/singleton-peer-leader-election) >&2
fi

have_all || { log "some binaries are missing in $bin_dir"; exit 1; }
echo "$bin_dir"
