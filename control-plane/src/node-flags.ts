/**
 * Node flags every launcher of the control plane passes: scripts/start.ts, the
 * test harness, the Docker image and the systemd unit (test/deploy-files.test.ts
 * checks the last two). They cannot be set from inside the process.
 *
 * V8 sizes the young generation from the host's memory: on a 24 GB host the
 * semi-spaces grow to 32 MB each, and a control plane keeps most of that
 * resident (idle: ~25 MB; with 2,000 agents' streams: ~85 MB). Its young
 * objects are messages and rows that die within a request, so 8 MB
 * semi-spaces only mean more, equally short, scavenges.
 */
export const CONTROL_PLANE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8'];
