# MLflow tracking + registry server with a PostgreSQL backend store. The store URI in
# docker-compose.yml is postgresql+psycopg:// (psycopg 3, as the application uses), so that
# driver is installed here; psycopg2 is not.
FROM python:3.11-slim
RUN pip install --no-cache-dir "mlflow==3.17.2" "psycopg[binary]>=3.2,<4"
EXPOSE 5000
ENTRYPOINT ["mlflow"]
