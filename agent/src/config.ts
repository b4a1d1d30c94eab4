import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';

export interface AgentConfig {
  readonly mode: 'orchestrator' | 'remote-executor';
  readonly controlPlanes: readonly string[];
  readonly joinToken?: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly enableSsh: boolean;
  /** Admins may open shells on this host from the console (off by default). */
  readonly enableTerminal: boolean;
  readonly dataDir: string;
  readonly slots: number;
  readonly name: string;
  readonly images: { readonly bash: string; readonly python: string; readonly node: string };
  readonly tls: { readonly ca: string; readonly cert: string; readonly key: string };
  /** Seconds between SIGTERM and SIGKILL when a job is cancelled. */
  readonly stopGraceSeconds: number;
  /** Unacknowledged results kept in `data_dir/spool` before new jobs are refused. */
  readonly spoolMaxBytes: number;
  /** Docker network for jobs that ask for network access (default: Docker's bridge). */
  readonly dockerNetwork: string;
  /** Ceiling of the reconnect backoff; keep it below the control plane's restart grace. */
  readonly reconnectMaxMs: number;
  /** host:port for Prometheus /metrics; off when unset. */
  readonly metricsAddress?: string;
  /** Docker containers kept started ahead per image and limits, for repeat jobs (0: off). */
  readonly warmContainers: number;
  readonly warmIdleSeconds: number;
}

export const USAGE = `Usage: cronium-agent [options]

Runs Cronium jobs pushed by a control plane over mutual-TLS gRPC.

Options (each also settable in the YAML file given by --config, or by environment):
  --config FILE            YAML file with the keys below (snake_case)
  --mode MODE              orchestrator | remote-executor   (CRONIUM_AGENT_MODE, default orchestrator)
  --control-plane ADDRS    host:port[,host:port…]           (CRONIUM_CONTROL_PLANE, default localhost:8443)
  --join-token TOKEN       one-time enrollment token        (CRONIUM_JOIN_TOKEN)
  --labels K=V[,K=V…]      labels for job routing           (CRONIUM_AGENT_LABELS)
  --data-dir DIR           state and credentials            (CRONIUM_AGENT_DATA_DIR, default ./.cronium-agent)
  --slots N                jobs run at once                 (CRONIUM_AGENT_SLOTS, default 4)
  --name NAME              display name                     (CRONIUM_AGENT_NAME, default the host name)
  --ca/--cert/--key FILE   TLS files (default DATA_DIR/ca.crt, client.crt, client.key)
  --enable-ssh             offer the SSH executor           (CRONIUM_AGENT_ENABLE_SSH)
  --enable-terminal        let admins open shells on this host (CRONIUM_AGENT_ENABLE_TERMINAL, default off)
  --metrics-address H:P     serve Prometheus /metrics here  (CRONIUM_AGENT_METRICS_ADDRESS, default off)
  --warm-containers N      containers kept started ahead per image (CRONIUM_AGENT_WARM_CONTAINERS, default 0: off)
  --reconnect-max-seconds N  ceiling of the reconnect backoff (CRONIUM_AGENT_RECONNECT_MAX_SECONDS, default 30)
  --version                print the version
  --help                   print this help

Runtime images: CRONIUM_IMAGE_BASH, CRONIUM_IMAGE_PYTHON, CRONIUM_IMAGE_NODE.
`;

const DEFAULT_IMAGES = { bash: 'bash:5', python: 'python:3.12-slim', node: 'node:22-slim' };

export class ConfigError extends Error {}

function labelsFrom(value: unknown, field: string): Record<string, string> {
  const entries = Array.isArray(value) ? value.map(String) : typeof value === 'string' ? value.split(',') : [];
  const labels: Record<string, string> = {};
  for (const entry of entries.map((e) => e.trim()).filter(Boolean)) {
    const at = entry.indexOf('=');
    const key = at > 0 ? entry.slice(0, at).trim() : '';
    if (!/^[A-Za-z0-9_./-]{1,63}$/.test(key)) throw new ConfigError(`${field}: ${JSON.stringify(entry)} is not key=value`);
    labels[key] = entry.slice(at + 1).trim();
  }
  return labels;
}

export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): AgentConfig | 'help' | 'version' {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      config: { type: 'string' },
      mode: { type: 'string' },
      'control-plane': { type: 'string' },
      'join-token': { type: 'string' },
      labels: { type: 'string' },
      'data-dir': { type: 'string' },
      slots: { type: 'string' },
      name: { type: 'string' },
      ca: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      'enable-ssh': { type: 'boolean' },
      'enable-terminal': { type: 'boolean' },
      'reconnect-max-seconds': { type: 'string' },
      'metrics-address': { type: 'string' },
      'warm-containers': { type: 'string' },
      version: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  if (values.version) return 'version';
  let file: Record<string, unknown> = {};
  if (values.config) {
    try {
      file = (parseYaml(readFileSync(values.config, 'utf8')) as Record<string, unknown>) ?? {};
    } catch (error) {
      throw new ConfigError(`--config ${values.config}: ${(error as Error).message}`);
    }
  }
  const pick = (flag: string | boolean | undefined, envName: string, key: string): unknown => flag ?? env[envName] ?? file[key];
  const mode = String(pick(values.mode, 'CRONIUM_AGENT_MODE', 'mode') ?? 'orchestrator');
  if (mode !== 'orchestrator' && mode !== 'remote-executor') throw new ConfigError(`mode: expected orchestrator or remote-executor, got ${JSON.stringify(mode)}`);
  const planesRaw = pick(values['control-plane'], 'CRONIUM_CONTROL_PLANE', 'control_plane') ?? 'localhost:8443';
  const controlPlanes = (Array.isArray(planesRaw) ? planesRaw.map(String) : String(planesRaw).split(',')).map((s) => s.trim()).filter(Boolean);
  for (const address of controlPlanes) {
    if (!/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(address)) throw new ConfigError(`control_plane: ${JSON.stringify(address)} is not host:port`);
  }
  const slots = Number(pick(values.slots, 'CRONIUM_AGENT_SLOTS', 'slots') ?? 4);
  if (!Number.isInteger(slots) || slots < 1 || slots > 1024) throw new ConfigError(`slots: expected an integer from 1 to 1024`);
  const reconnectMax = Number(pick(values['reconnect-max-seconds'], 'CRONIUM_AGENT_RECONNECT_MAX_SECONDS', 'reconnect_max_seconds') ?? 30);
  if (!Number.isFinite(reconnectMax) || reconnectMax < 1 || reconnectMax > 3600) throw new ConfigError('reconnect_max_seconds: expected a number of seconds from 1 to 3600');
  const metricsAddress = pick(values['metrics-address'], 'CRONIUM_AGENT_METRICS_ADDRESS', 'metrics_address') as string | undefined;
  if (metricsAddress && !/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(String(metricsAddress))) {
    throw new ConfigError(`metrics_address: ${JSON.stringify(metricsAddress)} is not host:port`);
  }
  const warmContainers = Number(pick(values['warm-containers'], 'CRONIUM_AGENT_WARM_CONTAINERS', 'warm_containers') ?? 0);
  if (!Number.isInteger(warmContainers) || warmContainers < 0 || warmContainers > 64) throw new ConfigError('warm_containers: expected an integer from 0 to 64');
  const warmIdleSeconds = Number(pick(undefined, 'CRONIUM_AGENT_WARM_IDLE_SECONDS', 'warm_idle_seconds') ?? 300);
  if (!Number.isFinite(warmIdleSeconds) || warmIdleSeconds < 1) throw new ConfigError('warm_idle_seconds: expected a positive number of seconds');
  const dataDir = resolve(String(pick(values['data-dir'], 'CRONIUM_AGENT_DATA_DIR', 'data_dir') ?? '.cronium-agent'));
  const tlsFile = (file.tls ?? {}) as Record<string, string>;
  const enableSsh = pick(values['enable-ssh'], 'CRONIUM_AGENT_ENABLE_SSH', 'enable_ssh');
  const enableTerminal = pick(values['enable-terminal'], 'CRONIUM_AGENT_ENABLE_TERMINAL', 'enable_terminal');
  return Object.freeze({
    mode,
    controlPlanes,
    joinToken: (pick(values['join-token'], 'CRONIUM_JOIN_TOKEN', 'join_token') as string | undefined) || undefined,
    labels: labelsFrom(pick(values.labels, 'CRONIUM_AGENT_LABELS', 'labels'), 'labels'),
    // SSH targets are the orchestrator's job; a remote executor offers SSH only when asked.
    enableSsh: enableSsh === undefined ? mode === 'orchestrator' : enableSsh === true || enableSsh === 'true' || enableSsh === '1',
    enableTerminal: enableTerminal === true || enableTerminal === 'true' || enableTerminal === '1',
    dataDir,
    slots,
    name: String(pick(values.name, 'CRONIUM_AGENT_NAME', 'name') ?? hostname()),
    images: {
      bash: env.CRONIUM_IMAGE_BASH || String((file.images as Record<string, string> | undefined)?.bash ?? DEFAULT_IMAGES.bash),
      python: env.CRONIUM_IMAGE_PYTHON || String((file.images as Record<string, string> | undefined)?.python ?? DEFAULT_IMAGES.python),
      node: env.CRONIUM_IMAGE_NODE || String((file.images as Record<string, string> | undefined)?.node ?? DEFAULT_IMAGES.node),
    },
    tls: {
      ca: values.ca ?? tlsFile.ca ?? join(dataDir, 'ca.crt'),
      cert: values.cert ?? tlsFile.cert ?? join(dataDir, 'client.crt'),
      key: values.key ?? tlsFile.key ?? join(dataDir, 'client.key'),
    },
    stopGraceSeconds: Number(env.CRONIUM_AGENT_STOP_GRACE_SECONDS ?? 10),
    dockerNetwork: String(pick(undefined, 'CRONIUM_DOCKER_NETWORK', 'docker_network') ?? 'bridge'),
    reconnectMaxMs: reconnectMax * 1000,
    metricsAddress: metricsAddress ? String(metricsAddress) : undefined,
    warmContainers,
    warmIdleSeconds,
    spoolMaxBytes: Number(pick(undefined, 'CRONIUM_AGENT_SPOOL_MAX_MB', 'spool_max_mb') ?? 1024) * 1024 * 1024,
  });
}
