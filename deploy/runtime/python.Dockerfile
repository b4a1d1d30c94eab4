# Runtime image for Python events: `import cronium` works with nothing to install.
#   docker build -f deploy/runtime/python.Dockerfile -t cronium/runtime-python agent/runtime
ARG BASE=python:3.12-slim
FROM ${BASE}
COPY python /cronium/lib/python
ENV PYTHONPATH=/cronium/lib/python PYTHONUNBUFFERED=1
USER 65534:65534
WORKDIR /tmp
