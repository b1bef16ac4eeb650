-- One Postgres for the team deployment: Airflow's metadata (POSTGRES_DB) and MLflow's backend store.
CREATE DATABASE mlflow;
