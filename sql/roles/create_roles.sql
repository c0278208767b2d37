-- Creates Annal's three roles. Run once per PostgreSQL cluster by a
-- superuser (or a role with CREATEROLE) before `annal migrate`; then create
-- the database owned by annal_migrator. Set passwords to suit your
-- deployment, e.g. \password annal_app in psql. Not a migration: roles are
-- cluster-wide, migrations are per database.
CREATE ROLE annal_migrator LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB;
CREATE ROLE annal_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB;
CREATE ROLE annal_retention LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB;
