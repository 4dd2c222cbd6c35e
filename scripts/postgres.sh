#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback, for the test suite and the benchmarks.
#
#   scripts/postgres.sh start DIR PORT   initdb into DIR (if new) and start; prints the URL
#   scripts/postgres.sh pause DIR        stop (fast), keeping DIR
#   scripts/postgres.sh resume DIR       start a paused cluster again, same port
#   scripts/postgres.sh stop DIR         stop and remove DIR
#
# Uses Debian's postgresql package, installed when missing and running as root. initdb refuses
# to run as root, so as root the cluster runs as the package's `postgres` user.
set -euo pipefail

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [[ -z $d ]]; then
    if [[ $(id -u) == 0 ]]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
      d=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    else
      echo "PostgreSQL is not installed (apt-get install postgresql, as root)" >&2
      exit 1
    fi
  fi
  echo "$d"
}

as_owner() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd=${1:?start|pause|resume|stop}
dir=${2:?data directory}
bin=$(bindir)
case $cmd in
  start)
    port=${3:?port}
    mkdir -p "$dir"
    if [[ $(id -u) == 0 ]]; then chown postgres "$dir"; fi
    if [[ ! -f $dir/PG_VERSION ]]; then
      as_owner "$bin/initdb" -D "$dir" -U postgres --auth=trust --no-instructions -E UTF8 >/dev/null
      cat >>"$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 400
CONF
    fi
    as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/log" -w -t 60 start >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  pause)
    as_owner "$bin/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null
    ;;
  resume)
    as_owner "$bin/pg_ctl" -D "$dir" -l "$dir/log" -w -t 60 start >/dev/null
    ;;
  stop)
    if [[ -f $dir/postmaster.pid ]]; then
      as_owner "$bin/pg_ctl" -D "$dir" -m immediate -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start DIR PORT | pause DIR | resume DIR | stop DIR" >&2
    exit 2
    ;;
esac
