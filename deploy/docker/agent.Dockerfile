# cronium-agent in a container. Jobs run as sibling containers on the host's
# Docker engine, so mount its socket, and mount the data dir at the SAME path
# on the host and in the container: the agent bind-mounts job files and the
# runtime helpers from there, and the host's dockerd resolves those paths.
#   docker build -f deploy/docker/agent.Dockerfile -t cronium/agent .
#   docker run -d -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /var/lib/cronium-agent:/var/lib/cronium-agent cronium/agent \
#     --mode remote-executor --control-plane cronium.example.com:8443 --join-token TOKEN
# Needs a registry for the Node image (NODE_IMAGE); any Node >= 22 image works.
ARG NODE_IMAGE=node:24-slim
FROM ${NODE_IMAGE}
WORKDIR /opt/cronium
ENV NODE_ENV=production
COPY package.json package-lock.json .npmrc ./
COPY proto/package.json proto/
COPY control-plane/package.json control-plane/
COPY agent/package.json agent/
RUN npm ci --omit=dev --workspace agent --include-workspace-root=false --no-audit --no-fund && npm cache clean --force
COPY proto proto
COPY agent agent
ENV CRONIUM_AGENT_DATA_DIR=/var/lib/cronium-agent
VOLUME /var/lib/cronium-agent
STOPSIGNAL SIGTERM
# Node flags: agent/src/node-flags.ts.
ENTRYPOINT ["node", "--max-semi-space-size=8", "agent/src/main.ts"]
