#!/bin/sh
# First start of the primary only (docker-entrypoint-initdb.d): let the "scale"
# profile's replica stream from it with the compere role's password.
set -eu
echo "host replication compere all scram-sha-256" >> "$PGDATA/pg_hba.conf"
