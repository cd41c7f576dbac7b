# singleton-operator image: the operator, the singleton-elect CLI and the in-pod singleton-agent on
# debian:bookworm-slim.
#
#   docker build -t singleton-operator:latest .
#   kind load docker-image singleton-operator:latest     # then: kubectl apply -k manifests/
#
# Both stages use Debian bookworm, so the runtime stage's glibc is the one the builder linked against.

ARG DEBIAN_IMAGE=debian:bookworm-slim

# ---- build ----------------------------------------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS build

# The same build dependencies as scripts/deps.sh, minus test, lint and control-plane tools.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libcpprest-dev libboost-dev libboost-system-dev nlohmann-json3-dev libssl-dev \
      libyaml-cpp-dev libspdlog-dev libfmt-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# The whole tree minus what .dockerignore excludes: the top-level CMakeLists.txt adds lib/, cli/, operator/ and e2e/.
COPY . .

RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSINGLETON_BUILD_TESTS=OFF \
 && cmake --build build --parallel "$(nproc)" --target singleton-operator singleton-elect singleton-agent \
 && for bin in singleton-operator singleton-elect singleton-agent; do \
      path=$(find build -type f -name "$bin" -perm -u+x | head -n 1); \
      if [ -z "$path" ]; then echo "build produced no $bin" >&2; exit 1; fi; \
      install -D -m 0755 "$path" "/out/usr/local/bin/$bin"; \
    done \
 && strip --strip-unneeded /out/usr/local/bin/*

# ---- runtime --------------------------------------------------------------------------------------------------------
FROM ${DEBIAN_IMAGE}

# The three binaries are linked lean (Boost.Beast transport, static OpenSSL, yaml-cpp and libstdc++; readelf -d lists
# only libc, which the base image has). ca-certificates for HTTPS to anything other than the in-cluster apiserver,
# whose CA comes from the service-account volume. singleton-agent runs in the workload's pods, not the operator's
# (docs/handoff.md); needing only libc, it can be copied from this image into a workload image.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A fixed non-root user (65532, as in distroless "nonroot"), so runAsNonRoot can be checked from the numeric USER.
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nonroot

COPY --from=build /out/usr/local/bin/ /usr/local/bin/

# Fail the image build, not the pod start, if a shared library is missing.
RUN for bin in /usr/local/bin/singleton-operator /usr/local/bin/singleton-elect /usr/local/bin/singleton-agent; do \
      if ldd "$bin" | grep 'not found'; then echo "$bin: missing shared libraries" >&2; exit 1; fi; \
    done

USER 65532:65532
# Metrics and health probes (see manifests/deployment.yaml).
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/singleton-operator"]
