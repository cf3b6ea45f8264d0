-- A second database for the MLflow tracking server, owned by the application role.
CREATE DATABASE mlflow;
