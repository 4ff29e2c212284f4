# syntax=docker/dockerfile:1
#
# mcp-auth-gateway container image.
#
#   docker build -t mcp-auth-gateway .
#   docker run --rm mcp-auth-gateway keys generate      # any `gateway` subcommand
#
# Stage 1 builds the `gateway` binary with the locked dependency versions;
# stage 2 is a small Debian runtime with the binary, CA certificates and
# busybox (for the health check), running as an unprivileged user.

# ---------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder

WORKDIR /src
ENV CARGO_INCREMENTAL=0 \
    CARGO_TERM_COLOR=never

# The whole workspace (see .dockerignore for what is left out): Cargo needs
# every member's manifest to resolve the workspace.
COPY . .

# The registry and target directories are BuildKit cache mounts, so rebuilds
# after a source change reuse compiled dependencies. The binary is copied out
# of the cache mount into the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release -p gateway --locked \
 && install -D -m 0755 target/release/gateway /out/gateway

# ---------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to the OAuth providers.
# busybox: its `wget` applet is the health check's HTTP client. It is one
# ~0.8 MB binary that needs only libc, against curl's dozen shared libraries
# (and their CVEs); the gateway image ships no other tools.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates busybox \
 && rm -rf /var/lib/apt/lists/*

# An unprivileged user with a fixed uid/gid (10001), so that volumes and
# secret files can be given to it by number.
RUN groupadd --gid 10001 gateway \
 && useradd --uid 10001 --gid gateway --home-dir /data --no-create-home --no-log-init \
      --shell /usr/sbin/nologin gateway \
 && install -d -o gateway -g gateway -m 0700 /data

COPY --from=builder /out/gateway /usr/local/bin/gateway

# Listen on all interfaces inside the container; DATA_DIR holds the embedded
# SQLite database and the generated development secrets (development only: in
# production the database is PostgreSQL and the keys come from secrets).
ENV HOST=0.0.0.0 \
    PORT=8000 \
    DATA_DIR=/data

WORKDIR /data
USER 10001:10001

# 8000: the API. 9100: the metrics listener when METRICS_ADDR=0.0.0.0:9100.
EXPOSE 8000 9100

# /health answers 503 while the database is unreachable, which makes the
# container unhealthy. busybox wget exits 1 on any non-2xx answer or a refused
# connection. (No `-T`: busybox 1.35's wget crashes with -T on a refused
# connection; Docker's --timeout bounds the probe instead.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD busybox wget -q -O /dev/null "http://127.0.0.1:${PORT}/health" || exit 1

ENTRYPOINT ["gateway"]
CMD ["serve"]
