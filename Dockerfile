# One image for every ctibridge connector; choose it with the command, e.g. `run elastic-incidents`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/ctibridge
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN pip install . && useradd --system --uid 10001 ctibridge
USER ctibridge

ENTRYPOINT ["ctibridge"]
CMD ["--help"]
