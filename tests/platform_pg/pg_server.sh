#!/usr/bin/env bash
# `make deps`: a PostgreSQL answering on 127.0.0.1:5432 for tests/platform_pg (user postgres, no
# password). Nothing is changed when one already answers. Otherwise Debian's `postgresql` is
# installed if missing, its cluster created if missing and started (pg_ctlcluster). Only a cluster
# this script installed or created gets trust authentication for local and 127.0.0.1 connections (a
# test machine's throwaway server); an existing cluster's pg_hba.conf is left alone.
set -euo pipefail
HOST=${PG_HOST:-127.0.0.1} PORT=${PG_PORT:-5432}
if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h $HOST -p $PORT; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "no PostgreSQL on $HOST:$PORT and not root: tests/platform_pg will skip and say why"; exit 0
fi
fresh=0
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "installing Debian's postgresql (tests/platform_pg)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fresh=1
fi
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$ver main"; then
  pg_createcluster "$ver" main >/dev/null
  fresh=1
fi
if [ $fresh -eq 1 ]; then
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  { echo "local all all trust"; echo "host all all 127.0.0.1/32 trust"; grep -v '^\s*#' "$hba" | grep -v '^\s*$'; } > "$hba.new"
  mv "$hba.new" "$hba"
fi
pg_ctlcluster "$ver" main status >/dev/null 2>&1 || pg_ctlcluster "$ver" main start
for _ in $(seq 1 ${PG_WAIT:-60}); do pg_isready -q -h $HOST -p $PORT && { echo "PostgreSQL $ver main on $HOST:$PORT"; exit 0; }; sleep 0.5; done
echo "PostgreSQL $ver main did not answer on $HOST:$PORT (see /var/log/postgresql/): tests/platform_pg will skip"
