// Real Cronium processes for benchmarks, through the e2e harness (test/harness.ts).
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { freePort, freshDatabase, Stack, type StackOptions } from '../../test/harness.ts';
import { loadOrCreateCa } from '../../control-plane/src/pki/ca.ts';
import type { FleetAgent } from '../lean-agent.ts';

export { Stack, freshDatabase };

export const NATS_URL = 'nats://127.0.0.1:4222';

/** A control plane alone (no orchestrator agent beside it): the lean agents are the only ones. */
export async function startControlPlaneOnly(options: StackOptions): Promise<Stack> {
  const stack = new Stack(options);
  stack.httpPort = await freePort();
  stack.grpcPort = await freePort();
  stack.agentPort = await freePort();
  await stack.startControlPlane();
  return stack;
}

/** Client certificates from the control plane's own CA, one per lean agent (as enrollment would issue). */
export async function issueLeanAgents(stack: Stack, prefix: string, count: number): Promise<{ ca: string; agents: FleetAgent[] }> {
  const pkiDir = join(stack.dataDir, 'pki');
  const ca = await loadOrCreateCa(pkiDir);
  const agents: FleetAgent[] = [];
  for (let i = 0; i < count; i++) {
    const agentId = `${prefix}-${i}`;
    const pair = await ca.issueAgent(agentId);
    agents.push({ agentId, cert: pair.cert, key: pair.key });
  }
  return { ca: readFileSync(join(pkiDir, 'ca.crt'), 'utf8'), agents };
}

/** Waits until the control plane lists the agents as connected. */
export async function waitForAgents(stack: Stack, ids: readonly string[], timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const connected = new Set(((await stack.agents()) ?? []).filter((a: any) => a.status === 'AGENT_STATUS_ONLINE').map((a: any) => a.id));
    if (ids.every((id) => connected.has(id))) return;
    await sleep(50);
  }
  throw new Error(`agents ${ids.join(', ')} did not show as connected`);
}

/** Runs fn with a pg client on url. */
export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
