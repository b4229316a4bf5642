#!/bin/sh
# Writes PgBouncer's user list from the environment (never baked into the image).
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
umask 077
printf '"compere" "%s"\n' "$POSTGRES_PASSWORD" > /tmp/pgbouncer-users.txt
exec pgbouncer /etc/pgbouncer/pgbouncer.ini
