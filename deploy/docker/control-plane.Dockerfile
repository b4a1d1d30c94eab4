# The Cronium control plane: API (and console), agent link, scheduler.
# Build from the repository root:
#   docker build -f deploy/docker/control-plane.Dockerfile -t cronium/control-plane .
# Needs a registry for the Node image (NODE_IMAGE); any Node >= 22 image works.
ARG NODE_IMAGE=node:24-slim
FROM ${NODE_IMAGE}
WORKDIR /opt/cronium
ENV NODE_ENV=production
COPY package.json package-lock.json .npmrc ./
COPY proto/package.json proto/
COPY control-plane/package.json control-plane/
COPY agent/package.json agent/
RUN npm ci --omit=dev --workspace control-plane --include-workspace-root=false --no-audit --no-fund && npm cache clean --force
COPY proto proto
COPY control-plane control-plane
RUN useradd --system --uid 10001 --home-dir /var/lib/cronium cronium && mkdir -p /var/lib/cronium && chown cronium /var/lib/cronium
USER 10001
ENV CRONIUM_DATA_DIR=/var/lib/cronium CRONIUM_HOST=0.0.0.0
VOLUME /var/lib/cronium
# 8080 Connect/gRPC-Web/console, 8081 gRPC (h2c), 8443 agent link (mTLS).
EXPOSE 8080 8081 8443
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:8080/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
STOPSIGNAL SIGTERM
# Node flags: control-plane/src/node-flags.ts.
CMD ["node", "--max-semi-space-size=8", "control-plane/src/main.ts"]
