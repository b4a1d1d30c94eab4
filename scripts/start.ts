// `npm start`: the control plane (API, console, agent link) and an orchestrator-mode
// agent beside it, each its own process, as a remote agent would be. The agent
// is restarted if it dies; stopping this process stops both.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensureConsoleBuild } from './build-console.ts';
import { CONTROL_PLANE_NODE_FLAGS } from '../control-plane/src/node-flags.ts';
import { AGENT_NODE_FLAGS } from '../agent/src/node-flags.ts';

const root = resolve(import.meta.dirname, '..');
const dataDir = resolve(process.env.CRONIUM_DATA_DIR || join(root, '.cronium'));
const agentId = process.env.CRONIUM_EMBEDDED_AGENT_ID || 'local-orchestrator';
const agentPort = process.env.CRONIUM_AGENT_PORT || '8443';
const embeddedAgent = process.env.CRONIUM_EMBEDDED_AGENT !== '0';
const env = { ...process.env, CRONIUM_DATA_DIR: dataDir };

// The console is served on the API's port; build it first when its sources changed.
await ensureConsoleBuild((line) => console.error(`cronium: ${line}`));

let stopping = false;
const controlPlane = spawn(process.execPath, [...CONTROL_PLANE_NODE_FLAGS, join(root, 'control-plane/src/main.ts')], { env, stdio: 'inherit' });
let agent: ChildProcess | undefined;

controlPlane.on('exit', (code, signal) => {
  if (!stopping) console.error(`cronium: control plane exited (${signal ?? code}); stopping`);
  stopping = true;
  agent?.kill('SIGTERM');
  process.exitCode = code ?? 1;
});

function stop(signal: NodeJS.Signals) {
  if (stopping) return;
  stopping = true;
  agent?.kill(signal);
  controlPlane.kill(signal);
}
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));

async function runAgent() {
  const credentials = join(dataDir, 'agents', agentId);
  while (!existsSync(join(credentials, 'client.crt')) && !stopping) await sleep(200);
  let failures = 0;
  while (!stopping) {
    const startedAt = Date.now();
    agent = spawn(
      process.execPath,
      [...AGENT_NODE_FLAGS, join(root, 'agent/src/main.ts'), '--mode', 'orchestrator', '--control-plane', `localhost:${agentPort}`, '--data-dir', credentials],
      { env, stdio: 'inherit' },
    );
    await new Promise((done) => agent!.once('exit', done));
    if (stopping) break;
    failures = Date.now() - startedAt > 60_000 ? 1 : failures + 1;
    const delay = Math.min(30_000, 1000 * 2 ** (failures - 1));
    console.error(`cronium: agent exited; restarting in ${delay} ms`);
    await sleep(delay);
  }
}

if (embeddedAgent) void runAgent();
