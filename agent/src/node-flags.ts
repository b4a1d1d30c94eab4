/**
 * Node flags the agent runs with: built into the single executable (its SEA
 * execArgv, scripts/build-agent.ts), and passed by scripts/start.ts, the test
 * harness and the Docker image when it runs from source. As for the control
 * plane (control-plane/src/node-flags.ts): V8 would size the young generation
 * from the host's memory, and an idle agent kept ~15 MB of it resident.
 */
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8'];
