#!/bin/sh
# The "scale" profile's streaming replica: copied from the primary with pg_basebackup
# -R on its first start (an empty volume), then a hot standby that answers reads.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h postgres -U compere -d compere >/dev/null 2>&1; do sleep 1; done
  PGPASSWORD="$POSTGRES_PASSWORD" pg_basebackup -h postgres -U compere -D "$PGDATA" -R \
    --checkpoint=fast --wal-method=stream
  chmod 700 "$PGDATA"
fi
exec postgres -c hot_standby=on
