#!/usr/bin/env bash
# fkctl on a working example: the seed case of the product (remove
# fk_rails_f300456b63, ci_pipeline_chat_data.chat_name_id -> chat_names.id)
# in two local databases, fkctl_try_staging and fkctl_try_production.
#
# Needs a local PostgreSQL you can reach as a superuser (default
# "host=localhost user=postgres"; set FKCTL_TRY_DSN to change it) and psql.
# Re-running starts fresh. Remove with:
#   psql "host=localhost user=postgres dbname=postgres" -c 'DROP DATABASE fkctl_try_staging' -c 'DROP DATABASE fkctl_try_production'
set -euo pipefail
cd "$(dirname "$0")/.."

base="${FKCTL_TRY_DSN:-host=localhost user=postgres}"
export PGOPTIONS="--client-min-messages=warning"
if ! psql "$base dbname=postgres" -qAtc 'SELECT 1' >/dev/null 2>&1; then
    echo "No PostgreSQL answers at '$base'." >&2
    echo "Start one (Debian: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start) or set FKCTL_TRY_DSN." >&2
    exit 3
fi

cargo build --release --quiet
fkctl=target/release/fkctl
playbook=playbooks/remove-fk-ci-pipeline-chat-data-chat-names.yml

for env in staging production; do
    db="fkctl_try_$env"
    psql "$base dbname=postgres" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
    psql "$base dbname=$db" -q -f examples/schemas/remove-fk-ci-pipeline-chat-data-chat-names.sql >/dev/null
done
export FKCTL_STAGING_DSN="$base dbname=fkctl_try_staging"
export FKCTL_PRODUCTION_DSN="$base dbname=fkctl_try_production"

show() {
    printf '\n\033[1m$ %s\033[0m\n' "$*"
    "$@" || printf '(exit code %s)\n' "$?"
}

show "$fkctl" lint playbooks/*.yml
show "$fkctl" inspect "$playbook" --env staging
show "$fkctl" orphans "$playbook" --env staging
show "$fkctl" plan "$playbook" --env staging
show "$fkctl" drop "$playbook" --dry-run
# --yes because this script has no one to answer; a protected environment must be named.
show "$fkctl" drop "$playbook" --env staging --yes
show "$fkctl" drop "$playbook" --env production --yes
show "$fkctl" status "$playbook"

printf '\n\033[1m# Meanwhile in production, with the FK gone, the application deletes chat_names rows.\033[0m\n'
psql "$FKCTL_PRODUCTION_DSN" -qc "DELETE FROM chat_names WHERE id % 50 = 0" >/dev/null

show "$fkctl" orphans "$playbook" --env production --sample 3
show "$fkctl" plan "$playbook" --env production --rollback
printf '\nThe databases fkctl_try_staging and fkctl_try_production are left for you to explore:\n  psql "%s"\n' "$FKCTL_PRODUCTION_DSN"
printf 'Run the interactive drop yourself on fresh copies: bash examples/try-it.sh, then\n  FKCTL_STAGING_DSN=... FKCTL_PRODUCTION_DSN=... target/release/fkctl drop %s\n' "$playbook"
