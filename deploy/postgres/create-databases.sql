-- Databases of the Dagster instance and of the MLflow tracking server, owned by the superuser
-- that the Postgres image (POSTGRES_USER) or scripts/production_stack.py (initdb) creates.
-- The Postgres image runs this file once, when its data volume is empty.
CREATE DATABASE dagster;
CREATE DATABASE mlflow;
