# One image for all four services (ingest, profile, segment, campaign).
# The service and its action are picked by the command, e.g.
#   docker run crm-app python -m services.segment migrate
#   docker run crm-app python -m services.segment serve
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 crm \
 && useradd --system --uid 10001 --gid crm --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin crm

WORKDIR /app

# Third-party dependencies first, read from pyproject.toml alone: this layer is
# rebuilt only when pyproject.toml changes, not on every source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; project = tomllib.load(open('pyproject.toml', 'rb')).get('project', {}); print('\n'.join(project.get('dependencies', [])))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# Then the project itself (packages `shared` and `services`). README* is
# optional: copied only so that a `readme = ...` in pyproject.toml resolves.
COPY pyproject.toml README* ./
COPY shared/ shared/
COPY services/ services/
RUN pip install --no-deps . \
 && pip check \
 && rm -rf build ./*.egg-info \
 && mkdir -p /app/var \
 && chown crm:crm /app/var

USER 10001:10001

EXPOSE 8001 8002 8003 8004

CMD ["python", "-m", "services.ingest", "serve"]
