# twemproxy (nutcracker) from Debian's package, for the `cluster` profile of docker-compose.yml.
# Build context: deploy/ (docker build -f deploy/nutcracker.Dockerfile deploy).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends nutcracker \
 && rm -rf /var/lib/apt/lists/*
COPY compose-nutcracker.yml /etc/nutcracker/nutcracker.yml
# nobody: the proxy needs no privileges and writes nothing (logs go to stderr).
USER 65534:65534
EXPOSE 22121
# nutcracker answers a Redis PING itself, so this checks the proxy, not the nodes behind it.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/22121 && printf '*1\\r\\n$4\\r\\nPING\\r\\n' >&3 && IFS= read -r -t 2 reply <&3 && [[ $reply == +PONG* ]]"]
ENTRYPOINT ["nutcracker"]
# Debian's build logs to /var/log/nutcracker by default; a container logs to stderr.
CMD ["--conf-file=/etc/nutcracker/nutcracker.yml", "--output=/dev/stderr", "--stats-port=22222"]
