#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis the tests use answer on 127.0.0.1; start them if not.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

wait_for() {
  local what=$1 probe=$2
  for _ in $(seq 1 60); do
    if $probe; then return 0; fi
    sleep 0.5
  done
  echo "$what did not come up on 127.0.0.1" >&2
  return 1
}

if ! pg_up; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
  wait_for PostgreSQL pg_up
fi
if ! redis_up; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for Redis redis_up
fi
echo "services: PostgreSQL and Redis answer on 127.0.0.1"
