-- Schema and data for playbooks/unique-contacts-tenant-external-ref.yml: a UNIQUE
-- NULLS NOT DISTINCT constraint (PostgreSQL 15+) on two columns in a non-public schema.
CREATE SCHEMA crm;
CREATE TABLE crm.contacts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id int NOT NULL,
    external_ref text,
    name text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contacts_tenant_external_ref_key UNIQUE NULLS NOT DISTINCT (tenant_id, external_ref)
);
INSERT INTO crm.contacts (tenant_id, external_ref, name, updated_at)
SELECT 1 + g % 50, CASE WHEN g <= 50 THEN NULL ELSE 'ext-' || g END, 'contact ' || g, now() - g * interval '1 minute'
FROM generate_series(1, 20000) g;
ANALYZE crm.contacts;
