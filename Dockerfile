# syntax=docker/dockerfile:1
# The connector manager on the embedded default (SQLite, keys in the /data volume), as an
# unprivileged user. Build: docker build -t connector-manager .
# Run:   docker run -p 8088:8088 -v cm-data:/data connector-manager
# Other backends: pass CM_* settings (docs/configuration.md) and install the extras they need
# by building with --build-arg EXTRAS=mongo,kafka (or all).

# -- stage 1: build the wheels of the package and everything it needs ------------------------------
FROM python:3.11-slim AS build
ARG EXTRAS=""
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY connector_core ./connector_core
COPY adapters ./adapters
COPY entrypoints ./entrypoints
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

# -- stage 2: only the installed wheels, no compiler, no sources --------------------------------
FROM python:3.11-slim
ARG EXTRAS=""
RUN useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin cm \
    && install -d -m 0700 -o cm -g cm /data
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --no-index --find-links /wheels "connector-manager${EXTRAS:+[$EXTRAS]}" \
    && rm -rf /wheels
USER cm
ENV CM_DATA_DIR=/data \
    CM_HOST=0.0.0.0 \
    CM_PORT=8088 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8088
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["connector-manager", "wait", "--url", "http://127.0.0.1:8088", "--timeout", "3"]
ENTRYPOINT ["connector-manager"]
CMD ["serve"]
