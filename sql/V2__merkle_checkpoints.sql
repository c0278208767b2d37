-- Annal ledger schema, version 2: the Merkle tree's stored strata and the
-- signed checkpoints. See docs/FORMAT.md for what the values mean.

-- Interior nodes of each tenant's RFC 6962 tree at the stored strata: the
-- perfect subtrees at levels 8, 16, 24, ... (level 0, the leaves, is
-- annal.events.leaf_hash). Node (level, idx) covers leaves
-- [idx * 2^level, (idx + 1) * 2^level). Every other node is recomputed from
-- at most 256 nodes of the stratum below, so a root or a proof costs one
-- bounded range read per stratum. Inserted in the transaction that appends
-- the leaf completing the node.
CREATE TABLE annal.tree_nodes (
    tenant_id  uuid NOT NULL REFERENCES annal.tenants (id),
    level      smallint NOT NULL CHECK (level > 0 AND level % 8 = 0 AND level < 64),
    idx        bigint NOT NULL CHECK (idx >= 0),
    hash       bytea NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (tenant_id, level, idx)
);

-- Signed checkpoints (C2SP tlog-checkpoint in a C2SP signed note). A
-- checkpoint is signed only after its consistency with the previous one has
-- been proven, and never replaced.
CREATE TABLE annal.checkpoints (
    tenant_id   uuid NOT NULL REFERENCES annal.tenants (id),
    size        bigint NOT NULL CHECK (size > 0),
    root        bytea NOT NULL CHECK (octet_length(root) = 32),
    chain_head  bytea NOT NULL CHECK (octet_length(chain_head) = 32),
    -- The complete signed note, byte for byte as served.
    note        text NOT NULL,
    signed_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, size)
);

CREATE TRIGGER tree_nodes_append_only BEFORE UPDATE OR DELETE ON annal.tree_nodes
    FOR EACH ROW EXECUTE FUNCTION annal.reject_mutation();
CREATE TRIGGER tree_nodes_no_truncate BEFORE TRUNCATE ON annal.tree_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION annal.reject_mutation();
CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON annal.checkpoints
    FOR EACH ROW EXECUTE FUNCTION annal.reject_mutation();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON annal.checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION annal.reject_mutation();

ALTER TABLE annal.tree_nodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.tree_nodes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON annal.tree_nodes
    USING (tenant_id = annal.current_tenant())
    WITH CHECK (tenant_id = annal.current_tenant());

ALTER TABLE annal.checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE annal.checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON annal.checkpoints
    USING (tenant_id = annal.current_tenant())
    WITH CHECK (tenant_id = annal.current_tenant());

GRANT SELECT, INSERT ON annal.tree_nodes, annal.checkpoints TO annal_app;

CREATE OR REPLACE FUNCTION annal.schema_version() RETURNS integer
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT 2 $$;
