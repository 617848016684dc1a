# The Dockyard registry image: `docker build -t dockyard .`
FROM python:3.11-slim

WORKDIR /opt/dockyard
COPY pyproject.toml README.md ./
COPY ocispec ocispec
COPY storage_backends storage_backends
COPY registry registry
COPY client client
COPY engine engine
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/dockyard dockyard \
    && mkdir -p /var/lib/dockyard && chown dockyard /var/lib/dockyard

USER dockyard
ENV DOCKYARD_STORAGE__ROOT=/var/lib/dockyard
EXPOSE 5000
ENTRYPOINT ["dockyard-registry", "serve"]
CMD ["--listen", "0.0.0.0:5000"]
