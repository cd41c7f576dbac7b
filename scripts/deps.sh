#!/usr/bin/env bash
# Installs every build, test and control-plane dependency from Debian's packages. Idempotent: a package that is
# already installed is not fetched again, and `apt-get update` runs only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config clang-format clang-tidy
  libcpprest-dev libboost-dev libboost-system-dev nlohmann-json3-dev libssl-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev
  etcd-server etcd-client golang-go golang-github-modern-go-reflect2-dev rsync openssl curl procps psmisc ca-certificates
  ccache clang
  faketime libfaketime  # the fault campaign's clock offsets (tests/integration/chaos_test.cc)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v kubectl >/dev/null 2>&1; then
  missing+=(kubernetes-client)
fi

if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}" >&2
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: need root to install packages (run as root or install: ${missing[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# libFuzzer's runtime for `make fuzz`, in the package of the installed clang's version (clang-14: libclang-rt-14-dev).
clang_major=$(clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\)\..*/\1/p' | head -n 1)
if [[ -n $clang_major ]] && ! dpkg-query -W -f='${Status}' "libclang-rt-$clang_major-dev" 2>/dev/null | grep -q "install ok installed"; then
  if apt-cache show "libclang-rt-$clang_major-dev" >/dev/null 2>&1; then
    echo "deps: installing libclang-rt-$clang_major-dev" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "libclang-rt-$clang_major-dev" >/dev/null
  fi
fi
echo "deps: all present" >&2
