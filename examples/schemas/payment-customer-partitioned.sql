-- Schema and data for playbooks/payment-customer-partitioned.yml: a payment table
-- partitioned by month, referencing customer.
CREATE TABLE customer (customer_id int PRIMARY KEY, email text NOT NULL);
CREATE TABLE payment (
    payment_id bigint NOT NULL,
    customer_id int NOT NULL,
    amount numeric(10, 2) NOT NULL,
    paid_at timestamptz NOT NULL,
    PRIMARY KEY (payment_id, paid_at)
) PARTITION BY RANGE (paid_at);
CREATE TABLE payment_2026_09 PARTITION OF payment FOR VALUES FROM ('2026-09-01') TO ('2026-10-01');
CREATE TABLE payment_2026_10 PARTITION OF payment FOR VALUES FROM ('2026-10-01') TO ('2026-11-01');
CREATE TABLE payment_2026_11 PARTITION OF payment FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
CREATE INDEX ON payment (customer_id);
ALTER TABLE payment ADD CONSTRAINT payment_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customer (customer_id);
INSERT INTO customer SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 5000) g;
INSERT INTO payment SELECT g, 1 + (g * 13) % 5000, (g % 9000) / 100.0, timestamptz '2026-09-01' + (g % 91) * interval '1 day'
FROM generate_series(1, 60000) g;
ANALYZE customer, payment;
