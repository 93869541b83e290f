# Federation Core in a container: the wheel (`pip install .`, not editable) and the `fc`
# processes of the Procfile — one image, one process per container (compose.yaml).
#
# No container engine runs on the project's machines, so this file is not built by the
# tests: it only does what tests/ops/test_wheel.py (the installed wheel, served and proved)
# and tests/ops/test_procfile.py (the Procfile's processes) prove on the machine itself.
# See docs/operations.md, "Containers".

FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FCORE_VAR_DIR=/var/lib/fcore \
    PORT=8000
RUN useradd --system --create-home --home-dir /var/lib/fcore fcore
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-cache-dir /tmp/dist/*.whl && rm -rf /tmp/dist
USER fcore
WORKDIR /var/lib/fcore
VOLUME ["/var/lib/fcore"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['PORT']}/healthz\", timeout=2)"]
# the web process; the others: `fc worker`, `fc beat`, and `fc migrate --noinput` (release)
CMD ["fc", "web", "--host", "0.0.0.0"]
