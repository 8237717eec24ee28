# moat container image: the gateway alone, on distroless, as uid 65532.
#
#   docker build -t moat .
#   docker run --rm --read-only -p 8883:8883 \
#     -v "$PWD/moat.yaml:/etc/moat/moat.yaml:ro" -v "$PWD/tls:/etc/moat/tls:ro" moat
#
# The effective command is `moat run --config /etc/moat/moat.yaml`; give other
# arguments to run another command (`... moat check --config /etc/moat/moat.yaml`).
# docs/deployment.md has the whole procedure; scripts/test-container builds
# this file offline with Podman and runs it against a real Mosquitto.
#
# The build context is only what `cargo build` needs (see .dockerignore).

# ---- build ------------------------------------------------------------------
FROM docker.io/library/rust:1.95-slim-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep the crates.io download and the compiled dependencies
# between builds (BuildKit and Buildah both have them); they never reach a
# layer. aws-lc-sys builds with the image's gcc: no cmake, clang or Go needed.
# The release profile keeps line tables for backtraces (a 54 MB binary); the
# image drops the debug sections (14 MB) but keeps the symbols, so a panic's
# backtrace still names the functions.
RUN --mount=type=cache,id=moat-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=moat-target,target=/src/target \
    cargo build --release --locked -p moat \
 && mkdir -p /out/usr/local/bin \
 && objcopy --strip-debug target/release/moat /out/usr/local/bin/moat \
 && chmod 0755 /out/usr/local/bin/moat \
 && /out/usr/local/bin/moat version
# The OCSP cache directory (tls.ocsp.cache_dir: /var/lib/moat/ocsp), owned by
# the runtime user so that a volume mounted there inherits that ownership.
RUN install -d -m 0700 /out/var/lib/moat

# ---- runtime ----------------------------------------------------------------
# distroless/cc: glibc, libgcc, CA certificates and a `nonroot` user; no shell,
# no package manager. moat links aws-lc statically, so nothing else is needed.
FROM gcr.io/distroless/cc-debian12

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="moat" \
      org.opencontainers.image.description="A TLS gateway for MQTT brokers: modern TLS and mutual TLS on 8883 in front of any plaintext broker" \
      org.opencontainers.image.url="https://github.com/moat-gateway/moat" \
      org.opencontainers.image.source="https://github.com/moat-gateway/moat" \
      org.opencontainers.image.documentation="https://github.com/moat-gateway/moat/blob/main/docs/deployment.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="moat" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12"

COPY --from=builder /out/usr/local/bin/moat /usr/local/bin/moat
COPY --from=builder --chown=65532:65532 /out/var/lib/moat /var/lib/moat

# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
# 65532 is distroless' `nonroot`. moat writes nothing unless
# tls.ocsp.cache_dir or development.generate_certificates is set, so the image
# runs with a read-only root filesystem; put the OCSP cache on a volume at
# /var/lib/moat.
USER 65532:65532

# 8883: MQTT over TLS. 9090: the admin endpoint (/healthz, /readyz, /metrics);
# it has no authentication, so publish it only to localhost or a private network.
EXPOSE 8883 9090

# SIGTERM: stop accepting, report not ready, drain for shutdown.drain_timeout
# (30 s by default), exit 0. Give the container longer than that to stop:
# `docker stop -t 40`, compose `stop_grace_period: 40s`.
STOPSIGNAL SIGTERM

# Liveness through the admin endpoint named in the configuration (there is no
# curl in the image). Needs admin.listen in /etc/moat/moat.yaml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/moat", "healthcheck", "--config", "/etc/moat/moat.yaml"]

ENTRYPOINT ["/usr/local/bin/moat"]
CMD ["run", "--config", "/etc/moat/moat.yaml"]
