# Runtime image for Bash events, with Cronium's helpers built in (the agent
# also mounts them at /cronium/lib, so any image with bash works).
#   docker build -f deploy/runtime/bash.Dockerfile -t cronium/runtime-bash agent/runtime
ARG BASE=bash:5
FROM ${BASE}
COPY bash /cronium/lib/bash
ENV BASH_ENV=/cronium/lib/bash/cronium.sh
USER 65534:65534
WORKDIR /tmp
