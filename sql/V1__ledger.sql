-- Annal ledger schema, version 1.
--
-- Run by `annal migrate` as the migrator role, which owns everything here.
-- The roles annal_app and annal_retention must already exist (see
-- sql/roles/create_roles.sql); this migration only grants to them.

CREATE SCHEMA annal;
REVOKE ALL ON SCHEMA annal FROM PUBLIC;

-- The tenant of the current transaction, set transaction-locally with
-- set_config('annal.tenant_id', ..., true). No tenant set means NULL, and
-- NULL matches no row.
CREATE FUNCTION annal.current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('annal.tenant_id', true), '')::uuid $$;

-- The API key being authenticated, set transaction-locally by the key lookup
-- (the only query that runs before the tenant is known).
CREATE FUNCTION annal.current_api_key() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('annal.api_key_id', true), '')::uuid $$;

-- Raised for any UPDATE, DELETE or TRUNCATE of an append-only table.
CREATE FUNCTION annal.reject_mutation() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'annal: % on %.% is not allowed: the ledger is append-only',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TABLE annal.tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL
);

CREATE TABLE annal.api_keys (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES annal.tenants (id),
    -- HMAC-SHA-256 of the secret under the deployment's key pepper.
    secret_mac  bytea NOT NULL CHECK (octet_length(secret_mac) = 32),
    scopes      text[] NOT NULL,
    created_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON annal.api_keys (tenant_id);

CREATE TABLE annal.events (
    tenant_id      uuid NOT NULL REFERENCES annal.tenants (id),
    seq            bigint NOT NULL CHECK (seq >= 0),
    event_id       uuid NOT NULL,
    received_at    timestamptz NOT NULL,
    action         text NOT NULL,
    -- The hashed record (canonical header bytes), see docs/FORMAT.md.
    record         bytea NOT NULL,
    leaf_hash      bytea NOT NULL CHECK (octet_length(leaf_hash) = 32),
    chain_hash     bytea NOT NULL CHECK (octet_length(chain_hash) = 32),
    -- Canonical payload bytes and the salt of its commitment.
    payload        bytea NOT NULL,
    salt           bytea NOT NULL CHECK (octet_length(salt) = 32),
    -- Copies of payload fields, for filtering only; the payload is the truth.
    actor_id       text NOT NULL,
    resource_type  text NOT NULL,
    resource_id    text NOT NULL,
    request_id     text,
    PRIMARY KEY (tenant_id, seq),
    UNIQUE (tenant_id, event_id)
);
CREATE INDEX events_actor ON annal.events (tenant_id, actor_id, seq);
CREATE INDEX events_action ON annal.events (tenant_id, action text_pattern_ops, seq);
CREATE INDEX events_resource ON annal.events (tenant_id, resource_type, resource_id, seq);
CREATE INDEX events_request ON annal.events (tenant_id, request_id, seq) WHERE request_id IS NOT NULL;
CREATE INDEX events_received ON annal.events (tenant_id, received_at, seq);

-- Append-only: no UPDATE, DELETE or TRUNCATE, whoever asks.
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON annal.events
    FOR EACH ROW EXECUTE FUNCTION annal.reject_mutation();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON annal.events
    FOR EACH STATEMENT EXECUTE FUNCTION annal.reject_mutation();
CREATE TRIGGER tenants_append_only BEFORE UPDATE OR DELETE ON annal.tenants
    FOR EACH ROW EXECUTE FUNCTION annal.reject_mutation();
CREATE TRIGGER tenants_no_truncate BEFORE TRUNCATE ON annal.tenants
    FOR EACH STATEMENT EXECUTE FUNCTION annal.reject_mutation();

-- Keys are never deleted; the only change allowed is revoking a live key.
CREATE FUNCTION annal.guard_api_key_update() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF OLD.revoked_at IS NOT NULL OR NEW.revoked_at IS NULL
       OR (NEW.id, NEW.tenant_id, NEW.secret_mac, NEW.scopes, NEW.created_at)
          IS DISTINCT FROM (OLD.id, OLD.tenant_id, OLD.secret_mac, OLD.scopes, OLD.created_at) THEN
        RAISE EXCEPTION 'annal: an API key can only be revoked, once'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER api_keys_revoke_only BEFORE UPDATE ON annal.api_keys
    FOR EACH ROW EXECUTE FUNCTION annal.guard_api_key_update();
CREATE TRIGGER api_keys_no_delete BEFORE DELETE ON annal.api_keys
    FOR EACH ROW EXECUTE FUNCTION annal.reject_mutation();
CREATE TRIGGER api_keys_no_truncate BEFORE TRUNCATE ON annal.api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION annal.reject_mutation();

-- Row-level security, forced on the owner too.
ALTER TABLE annal.tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON annal.tenants
    USING (id = annal.current_tenant())
    WITH CHECK (id = annal.current_tenant());

ALTER TABLE annal.api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.api_keys FORCE ROW LEVEL SECURITY;
-- Reading a key by id before the tenant is known (authentication) is the
-- one exception, and it is for SELECT only.
CREATE POLICY tenant_isolation ON annal.api_keys
    USING (tenant_id = annal.current_tenant())
    WITH CHECK (tenant_id = annal.current_tenant());
CREATE POLICY key_lookup ON annal.api_keys FOR SELECT
    USING (id = annal.current_api_key());

ALTER TABLE annal.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON annal.events
    USING (tenant_id = annal.current_tenant())
    WITH CHECK (tenant_id = annal.current_tenant());

-- Looks up one API key by id before the tenant is known: row-level
-- security lets the caller see only the key it names. Runs as the caller.
CREATE FUNCTION annal.find_api_key(key_id uuid)
    RETURNS TABLE (id uuid, tenant_id uuid, secret_mac bytea, scopes text[], revoked_at timestamptz)
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM set_config('annal.api_key_id', key_id::text, true);
    RETURN QUERY SELECT k.id, k.tenant_id, k.secret_mac, k.scopes, k.revoked_at
        FROM annal.api_keys k WHERE k.id = key_id;
    PERFORM set_config('annal.api_key_id', '', true);
END
$$;

-- Functions are not for everyone: PostgreSQL grants EXECUTE to PUBLIC by
-- default. Revoke it from these, and (globally, for the migrator: a
-- per-schema REVOKE cannot remove the global default) from every function
-- the migrator creates later, such as a SECURITY DEFINER purge function.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA annal FROM PUBLIC;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- The server's role: read and append, nothing else.
GRANT USAGE ON SCHEMA annal TO annal_app;
GRANT EXECUTE ON FUNCTION annal.current_tenant(), annal.current_api_key(), annal.find_api_key(uuid) TO annal_app;
GRANT SELECT, INSERT ON annal.tenants, annal.events TO annal_app;
GRANT SELECT, INSERT ON annal.api_keys TO annal_app;
GRANT UPDATE (revoked_at) ON annal.api_keys TO annal_app;

-- The retention role gets only schema usage now; its purge function comes
-- with the retention migration.
GRANT USAGE ON SCHEMA annal TO annal_retention;

-- The schema version this database is at; `annal serve` refuses to run
-- against any other. Each later migration replaces it.
CREATE FUNCTION annal.schema_version() RETURNS integer
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT 1 $$;
GRANT EXECUTE ON FUNCTION annal.schema_version() TO annal_app, annal_retention;
