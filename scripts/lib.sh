# shellcheck shell=bash
# Helpers shared by the measurement scripts and the CI suites; source it, do not run it.

# A TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until something answers PING on PORT (redis-cli), trying TRIES times 0.1 s apart
# (default 100); fails with a line on stderr if nothing does.
wait_port() {
  local port=$1 tries=${2:-100}
  for _ in $(seq 1 "$tries"); do
    if redis-cli -p "$port" PING >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "nothing answers on port $port" >&2
  return 1
}

# The median of the numbers on stdin, one per line.
median() {
  sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'
}
