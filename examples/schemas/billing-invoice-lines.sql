-- Schema and data for playbooks/billing-invoice-lines.yml: a two-column MATCH FULL key
-- with quoted, mixed-case and non-ASCII names in a non-public schema.
CREATE SCHEMA "Billing";
CREATE TABLE "Billing"."Invoices" (
    tenant_id int NOT NULL,
    "No" text NOT NULL,
    issued_on date NOT NULL DEFAULT current_date,
    PRIMARY KEY (tenant_id, "No")
);
CREATE TABLE "Billing"."Invoice Lines" (
    "Line Id" bigserial PRIMARY KEY,
    tenant_id int,
    "Invoice No" text,
    amount_cents bigint NOT NULL
);
CREATE INDEX "Invoice Lines by invoice" ON "Billing"."Invoice Lines" (tenant_id, "Invoice No");
ALTER TABLE "Billing"."Invoice Lines"
    ADD CONSTRAINT "Lines→Invoice" FOREIGN KEY (tenant_id, "Invoice No")
    REFERENCES "Billing"."Invoices" (tenant_id, "No") MATCH FULL ON UPDATE CASCADE ON DELETE RESTRICT;
INSERT INTO "Billing"."Invoices" (tenant_id, "No") SELECT t, 'INV-' || n FROM generate_series(1, 20) t, generate_series(1, 200) n;
INSERT INTO "Billing"."Invoice Lines" (tenant_id, "Invoice No", amount_cents)
SELECT 1 + g % 20, 'INV-' || (1 + g % 200), (g * 37) % 100000 FROM generate_series(1, 30000) g;
ANALYZE "Billing"."Invoices", "Billing"."Invoice Lines";
