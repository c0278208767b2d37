-- Annal schema, version 5: passkeys (WebAuthn) as a second factor.
--
-- A passkey belongs to a person, not to an organisation (like their TOTP):
-- it is visible only to a transaction acting as its user. The state of a
-- ceremony in progress (the challenge the server issued) is kept here
-- between its two requests, never by the client, and lives five minutes.

CREATE TABLE annal.passkeys (
    id              uuid PRIMARY KEY,
    user_id         uuid NOT NULL REFERENCES annal.users (id) ON DELETE CASCADE,
    -- The authenticator's credential id (raw bytes).
    credential_id   bytea NOT NULL CHECK (octet_length(credential_id) BETWEEN 1 AND 1023),
    -- webauthn-rs's `Passkey` as JSON: the public key and signature counter.
    -- Rewritten after each use (counter and backup state).
    passkey         jsonb NOT NULL,
    name            text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    created_at      timestamptz NOT NULL,
    last_used_at    timestamptz,
    CONSTRAINT passkeys_credential UNIQUE (credential_id)
);
CREATE INDEX passkeys_user ON annal.passkeys (user_id);

-- A registration or login ceremony begun and not yet finished. Taken (deleted)
-- by the request that finishes it, so each challenge is answered once.
CREATE TABLE annal.passkey_ceremonies (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES annal.users (id) ON DELETE CASCADE,
    -- The organisation the ceremony is in (a login's: the one it is for).
    tenant_id   uuid NOT NULL REFERENCES annal.tenants (id),
    kind        text NOT NULL CHECK (kind IN ('register', 'login', 'reauth')),
    -- webauthn-rs's registration or authentication state, as JSON.
    state       jsonb NOT NULL,
    -- For a registration: the name the passkey will have.
    name        text CHECK (name IS NULL OR char_length(name) BETWEEN 1 AND 100),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX passkey_ceremonies_user ON annal.passkey_ceremonies (user_id);

ALTER TABLE annal.passkeys ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.passkeys FORCE ROW LEVEL SECURITY;
CREATE POLICY own_passkeys ON annal.passkeys
    USING (user_id = annal.current_user_id())
    WITH CHECK (user_id = annal.current_user_id());

ALTER TABLE annal.passkey_ceremonies ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.passkey_ceremonies FORCE ROW LEVEL SECURITY;
CREATE POLICY own_ceremonies ON annal.passkey_ceremonies
    USING (user_id = annal.current_user_id())
    WITH CHECK (user_id = annal.current_user_id());
-- Finishing a login: the one ceremony its id names (the user is not known
-- before it is read).
CREATE POLICY ceremony_lookup ON annal.passkey_ceremonies
    USING (id = NULLIF(current_setting('annal.ceremony_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE, DELETE ON annal.passkeys, annal.passkey_ceremonies TO annal_app;

CREATE OR REPLACE FUNCTION annal.schema_version() RETURNS integer
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT 5 $$;
