-- Annal ledger schema, version 3: retention. Records older than their
-- tenant's retention period are purged as a prefix of the log, by one
-- SECURITY DEFINER function that only annal_retention may call and that
-- decides by itself what is old enough. Before deleting, it keeps the purge
-- boundary (the compact range and chain hash at the first retained seq), so
-- that everything retained stays provable. See docs/FORMAT.md §14.

-- Deployment-wide settings, one row. Changed only by the migrator.
--   retention_floor_months: no tenant's retention period may be shorter.
--   clock_offset: added to the database clock for every retention decision.
--     Zero in production; the tests move it years ahead. `annal serve`
--     warns when it is not zero, and every purge records the time it used.
CREATE TABLE annal.deployment_settings (
    singleton               boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    retention_floor_months  integer NOT NULL CHECK (retention_floor_months BETWEEN 1 AND 1200),
    clock_offset            interval NOT NULL DEFAULT '0'
);
INSERT INTO annal.deployment_settings (retention_floor_months) VALUES (84);

CREATE TRIGGER deployment_settings_no_delete BEFORE DELETE ON annal.deployment_settings
    FOR EACH ROW EXECUTE FUNCTION annal.reject_mutation();
CREATE TRIGGER deployment_settings_no_truncate BEFORE TRUNCATE ON annal.deployment_settings
    FOR EACH STATEMENT EXECUTE FUNCTION annal.reject_mutation();
ALTER TABLE annal.deployment_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.deployment_settings FORCE ROW LEVEL SECURITY;
-- Not a tenant table: everyone who may read it reads the one row.
CREATE POLICY deployment_wide ON annal.deployment_settings USING (true) WITH CHECK (true);

-- The time retention decisions are made at.
CREATE FUNCTION annal.retention_now() RETURNS timestamptz
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    SET TimeZone = 'UTC'
    AS $$ SELECT now() + clock_offset FROM annal.deployment_settings $$;

-- Each tenant's retention policy and legal hold, as a history: every change
-- inserts the complete new state as the next version; the latest version is
-- in force. A tenant without a row keeps its records for the floor.
CREATE TABLE annal.retention_policies (
    tenant_id      uuid NOT NULL REFERENCES annal.tenants (id),
    version        integer NOT NULL CHECK (version >= 1),
    period_months  integer NOT NULL CHECK (period_months BETWEEN 1 AND 1200),
    legal_hold     boolean NOT NULL,
    -- Why this change was made (required for hold changes).
    reason         text CHECK (reason IS NULL OR char_length(reason) BETWEEN 1 AND 500),
    change         text NOT NULL CHECK (change IN ('period', 'hold_on', 'hold_off')),
    changed_at     timestamptz NOT NULL,
    -- Who made it (an operator's name, a user id), as the event's actor.
    changed_by     text NOT NULL CHECK (char_length(changed_by) BETWEEN 1 AND 256),
    -- The event that records this change in the tenant's own log.
    event_id       uuid NOT NULL,
    PRIMARY KEY (tenant_id, version),
    CHECK (change = 'period' OR reason IS NOT NULL)
);

-- No period below the deployment's floor, whoever inserts.
CREATE FUNCTION annal.check_retention_floor() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    floor_months integer;
BEGIN
    SELECT retention_floor_months INTO floor_months FROM annal.deployment_settings;
    IF NEW.period_months < floor_months THEN
        RAISE EXCEPTION 'annal: a retention period of % months is below the deployment floor of % months',
            NEW.period_months, floor_months
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER retention_policies_floor BEFORE INSERT ON annal.retention_policies
    FOR EACH ROW EXECUTE FUNCTION annal.check_retention_floor();
CREATE TRIGGER retention_policies_append_only BEFORE UPDATE OR DELETE ON annal.retention_policies
    FOR EACH ROW EXECUTE FUNCTION annal.reject_mutation();
CREATE TRIGGER retention_policies_no_truncate BEFORE TRUNCATE ON annal.retention_policies
    FOR EACH STATEMENT EXECUTE FUNCTION annal.reject_mutation();

-- Purge boundaries: one row per purge batch, the newest (largest size) in
-- force. Records [0, size) are gone; what proves the rest is kept here.
CREATE TABLE annal.purge_boundaries (
    tenant_id        uuid NOT NULL REFERENCES annal.tenants (id),
    -- Records [0, size) are purged; seq `size` is the first retained.
    size             bigint NOT NULL CHECK (size > 0),
    -- The chain hash of seq size - 1.
    chain_hash       bytea NOT NULL CHECK (octet_length(chain_hash) = 32),
    -- The compact range of the tree of `size` leaves: one hash per set bit
    -- of size, largest subtree first (docs/FORMAT.md §8).
    compact_range    bytea[] NOT NULL,
    -- The first signed checkpoint covering the boundary (size >= size).
    checkpoint_size  bigint NOT NULL,
    -- What the purge decided by: records received at or before the cutoff
    -- (retention_now() minus the period) were expired.
    cutoff           timestamptz NOT NULL,
    period_months    integer NOT NULL,
    -- retention_now() and the real database time of the purge.
    decided_at       timestamptz NOT NULL,
    purged_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, size),
    CHECK (checkpoint_size >= size),
    CHECK (cardinality(compact_range) = length(replace(size::bit(64)::text, '0', '')))
);

-- Which boundaries have been announced by a retention.purged event in the
-- tenant's log (written by the server after it appended the event).
CREATE TABLE annal.purge_announcements (
    tenant_id   uuid NOT NULL REFERENCES annal.tenants (id),
    size        bigint NOT NULL,
    event_id    uuid NOT NULL,
    seq         bigint NOT NULL,
    PRIMARY KEY (tenant_id, size)
);

-- Which policy versions are recorded in the tenant's log, and where (the
-- event itself will be purged with its period one day; this row stays).
CREATE TABLE annal.policy_records (
    tenant_id   uuid NOT NULL REFERENCES annal.tenants (id),
    version     integer NOT NULL,
    event_id    uuid NOT NULL,
    seq         bigint NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

-- Exports in progress: a purge does not delete the records an export is
-- reading (its from_seq and after) until the lease expires; the exporter
-- renews it with every page and removes it at the end.
CREATE TABLE annal.export_leases (
    tenant_id   uuid NOT NULL REFERENCES annal.tenants (id),
    id          uuid NOT NULL,
    from_seq    bigint NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TRIGGER policy_records_append_only BEFORE UPDATE OR DELETE ON annal.policy_records
    FOR EACH ROW EXECUTE FUNCTION annal.reject_mutation();
CREATE TRIGGER policy_records_no_truncate BEFORE TRUNCATE ON annal.policy_records
    FOR EACH STATEMENT EXECUTE FUNCTION annal.reject_mutation();
CREATE TRIGGER purge_boundaries_append_only BEFORE UPDATE OR DELETE ON annal.purge_boundaries
    FOR EACH ROW EXECUTE FUNCTION annal.reject_mutation();
CREATE TRIGGER purge_boundaries_no_truncate BEFORE TRUNCATE ON annal.purge_boundaries
    FOR EACH STATEMENT EXECUTE FUNCTION annal.reject_mutation();
CREATE TRIGGER purge_announcements_append_only BEFORE UPDATE OR DELETE ON annal.purge_announcements
    FOR EACH ROW EXECUTE FUNCTION annal.reject_mutation();
CREATE TRIGGER purge_announcements_no_truncate BEFORE TRUNCATE ON annal.purge_announcements
    FOR EACH STATEMENT EXECUTE FUNCTION annal.reject_mutation();

ALTER TABLE annal.retention_policies ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.retention_policies FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON annal.retention_policies
    USING (tenant_id = annal.current_tenant())
    WITH CHECK (tenant_id = annal.current_tenant());
ALTER TABLE annal.purge_boundaries ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.purge_boundaries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON annal.purge_boundaries
    USING (tenant_id = annal.current_tenant())
    WITH CHECK (tenant_id = annal.current_tenant());
ALTER TABLE annal.policy_records ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.policy_records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON annal.policy_records
    USING (tenant_id = annal.current_tenant())
    WITH CHECK (tenant_id = annal.current_tenant());
ALTER TABLE annal.export_leases ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.export_leases FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON annal.export_leases
    USING (tenant_id = annal.current_tenant())
    WITH CHECK (tenant_id = annal.current_tenant());
ALTER TABLE annal.purge_announcements ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.purge_announcements FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON annal.purge_announcements
    USING (tenant_id = annal.current_tenant())
    WITH CHECK (tenant_id = annal.current_tenant());

-- Events may now be deleted, by the purge function only: it sets these two
-- transaction-local settings after recording the boundary, and only rows
-- below that boundary of that tenant pass. Nobody else holds DELETE on the
-- table, so setting them by hand gets no one further; UPDATE and TRUNCATE
-- stay refused for every role.
CREATE FUNCTION annal.guard_event_delete() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF current_setting('annal.purge_tenant', true) IS DISTINCT FROM OLD.tenant_id::text
       OR OLD.seq >= coalesce(NULLIF(current_setting('annal.purge_below', true), '')::bigint, 0) THEN
        RAISE EXCEPTION 'annal: DELETE on annal.events is not allowed: the ledger is append-only (only the retention purge removes expired records)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN OLD;
END
$$;
DROP TRIGGER events_append_only ON annal.events;
CREATE TRIGGER events_no_update BEFORE UPDATE ON annal.events
    FOR EACH ROW EXECUTE FUNCTION annal.reject_mutation();
CREATE TRIGGER events_purge_only BEFORE DELETE ON annal.events
    FOR EACH ROW EXECUTE FUNCTION annal.guard_event_delete();

-- The purge function runs as the migrator, which row-level security binds
-- too (FORCE): it may list tenants, nothing more.
CREATE POLICY retention_listing ON annal.tenants FOR SELECT TO annal_migrator USING (true);

-- Every tenant's id, for the retention job.
CREATE FUNCTION annal.retention_tenants() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT id FROM annal.tenants ORDER BY id $$;

-- Purges (or, with p_dry_run, only reports) the next batch of a tenant's
-- expired records: at most p_max_rows rows, from the current boundary up to
-- the first record that is not expired. What "expired" means is decided
-- here and nowhere else, whatever the arguments:
--   - the period is the tenant's latest policy, never below the floor;
--   - nothing at all under legal hold;
--   - only records received at or before retention_now() - period;
--   - never the newest record (the chain's head), never a record not yet
--     covered by a signed checkpoint.
-- Before deleting, it records the new boundary, computing the compact range
-- from the previous boundary and the leaves it is about to delete (so it
-- also checks that they are gapless). One call is one short transaction
-- (the caller's); batches that stop before the end of what is expired stop
-- at a multiple of 256.
--
-- status: 'purged' | 'would_purge' | 'nothing_expired' | 'legal_hold'
--   | 'export_in_progress' (expired records wait for an export to finish)
CREATE FUNCTION annal.purge_expired(p_tenant uuid, p_max_rows integer, p_dry_run boolean)
    RETURNS TABLE (
        status         text,
        purged         bigint,
        boundary_from  bigint,
        boundary_to    bigint,
        checkpoint_size bigint,
        cutoff         timestamptz,
        period_months  integer,
        legal_hold     boolean,
        more           boolean
    )
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET TimeZone = 'UTC'
    AS $$
DECLARE
    v_caller_tenant text := current_setting('annal.tenant_id', true);
    v_floor     integer;
    v_now       timestamptz;
    v_period    integer;
    v_hold      boolean;
    v_cutoff    timestamptz;
    v_from      bigint;
    v_range     bytea[];
    v_head      bigint;
    v_signed    bigint;
    v_limit     bigint;
    v_window    bigint;
    v_young     bigint;
    v_end       bigint;
    v_more      boolean;
    v_chain     bytea;
    v_attest    bigint;
    v_size      bigint;
    v_hash      bytea;
    v_n         bigint;
    v_seq       bigint;
    v_leaf      bytea;
    v_deleted   bigint;
    v_lease     bigint;
    v_check     bytea[];
    v_root      bytea;
    v_signed_root bytea;
    v_signed_head bytea;
    v_head_hash bytea;
    v_i         integer;
BEGIN
    -- Everything below is decided on fresh reads: refuse to run inside an
    -- older snapshot (a caller's REPEATABLE READ transaction could hide a
    -- legal hold placed since) or in a transaction that already wrote
    -- (batches must stay bounded: one per transaction).
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'annal: purge_expired runs only at READ COMMITTED'
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'annal: purge_expired must run in a transaction of its own (one batch each)'
            USING ERRCODE = 'invalid_transaction_state';
    END IF;
    IF p_tenant IS NULL OR p_max_rows IS NULL OR p_dry_run IS NULL THEN
        RAISE EXCEPTION 'annal: purge_expired needs a tenant, a batch size and dry-run flag'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_max_rows < 1 OR (p_max_rows > 100000 AND NOT p_dry_run) THEN
        RAISE EXCEPTION 'annal: a purge batch is 1 to 100000 rows, not %', p_max_rows
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One purge of a tenant at a time.
    PERFORM pg_advisory_xact_lock(hashtext('annal.purge'), hashtext(p_tenant::text));
    PERFORM set_config('annal.tenant_id', p_tenant::text, true);

    SELECT s.retention_floor_months, now() + s.clock_offset
        INTO v_floor, v_now FROM annal.deployment_settings s;
    SELECT p.period_months, p.legal_hold INTO v_period, v_hold
        FROM annal.retention_policies p WHERE p.tenant_id = p_tenant
        ORDER BY p.version DESC LIMIT 1;
    v_period := greatest(coalesce(v_period, v_floor), v_floor);
    v_hold := coalesce(v_hold, false);
    v_cutoff := v_now - make_interval(months => v_period);
    SELECT b.size, b.compact_range INTO v_from, v_range
        FROM annal.purge_boundaries b WHERE b.tenant_id = p_tenant
        ORDER BY b.size DESC LIMIT 1;
    v_from := coalesce(v_from, 0);
    v_range := coalesce(v_range, '{}');

    IF v_hold THEN
        PERFORM set_config('annal.tenant_id', coalesce(v_caller_tenant, ''), true);
        RETURN QUERY SELECT 'legal_hold'::text, 0::bigint, v_from, v_from, NULL::bigint,
            v_cutoff, v_period, true, false;
        RETURN;
    END IF;

    SELECT max(e.seq) INTO v_head FROM annal.events e WHERE e.tenant_id = p_tenant;
    SELECT max(c.size) INTO v_signed FROM annal.checkpoints c WHERE c.tenant_id = p_tenant;
    v_limit := least(coalesce(v_head, 0), coalesce(v_signed, 0));
    v_window := v_from + p_max_rows;
    SELECT e.seq INTO v_young FROM annal.events e
        WHERE e.tenant_id = p_tenant AND e.seq >= v_from AND e.seq < v_window
          AND e.received_at > v_cutoff
        ORDER BY e.seq LIMIT 1;
    v_end := least(coalesce(v_young, v_window), v_limit);
    v_more := v_young IS NULL AND v_window < v_limit;
    -- Never what an export in progress is reading.
    SELECT min(l.from_seq) INTO v_lease FROM annal.export_leases l
        WHERE l.tenant_id = p_tenant AND l.expires_at > now();
    IF v_lease IS NOT NULL AND v_lease < v_end THEN
        IF v_lease <= v_from THEN
            PERFORM set_config('annal.tenant_id', coalesce(v_caller_tenant, ''), true);
            RETURN QUERY SELECT 'export_in_progress'::text, 0::bigint, v_from, v_from, NULL::bigint,
                v_cutoff, v_period, false, false;
            RETURN;
        END IF;
        v_end := v_lease;
        v_more := false;
    END IF;
    IF v_more AND v_end - v_end % 256 > v_from THEN
        v_end := v_end - v_end % 256;
    END IF;

    IF v_end <= v_from THEN
        PERFORM set_config('annal.tenant_id', coalesce(v_caller_tenant, ''), true);
        RETURN QUERY SELECT 'nothing_expired'::text, 0::bigint, v_from, v_from, NULL::bigint,
            v_cutoff, v_period, false, false;
        RETURN;
    END IF;
    SELECT min(c.size) INTO v_attest FROM annal.checkpoints c
        WHERE c.tenant_id = p_tenant AND c.size >= v_end;
    IF p_dry_run THEN
        PERFORM set_config('annal.tenant_id', coalesce(v_caller_tenant, ''), true);
        RETURN QUERY SELECT 'would_purge'::text, v_end - v_from, v_from, v_end, v_attest,
            v_cutoff, v_period, false, v_more;
        RETURN;
    END IF;

    -- The new boundary's compact range: the previous one with every leaf
    -- about to go appended (RFC 6962, docs/FORMAT.md §8).
    v_size := v_from;
    FOR v_seq, v_leaf, v_chain IN
        SELECT e.seq, e.leaf_hash, e.chain_hash FROM annal.events e
        WHERE e.tenant_id = p_tenant AND e.seq >= v_from AND e.seq < v_end
        ORDER BY e.seq
    LOOP
        IF v_seq <> v_size THEN
            RAISE EXCEPTION 'annal: tenant % has no record at seq %: refusing to purge past a gap',
                p_tenant, v_size USING ERRCODE = 'data_corrupted';
        END IF;
        v_hash := v_leaf;
        v_n := v_size;
        WHILE v_n % 2 = 1 LOOP
            v_hash := sha256('\x01'::bytea || v_range[cardinality(v_range)] || v_hash);
            v_range := v_range[1:cardinality(v_range) - 1];
            v_n := v_n / 2;
        END LOOP;
        v_range := v_range || v_hash;
        v_size := v_size + 1;
    END LOOP;
    IF v_size <> v_end THEN
        RAISE EXCEPTION 'annal: tenant % has no record at seq %: refusing to purge past a gap',
            p_tenant, v_size USING ERRCODE = 'data_corrupted';
    END IF;

    -- Before anything is deleted, the new boundary must be what the signed
    -- checkpoint attests: fold the retained leaves up to its size into a
    -- copy of the compact range and compare the root, and compare the
    -- chain head. A mismatch means the stored records are not what was
    -- signed: keep the evidence, refuse.
    v_check := v_range;
    v_n := v_end;
    FOR v_seq, v_leaf, v_head_hash IN
        SELECT e.seq, e.leaf_hash, e.chain_hash FROM annal.events e
        WHERE e.tenant_id = p_tenant AND e.seq >= v_end AND e.seq < v_attest
        ORDER BY e.seq
    LOOP
        IF v_seq <> v_n THEN
            RAISE EXCEPTION 'annal: tenant % has no record at seq %: refusing to purge past a gap',
                p_tenant, v_n USING ERRCODE = 'data_corrupted';
        END IF;
        v_hash := v_leaf;
        v_size := v_n;
        WHILE v_size % 2 = 1 LOOP
            v_hash := sha256('\x01'::bytea || v_check[cardinality(v_check)] || v_hash);
            v_check := v_check[1:cardinality(v_check) - 1];
            v_size := v_size / 2;
        END LOOP;
        v_check := v_check || v_hash;
        v_n := v_n + 1;
    END LOOP;
    IF v_n <> v_attest THEN
        RAISE EXCEPTION 'annal: tenant % has no record at seq %: refusing to purge past a gap',
            p_tenant, v_n USING ERRCODE = 'data_corrupted';
    END IF;
    v_root := v_check[cardinality(v_check)];
    FOR v_i IN REVERSE cardinality(v_check) - 1 .. 1 LOOP
        v_root := sha256('\x01'::bytea || v_check[v_i] || v_root);
    END LOOP;
    SELECT c.root, c.chain_head INTO v_signed_root, v_signed_head FROM annal.checkpoints c
        WHERE c.tenant_id = p_tenant AND c.size = v_attest;
    IF v_attest = v_end THEN
        v_head_hash := v_chain;
    END IF;
    IF v_root IS DISTINCT FROM v_signed_root OR v_head_hash IS DISTINCT FROM v_signed_head THEN
        RAISE EXCEPTION 'annal: the records of tenant % do not match its signed checkpoint of size %: refusing to purge',
            p_tenant, v_attest USING ERRCODE = 'data_corrupted';
    END IF;

    INSERT INTO annal.purge_boundaries (tenant_id, size, chain_hash, compact_range,
            checkpoint_size, cutoff, period_months, decided_at, purged_at)
        VALUES (p_tenant, v_end, v_chain, v_range, v_attest, v_cutoff, v_period, v_now, now());
    PERFORM set_config('annal.purge_tenant', p_tenant::text, true);
    PERFORM set_config('annal.purge_below', v_end::text, true);
    DELETE FROM annal.events e WHERE e.tenant_id = p_tenant AND e.seq >= v_from AND e.seq < v_end;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    PERFORM set_config('annal.purge_tenant', '', true);
    PERFORM set_config('annal.purge_below', '', true);
    PERFORM set_config('annal.tenant_id', coalesce(v_caller_tenant, ''), true);
    RETURN QUERY SELECT 'purged'::text, v_deleted, v_from, v_end, v_attest,
        v_cutoff, v_period, false, v_more;
END
$$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA annal FROM PUBLIC;

-- The app role reads policies, boundaries and settings, and records
-- policy changes and announcements. It cannot purge.
GRANT SELECT ON annal.deployment_settings TO annal_app;
GRANT SELECT, INSERT ON annal.retention_policies, annal.purge_announcements,
    annal.policy_records TO annal_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON annal.export_leases TO annal_app;
GRANT SELECT ON annal.purge_boundaries TO annal_app;
GRANT EXECUTE ON FUNCTION annal.retention_now() TO annal_app;

-- The retention role can do exactly two things: list tenants and purge.
GRANT EXECUTE ON FUNCTION annal.retention_tenants(), annal.purge_expired(uuid, integer, boolean)
    TO annal_retention;

CREATE OR REPLACE FUNCTION annal.schema_version() RETURNS integer
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT 3 $$;
