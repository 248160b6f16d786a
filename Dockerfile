# The image a Docker (or Kubernetes) work pool runs nim-pathway's flow runs in: the code at
# /app, installed editable because the pathways and migrations are read from beside the
# packages, and byte-compiled once (PYTHONDONTWRITEBYTECODE stops each process writing its own
# cache). It holds no secret and no setting: the worker's pool passes them (docs/DEPLOY.md).
#   docker build -t registry.example.org/nim-pathway:$(git rev-parse --short HEAD) .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    NIM_PROJECT_DIR=/app \
    PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
WORKDIR /app
COPY . /app
RUN pip install -e /app \
    && python -m compileall -q nim_pathway models store orchestration notifications reports flows tasks \
    && useradd --system --uid 10001 --home-dir /app nim \
    && install -d -o nim -m 700 /var/lib/nim-pathway  # mount the shared data folder here
USER nim
# The worker runs `prefect flow-run execute <id>` here; prefect.yaml's pull step checks the
# settings first and fails the run naming any that is missing.
CMD ["prefect", "flow-run", "execute"]
