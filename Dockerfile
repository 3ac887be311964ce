# The anomaly monitor as a container: CPU-only PyTorch, an unprivileged user, healthy while its loop polls.
#   docker build -t anomaly-monitor .
#   docker run -e MONITOR_KAFKA_BOOTSTRAP_SERVERS=kafka:9092 -v models:/var/lib/monitor/models anomaly-monitor
# deploy/docker-compose.yml runs it with Kafka, Prometheus, Grafana and a demo producer.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
# The CPU wheel from PyTorch's own index: PyPI's default torch wheel brings several GB of CUDA libraries.
ARG TORCH_VERSION=2.15.0
RUN python -m venv /opt/monitor \
 && /opt/monitor/bin/pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
# torch is already satisfied, so this adds only the monitor and its small dependencies.
RUN /opt/monitor/bin/pip install --no-cache-dir ".[confluent]"

FROM python:${PYTHON_VERSION}-slim-bookworm
RUN groupadd --system --gid 10001 monitor \
 && useradd --system --uid 10001 --gid monitor --home-dir /var/lib/monitor --shell /usr/sbin/nologin monitor \
 && mkdir -p /var/lib/monitor/models \
 && chown -R monitor:monitor /var/lib/monitor
COPY --from=build /opt/monitor /opt/monitor
# The documented default config; model.path (models/default) resolves to /var/lib/monitor/models/default.
COPY config.yaml /var/lib/monitor/config.yaml
ENV PATH=/opt/monitor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1
USER 10001:10001
WORKDIR /var/lib/monitor
VOLUME ["/var/lib/monitor/models"]
EXPOSE 9308
# /healthz answers 503 when the run loop has not polled for a minute; urlopen raises on it, so exit 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9308/healthz', timeout=4)"]
ENTRYPOINT ["monitor", "--config", "/var/lib/monitor/config.yaml"]
CMD ["run", "--listen", "0.0.0.0:9308"]
