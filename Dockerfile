# callstore: one container next to PostgreSQL (set DATABASE_URL), or alone with
# its embedded PostgreSQL under /data (fine for a small center and for trials).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY store store
COPY receiver receiver
COPY sync sync
COPY reports reports
COPY callstore callstore
COPY console console
COPY migrations migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --create-home --uid 10001 callstore \
    && mkdir -p /data && chown callstore:callstore /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER callstore
WORKDIR /home/callstore
ENV CALLSTORE_DATA_DIR=/data \
    CALLSTORE_HOST=0.0.0.0 \
    CALLSTORE_PORT=8080 \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
# SIGTERM drains in-flight requests and the batch writer before exiting.
STOPSIGNAL SIGTERM
ENTRYPOINT ["callstore"]
CMD ["serve"]
