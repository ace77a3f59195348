-- Schema and data for playbooks/sessions-users-set-null.yml: ON DELETE SET NULL to a
-- UNIQUE (non-primary-key) column, deferrable.
CREATE SCHEMA auth;
CREATE TABLE auth.users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE);
CREATE TABLE auth.sessions (
    id bigserial PRIMARY KEY,
    user_email text,
    started_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE auth.sessions ADD CONSTRAINT sessions_user_email_fkey FOREIGN KEY (user_email)
    REFERENCES auth.users (email) ON UPDATE CASCADE ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED;
INSERT INTO auth.users (email) SELECT 'user' || g || '@example.com' FROM generate_series(1, 3000) g;
INSERT INTO auth.sessions (user_email) SELECT CASE WHEN g % 10 = 0 THEN NULL ELSE 'user' || (1 + g % 3000) || '@example.com' END
FROM generate_series(1, 20000) g;
ANALYZE auth.users, auth.sessions;
