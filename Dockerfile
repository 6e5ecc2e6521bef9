# syntax=docker/dockerfile:1
# The gateway's container image (docs/deployment.md#containers-and-kubernetes). Two stages: the build stage installs
# the hash-locked runtime requirements into a virtualenv and builds the gateway's wheel; the runtime stage holds that
# virtualenv, a non-root user and nothing else from the build. No secret is in any layer: the gateway reads its
# secrets from Vault at boot, through login material mounted at run time (deploy/kubernetes/deployment.yaml).
#
# Base image: the official Python image, pinned by tag, the same in both stages (the virtualenv's interpreter is the
# base image's). Its digest was not verified when this file was written, so none is written here: after checking the
# digest of the tag you build from (`docker buildx imagetools inspect python:3.11-slim-bookworm`), pin both FROM
# lines to it (python:3.11-slim-bookworm@sha256:...). Python 3.11 is the interpreter the locks are compiled for
# (`make lock`, --python-version 3.11).
FROM python:3.11-slim-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements/ requirements/
# The build tools, in their own virtualenv, hash-checked by pip: uv (requirements/bootstrap.txt) and setuptools, the
# build backend (requirements/image-build.txt).
RUN python -m venv /opt/tools \
    && /opt/tools/bin/pip install --require-hashes --no-deps \
        -r requirements/bootstrap.txt -r requirements/image-build.txt
# Every runtime dependency from the hash-locked lock, as `make install` does for development; bytecode compiled now,
# because the root filesystem is read-only at run time and PYTHONDONTWRITEBYTECODE is set there. The virtualenv has
# no pip: nothing installs anything at run time.
RUN python -m venv --without-pip /opt/gateway \
    && /opt/tools/bin/uv pip install --no-cache --python /opt/gateway/bin/python --compile-bytecode \
        --require-hashes --no-deps -r requirements/runtime.txt
COPY pyproject.toml ./
COPY gateway/ gateway/
# The gateway itself, without dependencies, built with the locked setuptools (no build isolation, which would fetch
# an unpinned one).
RUN /opt/tools/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && /opt/tools/bin/uv pip install --no-cache --python /opt/gateway/bin/python --compile-bytecode --no-deps \
        /tmp/wheels/llm_gateway-*.whl

FROM python:3.11-slim-bookworm AS runtime
# A fixed numeric user and group, so Kubernetes can check runAsNonRoot and give it the projected token's ownership.
# The base image's own installer goes too, and ensurepip with the pip wheel it bundles (`python -m ensurepip --user`
# would otherwise put pip back under the writable HOME): nothing installs anything at run time.
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin gateway \
    && rm -rf "$(python -c 'import ensurepip, os; print(os.path.dirname(ensurepip.__file__))')" \
    && python -m pip uninstall --yes --no-input pip setuptools wheel
COPY --from=build /opt/gateway /opt/gateway
# The working directory holds nothing and is not writable: the manifests use Postgres, not the default SQLite under
# var/. TMPDIR and HOME point at /tmp, the one writable folder (an emptyDir volume in Kubernetes): Python's tempfile
# probes it at boot, and any library cache lands there instead of failing on the read-only root.
WORKDIR /srv/gateway
ENV PATH=/opt/gateway/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8090 \
    GATEWAY_POLICY_FILE=/etc/gateway/policy/gateway.yaml
USER 10001:10001
EXPOSE 8090
# No HEALTHCHECK: Kubernetes ignores it and probes /healthz and /readyz itself (deploy/kubernetes/deployment.yaml),
# and the image has no HTTP client but a Python interpreter, whose start every interval would cost more than the check.
# checkov:skip=CKV_DOCKER_2:Kubernetes liveness and readiness probes check /healthz and /readyz instead
ENTRYPOINT ["gateway"]
CMD ["serve"]
