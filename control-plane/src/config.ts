import { resolve } from 'node:path';

export interface ControlPlaneConfig {
  readonly dataDir: string;
  readonly databaseUrl?: string;
  readonly natsUrl?: string;
  readonly host: string;
  readonly httpPort: number;
  readonly grpcPort: number;
  readonly agentPort: number;
  readonly adminToken?: string;
  /** The first admin's sign-in; a password is generated (and printed once) when unset. */
  readonly adminEmail?: string;
  readonly adminPassword?: string;
  readonly sessionHours: number;
  /** Per API token or session: sustained requests per second (0: no limit) and burst. */
  readonly apiRatePerSecond: number;
  readonly apiBurst: number;
  /** Failed sign-ins per minute, per email and per address. */
  readonly signInAttemptsPerMinute: number;
  /** Extra names agents dial the control plane by (server certificate SANs). */
  readonly agentHostnames: readonly string[];
  readonly heartbeatIntervalMs: number;
  readonly leaseTtlMs: number;
  readonly offerTimeoutMs: number;
  readonly jobLogLimitBytes: number;
  /** After a start, leases are not judged for this long, so agents can reconnect (longer than their backoff). */
  readonly restartGraceMs: number;
  /** Lifetime of enrolled agents' certificates; agents renew after two thirds of it. */
  readonly agentCertHours: number;
  /** Master key for secrets at rest (base64, 32 bytes); generated into the data dir when unset. */
  readonly encryptionKey?: string;
  /** Keys that still decrypt during a rotation. */
  readonly oldEncryptionKeys: readonly string[];
  /** Agent id whose credentials are written to `<dataDir>/agents/<id>` for the embedded orchestrator. */
  readonly embeddedAgentId: string;
}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name}: expected a non-negative integer, got ${JSON.stringify(raw)}`);
  return value;
}

export function positive(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name}: expected a positive number, got ${JSON.stringify(raw)}`);
  return value;
}

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): ControlPlaneConfig {
  return Object.freeze({
    dataDir: resolve(env.CRONIUM_DATA_DIR || '.cronium'),
    databaseUrl: env.CRONIUM_DATABASE_URL || undefined,
    natsUrl: env.CRONIUM_NATS_URL || undefined,
    host: env.CRONIUM_HOST || '127.0.0.1',
    httpPort: int(env, 'CRONIUM_HTTP_PORT', 8080),
    grpcPort: int(env, 'CRONIUM_GRPC_PORT', 8081),
    agentPort: int(env, 'CRONIUM_AGENT_PORT', 8443),
    adminToken: env.CRONIUM_ADMIN_TOKEN || undefined,
    adminEmail: env.CRONIUM_ADMIN_EMAIL || undefined,
    adminPassword: env.CRONIUM_ADMIN_PASSWORD || undefined,
    sessionHours: positive(env, 'CRONIUM_SESSION_HOURS', 12),
    apiRatePerSecond: int(env, 'CRONIUM_API_RATE', 50),
    apiBurst: positive(env, 'CRONIUM_API_BURST', 100),
    signInAttemptsPerMinute: positive(env, 'CRONIUM_SIGNIN_ATTEMPTS_PER_MINUTE', 5),
    agentHostnames: (env.CRONIUM_AGENT_HOSTNAMES ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    heartbeatIntervalMs: int(env, 'CRONIUM_HEARTBEAT_MS', 5_000),
    leaseTtlMs: int(env, 'CRONIUM_LEASE_TTL_MS', 30_000),
    offerTimeoutMs: int(env, 'CRONIUM_OFFER_TIMEOUT_MS', 5_000),
    jobLogLimitBytes: int(env, 'CRONIUM_JOB_LOG_LIMIT_BYTES', 10 * 1024 * 1024),
    restartGraceMs: int(env, 'CRONIUM_RESTART_GRACE_MS', 60_000),
    agentCertHours: positive(env, 'CRONIUM_AGENT_CERT_HOURS', 30 * 24),
    encryptionKey: env.CRONIUM_ENCRYPTION_KEY || undefined,
    oldEncryptionKeys: (env.CRONIUM_ENCRYPTION_OLD_KEYS ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    embeddedAgentId: env.CRONIUM_EMBEDDED_AGENT_ID || 'local-orchestrator',
  });
}
