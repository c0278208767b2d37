#!/usr/bin/env bash
# Runs once, when the postgres container initialises its data directory:
# creates Annal's roles (with passwords from the environment) and database.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -f /annal/create_roles.sql
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v migrator_password="$ANNAL_MIGRATOR_PASSWORD" \
    -v app_password="$ANNAL_APP_PASSWORD" \
    -v retention_password="$ANNAL_RETENTION_PASSWORD" <<'SQL'
ALTER ROLE annal_migrator PASSWORD :'migrator_password';
ALTER ROLE annal_app PASSWORD :'app_password';
ALTER ROLE annal_retention PASSWORD :'retention_password';
CREATE DATABASE annal OWNER annal_migrator;
SQL
