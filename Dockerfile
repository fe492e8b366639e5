# kvcache: kvcache-server (with kvcache-cli and kvcache-bench beside it) in a slim Debian image.
#
#   docker build -t kv-cache .
#   docker run -p 7171:7171 kv-cache
#
# Settings come from KV_CACHE_* environment variables (docker run -e KV_CACHE_MAX_MEMORY=256mb ...) or
# from flags after the image name (docker run kv-cache --max-memory 256mb). Change the port with
# KV_CACHE_PORT, not --port, so that the health check follows it.

# --- planner: reduce the source tree to what decides the dependency build ----------------------------
# The manifests, Cargo.lock, and a stub `fn main() {}` at the path of every target that cargo metadata
# lists. The skeleton changes only when dependencies or targets do, so the builder's dependency layer
# stays cached across source edits.
FROM rust:1.95-slim-bookworm AS planner
WORKDIR /src
COPY . .
RUN set -eu; \
    mkdir /skeleton; \
    cp Cargo.lock /skeleton/; \
    cargo metadata --no-deps --format-version 1 --offline > /tmp/metadata.json; \
    grep -o '"manifest_path":"[^"]*"' /tmp/metadata.json | cut -d'"' -f4 | sort -u > /tmp/manifests; \
    grep -o '"src_path":"[^"]*"' /tmp/metadata.json | cut -d'"' -f4 | sort -u > /tmp/targets; \
    while read -r path; do \
        rel=${path#/src/}; mkdir -p "/skeleton/$(dirname "$rel")"; cp "$path" "/skeleton/$rel"; \
    done < /tmp/manifests; \
    while read -r path; do \
        rel=${path#/src/}; mkdir -p "/skeleton/$(dirname "$rel")"; echo 'fn main() {}' > "/skeleton/$rel"; \
    done < /tmp/targets

# --- builder: dependencies first (cached), then the three binaries --------------------------------
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
# Symbols are of no use in the image: stripping them saves 1.0 of the three binaries' 5.7 MB.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_TERM_COLOR=never
COPY --from=planner /skeleton/ ./
RUN cargo build --release --locked
COPY . .
# COPY keeps the sources' own (older) mtimes; touch them so cargo rebuilds over the stubs.
RUN find . -path ./target -prune -o -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin kvcache-server --bin kvcache-cli --bin kvcache-bench

# --- runtime --------------------------------------------------------------------------------------
FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="kvcache" \
      org.opencontainers.image.description="In-memory key-value cache: KV-Cache line protocol and Redis RESP on one port" \
      org.opencontainers.image.licenses="MIT"
# A fixed numeric user, so that runAsNonRoot-style checks can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 kvcache \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin kvcache
COPY --from=builder /src/target/release/kvcache-server /src/target/release/kvcache-cli \
     /src/target/release/kvcache-bench /usr/local/bin/
COPY deploy/kvcache-healthcheck.sh /usr/local/bin/kvcache-healthcheck
# Snapshots (warm restart) go to /data, a volume owned by the server's user: a new named volume
# starts as a copy of this directory, ownership included. KV_CACHE_SNAPSHOT_FILE= (empty) turns
# them off.
RUN mkdir /data && chown 10001:10001 /data && chmod 700 /data
VOLUME /data
USER 10001:10001
# 11211: the memcached text and meta protocols over the same store (KV_CACHE_MEMCACHE_PORT=0 turns it off).
ENV KV_CACHE_HOST=0.0.0.0 \
    KV_CACHE_PORT=7171 \
    KV_CACHE_MEMCACHE_PORT=11211 \
    KV_CACHE_SNAPSHOT_FILE=/data/kvcache.snap
EXPOSE 7171 11211
# kvcache-cli PING: non-zero on any error reply (NOAUTH included) or no connection. The password comes
# from KV_CACHE_PASSWORD or KV_CACHE_PASSWORD_FILE, like the server's.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["kvcache-healthcheck"]
# The server is PID 1 and handles SIGTERM itself: stop accepting, finish in-flight batches, save the
# snapshot, exit 0; within docker stop's default 10 s grace period for a cache of a few GB (raise it
# with docker stop -t / stop_grace_period for larger ones).
STOPSIGNAL SIGTERM
ENTRYPOINT ["kvcache-server"]
