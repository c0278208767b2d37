-- Annal schema, version 4: identity and access. Organisations are tenants;
-- people are users with a membership (one role) per organisation; they log
-- in to sessions. See docs/ACCESS.md for who may do what.
--
-- Unlike the ledger tables these are mutable (a password changes, a session
-- ends), so the app role may UPDATE and DELETE them; every change is also
-- recorded as an event in the organisation's own log.

-- The person. Global: one email logs in once, whatever organisations it
-- belongs to. Found before any tenant is known (login), like an API key.
CREATE TABLE annal.users (
    id              uuid PRIMARY KEY,
    -- Trimmed and lower-cased.
    email           text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 320),
    -- PHC string of Argon2id; NULL until the user sets one (invited).
    password_hash   text,
    created_at      timestamptz NOT NULL,
    -- TOTP secret sealed with AES-256-GCM under a key derived from the
    -- deployment's pepper (never in the database in clear). NULL: no TOTP.
    totp_secret     bytea,
    -- Offered during enrollment, confirmed by a first code.
    totp_pending    bytea,
    -- The time step of the last accepted code: each code is accepted once.
    totp_last_step  bigint,
    CONSTRAINT users_email UNIQUE (email)
);

-- Recovery codes: SHA-256 of each (they are random, 80 bits), shown once.
CREATE TABLE annal.recovery_codes (
    user_id     uuid NOT NULL REFERENCES annal.users (id) ON DELETE CASCADE,
    code_hash   bytea NOT NULL CHECK (octet_length(code_hash) = 32),
    used_at     timestamptz,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE annal.memberships (
    tenant_id   uuid NOT NULL REFERENCES annal.tenants (id),
    user_id     uuid NOT NULL REFERENCES annal.users (id),
    role        text NOT NULL CHECK (role IN ('owner', 'admin', 'hr_lead', 'analyst', 'viewer', 'auditor')),
    -- 'invited' until the invitation is accepted; only active members log in.
    status      text NOT NULL CHECK (status IN ('invited', 'active')),
    -- SHA-256 of the invitation token while invited.
    invite_hash bytea CHECK (invite_hash IS NULL OR octet_length(invite_hash) = 32),
    invite_expires_at timestamptz,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user ON annal.memberships (user_id);
CREATE UNIQUE INDEX memberships_invite ON annal.memberships (invite_hash) WHERE invite_hash IS NOT NULL;

CREATE TABLE annal.sessions (
    id                uuid PRIMARY KEY,
    tenant_id         uuid NOT NULL REFERENCES annal.tenants (id),
    user_id           uuid NOT NULL REFERENCES annal.users (id),
    -- SHA-256 of the 256-bit session token and of its anti-CSRF token.
    token_hash        bytea NOT NULL CHECK (octet_length(token_hash) = 32),
    csrf_hash         bytea NOT NULL CHECK (octet_length(csrf_hash) = 32),
    created_at        timestamptz NOT NULL,
    last_seen_at      timestamptz NOT NULL,
    -- Absolute expiry; the idle limit is checked against last_seen_at.
    expires_at        timestamptz NOT NULL,
    -- The last time the user proved password (and TOTP when enrolled).
    authenticated_at  timestamptz NOT NULL,
    -- Whether TOTP (or a recovery code) was verified then.
    mfa               boolean NOT NULL,
    revoked_at        timestamptz,
    revoked_reason    text,
    CONSTRAINT sessions_token UNIQUE (token_hash)
);
CREATE INDEX sessions_user ON annal.sessions (tenant_id, user_id);

-- Per organisation: whether Owners and Admins must use MFA.
CREATE TABLE annal.org_settings (
    tenant_id     uuid PRIMARY KEY REFERENCES annal.tenants (id),
    mfa_required  boolean NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- Row-level security. Tenant tables as everywhere; users are visible as
-- members of the current tenant, as the user of the current session, or
-- by the email being logged in with (transaction-local settings made by
-- the lookup functions below).
CREATE FUNCTION annal.current_user_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('annal.user_id', true), '')::uuid $$;

ALTER TABLE annal.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.users FORCE ROW LEVEL SECURITY;
CREATE POLICY user_visibility ON annal.users
    USING (id = annal.current_user_id()
        OR email = NULLIF(current_setting('annal.login_email', true), '')
        OR EXISTS (SELECT 1 FROM annal.memberships m
                   WHERE m.user_id = users.id AND m.tenant_id = annal.current_tenant()))
    WITH CHECK (true);

ALTER TABLE annal.recovery_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.recovery_codes FORCE ROW LEVEL SECURITY;
CREATE POLICY own_codes ON annal.recovery_codes
    USING (user_id = annal.current_user_id())
    WITH CHECK (user_id = annal.current_user_id());

ALTER TABLE annal.memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.memberships FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON annal.memberships
    USING (tenant_id = annal.current_tenant())
    WITH CHECK (tenant_id = annal.current_tenant());
-- At login, the user's own memberships (to pick the organisation).
CREATE POLICY own_memberships ON annal.memberships FOR SELECT
    USING (user_id = annal.current_user_id());
-- Accepting an invitation: the one membership its token names.
CREATE POLICY invitation ON annal.memberships
    USING (invite_hash = decode(NULLIF(current_setting('annal.invite_hash', true), ''), 'hex'))
    WITH CHECK (true);

ALTER TABLE annal.sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON annal.sessions
    USING (tenant_id = annal.current_tenant())
    WITH CHECK (tenant_id = annal.current_tenant());
-- Authenticating a request: the one session its token names.
CREATE POLICY session_lookup ON annal.sessions
    USING (token_hash = decode(NULLIF(current_setting('annal.session_hash', true), ''), 'hex'));

ALTER TABLE annal.org_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.org_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON annal.org_settings
    USING (tenant_id = annal.current_tenant())
    WITH CHECK (tenant_id = annal.current_tenant());

-- The system log: events that belong to no organisation (a failed login
-- for an unknown email), in the same format as any tenant's. Its id is the
-- nil UUID; it has no members and no keys.
SELECT set_config('annal.tenant_id', '00000000-0000-0000-0000-000000000000', true);
INSERT INTO annal.tenants (id, name, created_at)
    SELECT '00000000-0000-0000-0000-000000000000', 'system', now()
    WHERE NOT EXISTS (SELECT 1 FROM annal.tenants WHERE id = '00000000-0000-0000-0000-000000000000');

-- Exporting becomes its own scope, `export`. Keys that could export
-- before (every key with events:read) keep that ability: the one change
-- to stored keys, made here by their owner with the revoke-only trigger
-- set aside for it.
-- (Row-level security is lifted for the owner for this one statement too:
-- it spans every tenant.)
ALTER TABLE annal.api_keys DISABLE TRIGGER api_keys_revoke_only;
ALTER TABLE annal.api_keys NO FORCE ROW LEVEL SECURITY;
UPDATE annal.api_keys SET scopes = scopes || ARRAY['export']
    WHERE 'events:read' = ANY (scopes) AND NOT 'export' = ANY (scopes);
ALTER TABLE annal.api_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE annal.api_keys ENABLE TRIGGER api_keys_revoke_only;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA annal FROM PUBLIC;
GRANT EXECUTE ON FUNCTION annal.current_user_id() TO annal_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON annal.users, annal.recovery_codes,
    annal.memberships, annal.sessions, annal.org_settings TO annal_app;

CREATE OR REPLACE FUNCTION annal.schema_version() RETURNS integer
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT 4 $$;
