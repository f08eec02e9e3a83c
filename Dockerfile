# One image for both sides of optipick-webhooks: the web side (the default command, `python main.py web`:
# waitress as http_server.py sets it up) and the worker (`python main.py worker`). See docker-compose.yml and README "Scaling out: PostgreSQL and Redis".
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=5000 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

# .dockerignore keeps .env (secrets), .venv, instance/ and results/ out of the image.
COPY . .
RUN useradd --system --uid 10001 --home-dir /app optipick \
    && mkdir -p /app/instance /app/results \
    && chown optipick:optipick /app/instance /app/results
USER optipick

EXPOSE 5000
# SIGTERM is a graceful stop for both commands (the web side answers what it has received, 10 s at
# most); give the container a stop grace period longer than SHUTDOWN_GRACE_SECONDS (30 s by default),
# e.g. docker compose's stop_grace_period: 40s.
STOPSIGNAL SIGTERM
CMD ["python", "main.py", "web"]
