from tsunagu_servicehost.migrations import run_alembic_env

run_alembic_env()
