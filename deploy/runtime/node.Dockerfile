# Runtime image for Node.js events: `require('cronium')` works with nothing to install.
#   docker build -f deploy/runtime/node.Dockerfile -t cronium/runtime-node agent/runtime
ARG BASE=node:22-slim
FROM ${BASE}
COPY node /cronium/lib/node
ENV NODE_PATH=/cronium/lib/node
USER 65534:65534
WORKDIR /tmp
