-- The seed case (GitLab's change request removing fk_rails_f300456b63), with realistic data:
-- chat_names (parents), ci_pipelines, ci_pipeline_chat_data (children) and
-- fk_rails_f300456b63 ... ON DELETE CASCADE.
CREATE TABLE chat_names (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL,
    integration_id bigint NOT NULL,
    team_id text NOT NULL,
    chat_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE ci_pipelines (
    id bigserial PRIMARY KEY,
    project_id bigint NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE ci_pipeline_chat_data (
    id bigserial PRIMARY KEY,
    pipeline_id bigint NOT NULL REFERENCES ci_pipelines (id) ON DELETE CASCADE,
    chat_name_id bigint NOT NULL,
    response_url text NOT NULL
);
CREATE INDEX index_ci_pipeline_chat_data_on_chat_name_id ON ci_pipeline_chat_data (chat_name_id);
ALTER TABLE ci_pipeline_chat_data
    ADD CONSTRAINT fk_rails_f300456b63 FOREIGN KEY (chat_name_id) REFERENCES chat_names (id) ON DELETE CASCADE;

INSERT INTO chat_names (user_id, integration_id, team_id, chat_id)
SELECT 1 + g % 500, 1 + g % 7, 'T' || (g % 40), 'U' || g FROM generate_series(1, 2000) g;
INSERT INTO ci_pipelines (project_id, status)
SELECT 1 + g % 300, (ARRAY['success', 'failed', 'running'])[1 + g % 3] FROM generate_series(1, 20000) g;
INSERT INTO ci_pipeline_chat_data (pipeline_id, chat_name_id, response_url)
SELECT g, 1 + (g * 7) % 2000, 'https://chat.example.com/hooks/' || md5(g::text) FROM generate_series(1, 20000) g;
ANALYZE chat_names, ci_pipelines, ci_pipeline_chat_data;
