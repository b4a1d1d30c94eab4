import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import type { Logger } from 'pino';
import type { ControlPlaneConfig } from './config.ts';
import { migrate, openDatabase, storeNow, type Db } from './store/database.ts';
import type { Bus } from './bus/bus.ts';
import { subjects } from './bus/bus.ts';
import { createMemoryBus } from './bus/memory-bus.ts';
import { loadOrCreateCa, writeAgentCredentials, type CertificateAuthority } from './pki/ca.ts';
import { resealClusterKeys, syncClusterKeys } from './pki/cluster-keys.ts';
import { loadOrCreateSigner } from './enrollment/join-tokens.ts';
import { loadSealer } from './secrets/sealer.ts';
import { resealServers } from './servers/reseal.ts';
import { purgeDeletedServers } from './servers/purge.ts';
import { useVariableSealer } from './variables/sealing.ts';
import { resealVariables } from './variables/store.ts';
import { resealChannels } from './notifications/channels.ts';
import { NotificationSender } from './notifications/sender.ts';
import { Scheduler } from './scheduler/scheduler.ts';
import { advisoryLeadership, soleLeader } from './scheduler/leader.ts';
import { LinkServer } from './link/server.ts';
import { ReconnectGrace } from './link/reconnect-grace.ts';
import { Dispatcher } from './dispatcher.ts';
import { expireLeases, failUnscheduled, requeueExpiredOffers, settleOpenRuns } from './queue/transitions.ts';
import { executorFor } from './queue/claim.ts';
import { queueActivity } from './queue/activity.ts';
import { pickAgent, selectorMatches } from './domain/selector.ts';
import { kickDispatch, publishJob } from './job-events.ts';
import { flushWalSoFar } from './store/wal.ts';
import { ensureAdminToken } from './auth/tokens.ts';
import { ensureFirstAdmin } from './auth/users.ts';
import { loadSessionKey } from './auth/session-key.ts';
import { FailureBackoff, RateLimiter } from './auth/rate-limit.ts';
import { purgeExpiredKeys } from './api/idempotency.ts';
import { startApiServer, type ApiServer } from './api/server.ts';
import { announceCancel } from './api/cancel.ts';
import type { JobRow } from './store/schema.ts';
import { sql } from 'kysely';
import { AgentStatus } from '@cronium/proto/api/v1/agent';
import { agentStatus } from './api/agent-service.ts';
import { Metrics } from './metrics.ts';
import { recordQueued } from './tracing.ts';
import { readyAt } from './domain/run-status.ts';
import { setFanOutWindow } from './workflows/engine.ts';
import { resealWebhooks } from './workflows/reseal-webhooks.ts';
import { TerminalChannel } from './link/terminal-channel.ts';
import { TerminalGateway } from './api/terminal-gateway.ts';
import { consoleSessionKey } from './api/terminal-auth.ts';
import { terminalLimitsFromEnv } from './terminal/limits.ts';

export interface ControlPlane {
  readonly db: Db;
  readonly bus: Bus;
  readonly api: ApiServer;
  readonly link: LinkServer;
  /** Set on the first start when no CRONIUM_ADMIN_TOKEN was given. */
  readonly generatedAdminToken?: string;
  /** Set on the first start when no CRONIUM_ADMIN_PASSWORD was given. */
  readonly generatedAdminPassword?: string;
  stop(): Promise<void>;
}

const REAP_INTERVAL_MS = 1_000;

/** `perMinute` failed sign-ins at once, then waits from 60/perMinute seconds, doubling, up to 15 minutes. */
function signInBackoff(perMinute: number): FailureBackoff {
  return new FailureBackoff({ free: perMinute, baseMs: 60_000 / perMinute, maxMs: 15 * 60_000 });
}

/** By signature, not by name: two CAs made on one host carry the same subject. */
function signedBy(cert: X509Certificate, ca: CertificateAuthority): boolean {
  const caCert = new X509Certificate(ca.certPem);
  return cert.checkIssued(caCert) && cert.verify(caCert.publicKey);
}

/** Issues (or renews, when within a week of expiry) the embedded orchestrator agent's client certificate. */
async function ensureEmbeddedAgentCredentials(ca: CertificateAuthority, dir: string, agentId: string): Promise<void> {
  const certPath = join(dir, 'client.crt');
  if (existsSync(certPath)) {
    const cert = new X509Certificate(readFileSync(certPath));
    const fresh = Date.parse(cert.validTo) - Date.now() > 7 * 86_400_000;
    if (fresh && signedBy(cert, ca) && cert.subject === `CN=${agentId}`) return;
  }
  writeAgentCredentials(dir, await ca.issueAgent(agentId), ca.certPem);
}

async function loadServerCredentials(config: ControlPlaneConfig, ca: CertificateAuthority, dir: string) {
  const names = ['localhost', '127.0.0.1', '::1', hostname(), ...config.agentHostnames];
  const certPath = join(dir, 'server.crt');
  const keyPath = join(dir, 'server.key');
  const wanted = JSON.stringify(names);
  const namesPath = join(dir, 'server.names');
  const current = () => {
    if (!existsSync(certPath) || !existsSync(keyPath) || !existsSync(namesPath) || readFileSync(namesPath, 'utf8') !== wanted) return false;
    const cert = new X509Certificate(readFileSync(certPath));
    return Date.parse(cert.validTo) - Date.now() > 7 * 86_400_000 && signedBy(cert, ca);
  };
  // Issued again when the names change, when it nears expiry, or when the cluster's CA is not the one that signed it.
  if (!current()) {
    const pair = await ca.issueServer(names);
    writeFileSync(keyPath, pair.key, { mode: 0o600 });
    writeFileSync(certPath, pair.cert);
    writeFileSync(namesPath, wanted);
  }
  return { ca: ca.certPem, cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8') };
}

export async function startControlPlane(config: ControlPlaneConfig, logger: Logger): Promise<ControlPlane> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const { db, kind, poolStats } = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir });
  // On Postgres the agent link and dispatcher get their own pool, so API traffic never queues ahead of agents' results.
  const linkStore = config.databaseUrl ? await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir }) : undefined;
  const linkDb = linkStore?.db ?? db;
  // The dispatcher's two statements (the queue head, the claim) read by index order and by id. Planner statistics
  // older than a sudden backlog made bitmap scans of the whole queue look cheap: 50-70 ms a pass instead of ~20.
  const dispatchStore = config.databaseUrl
    ? await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, poolSize: 2, sessionSettings: '-c enable_bitmapscan=off' })
    : undefined;
  await migrate(db);
  setFanOutWindow(config.leaseTtlMs);
  // The NATS client is loaded only when one is configured.
  const bus = config.natsUrl
    ? await (await import('./bus/nats-bus.ts')).createNatsBus(config.natsUrl, `cronium-control-plane-${hostname()}`)
    : createMemoryBus();
  const generatedAdminPassword = await ensureFirstAdmin(db, { email: config.adminEmail, password: config.adminPassword });
  const generatedAdminToken = await ensureAdminToken(db, config.adminToken);

  const sealer = loadSealer({ current: config.encryptionKey, old: config.oldEncryptionKeys }, config.dataDir);
  const pkiDir = join(config.dataDir, 'pki');
  mkdirSync(pkiDir, { recursive: true, mode: 0o700 });
  await syncClusterKeys(db, sealer, pkiDir, async () => {
    await loadOrCreateCa(pkiDir);
    await loadOrCreateSigner(pkiDir);
  });
  const ca = await loadOrCreateCa(pkiDir);
  await ensureEmbeddedAgentCredentials(ca, join(config.dataDir, 'agents', config.embeddedAgentId), config.embeddedAgentId);
  const joinTokens = await loadOrCreateSigner(pkiDir);
  const resealed = (await resealServers(db, sealer)) + (await resealClusterKeys(db, sealer));
  if (resealed > 0) logger.info({ rows: resealed }, 'secrets sealed again with the current encryption key');
  const resealedHooks = await resealWebhooks(db, sealer);
  if (resealedHooks > 0) logger.info({ webhooks: resealedHooks }, 'webhook secrets sealed again with the current encryption key');
  useVariableSealer(sealer);
  const resealedSecrets = { variables: await resealVariables(db, sealer), channels: await resealChannels(db, sealer) };
  if (resealedSecrets.variables + resealedSecrets.channels > 0) logger.info(resealedSecrets, 'secret variables and channel credentials sealed again with the current encryption key');
  const log = (message: string, fields?: Record<string, unknown>) => logger.info(fields ?? {}, message);

  let dispatcher: Dispatcher | undefined;
  const terminalChannel = new TerminalChannel();
  const sessionKey = await loadSessionKey(db, sealer);
  const apiLimiter = config.apiRatePerSecond > 0 ? new RateLimiter({ capacity: config.apiBurst, refillPerSecond: config.apiRatePerSecond }) : undefined;
  const terminals = new TerminalGateway({
    db,
    sealer,
    channel: terminalChannel,
    limits: terminalLimitsFromEnv(),
    consoleKey: consoleSessionKey(config.dataDir),
    auth: { db, sessionKey, apiLimiter },
    log,
  });
  // Read at scrape time only, so the link can be made after.
  let link: LinkServer | undefined;
  const metrics = new Metrics({
    db,
    streams: () => link?.sessions.size ?? 0,
    async agentsByStatus() {
      const counts: Record<string, number> = { online: 0, draining: 0, offline: 0, revoked: 0 };
      for (const row of await db.selectFrom('agents').selectAll().execute()) {
        const name = AgentStatus[agentStatus(row, config.leaseTtlMs)]!.toLowerCase();
        counts[name] = (counts[name] ?? 0) + 1;
      }
      return counts;
    },
    bus: () => ({ kind: bus.kind, connected: bus.connected() }),
    pools: () => ({ ...(poolStats ? { api: poolStats() } : {}), ...(linkStore?.poolStats ? { link: linkStore.poolStats() } : {}),
      ...(dispatchStore?.poolStats ? { dispatch: dispatchStore.poolStats() } : {}) }),
  });
  // Offers and leases are judged only once agents had time to reconnect, after this start and after any loss of the store.
  const grace = new ReconnectGrace(Math.max(config.leaseTtlMs, config.restartGraceMs));
  link = new LinkServer({
    db: linkDb,
    bus,
    log,
    onStoreFailed: () => grace.storeFailed(),
    port: config.agentPort,
    host: config.host,
    tls: await loadServerCredentials(config, ca, pkiDir),
    ca,
    joinTokens,
    agentCertDays: config.agentCertHours / 24,
    timings: {
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      leaseTtlMs: config.leaseTtlMs,
      offerTimeoutMs: config.offerTimeoutMs,
      maxLogChunkBytes: 256 * 1024,
      jobLogLimitBytes: config.jobLogLimitBytes,
    },
    onSessionsChanged: () => dispatcher?.kick(),
    metrics,
    terminals: terminalChannel,
  });
  dispatcher = new Dispatcher({
    db: dispatchStore?.db ?? linkDb,
    agents: () => link.sessions.values(),
    offerTimeoutMs: config.offerTimeoutMs,
    sealer,
    onError: (error) => logger.error({ error: String(error) }, 'dispatch pass failed'),
    onOffered: (job) => {
      metrics.observeOffered(job);
      recordQueued(job.spec.traceParent, { id: job.id, attempt: job.attempt, agentId: job.agent_id ?? '', readyAt: readyAt(job) });
    },
  });
  const stopDispatchKicks = bus.subscribe(subjects.dispatch, () => dispatcher.kick());
  await link.start();

  const waitingReason = async (job: JobRow): Promise<string> => {
    if (new Date(job.run_after).getTime() > Date.now()) return `waiting to retry at ${new Date(job.run_after).toISOString()}`;
    const agents = await db
      .selectFrom('agents')
      .select(['id', 'labels', 'executors'])
      .where('connected', '=', true)
      .where('revoked_at', 'is', null)
      .execute();
    const executor = executorFor(job.spec.kind, job.server_id);
    const able = agents.filter(
      (agent) => (!job.pinned_agent_id || agent.id === job.pinned_agent_id) && agent.executors.includes(executor) && selectorMatches(job.selector, agent.labels),
    );
    if (able.length === 0) return `no connected agent has the ${executor} executor and matches the job's selector`;
    const free = pickAgent(job.selector, executor, [...link!.sessions.values()]);
    return free ? 'about to be offered' : 'all matching agents are busy';
  };
  const api = await startApiServer(
    { db, bus, waitingReason, enrollment: { signer: joinTokens, caFingerprint: ca.fingerprint }, leaseTtlMs: config.leaseTtlMs,
      sealer,
      access: {
        sessionKey,
        sessionHours: config.sessionHours,
        signInByEmail: signInBackoff(config.signInAttemptsPerMinute),
        signInByAddress: signInBackoff(config.signInAttemptsPerMinute),
        apiLimiter,
      },
      terminals,
      metrics: async () => ({ contentType: metrics.registry.contentType, body: await metrics.registry.metrics() }),
      ready: async () => {
        await sql`select 1`.execute(db);
      },
    },
    { host: config.host, httpPort: config.httpPort, grpcPort: config.grpcPort });

  grace.begin(await storeNow(db));
  const notifications = new NotificationSender({ db, sealer, log: (message, fields) => logger.warn(fields ?? {}, message) });
  notifications.start();
  let reaping = false;
  // Housekeeping, each second: the dispatch poll (jobs whose kick was lost, or whose retry time came), the
  // notification outbox's wake-up (deliveries written by any replica's run ends) and the reaper's sweeps.
  // An idle cluster costs one small statement here (queueActivity), not one per sweep.
  const reaper = setInterval(async () => {
    if (reaping) return;
    reaping = true;
    try {
      for (const session of link.sessions.values()) session.expireOffers();
      const activity = await queueActivity(db);
      if (grace.storeLost) grace.begin(await storeNow(db));
      if (activity.queued) dispatcher.kick();
      if (activity.deliveries) notifications.wake();
      const requeuable = grace.requeuableOffers;
      if (activity.held && requeuable && (await requeueExpiredOffers(db, requeuable.madeSince)) > 0) dispatcher.kick();
      if (activity.openRuns) for (const run of await settleOpenRuns(db)) logger.warn({ runId: run.id, status: run.status }, 'run settled by the reaper');
      if (activity.queued) {
        for (const finished of await failUnscheduled(db, waitingReason)) {
          publishJob(bus, finished.job);
          logger.warn({ jobId: finished.job.id, error: finished.job.error }, 'job not scheduled in time');
        }
      }
      if (activity.held && grace.leasesJudged) {
        const expired = await expireLeases(db);
        for (const finished of expired) {
          publishJob(bus, finished.job);
          logger.warn({ jobId: finished.job.id, agentId: finished.job.agent_id, retried: finished.retried }, 'lease expired');
        }
        if (expired.length > 0) dispatcher.kick();
      }
    } catch (error) {
      grace.storeFailed();
      logger.error({ error: String(error) }, 'reaper pass failed');
    } finally {
      reaping = false;
    }
  }, REAP_INTERVAL_MS);
  const scheduler = new Scheduler({
    db,
    leadership: config.databaseUrl ? advisoryLeadership(config.databaseUrl, (error) => logger.warn({ error: String(error) }, 'scheduler lock connection failed')) : soleLeader,
    leaseTtlMs: config.leaseTtlMs,
    onRuns: () => kickDispatch(bus),
    onCancelled: (cancelled) => cancelled.forEach((result) => announceCancel(bus, result)),
    log,
    ...(kind === 'postgres' ? { prepareAhead: { flushWal: () => flushWalSoFar(db) } } : {}),
  });
  scheduler.start();
  const stopScheduleWakes = bus.subscribe(subjects.schedules, () => scheduler.wake());
  const purge = setInterval(() => {
    purgeDeletedServers(db).then(
      (count) => count > 0 && logger.info({ servers: count }, 'purged servers deleted more than 30 days ago'),
      (error: unknown) => logger.error({ error: String(error) }, 'server purge failed'),
    );
  }, 3_600_000);
  purge.unref();
  const purgeKeys = setInterval(() => {
    purgeExpiredKeys(db).catch((error: unknown) => logger.error({ error: String(error) }, 'idempotency key purge failed'));
  }, 3_600_000);
  purgeKeys.unref();

  logger.info(
    { store: kind, bus: config.natsUrl ? 'nats' : 'memory', http: api.httpPort, grpc: api.grpcPort, agentLink: link.port, dataDir: config.dataDir },
    'control plane started',
  );
  return {
    db,
    bus,
    api,
    link,
    generatedAdminToken,
    generatedAdminPassword,
    // Stops taking work first (schedules go to another replica, no new offers), then ends the agents' streams
    // so they move to another replica with their running jobs, then closes the API.
    async stop() {
      clearInterval(reaper);
      clearInterval(purge);
      clearInterval(purgeKeys);
      stopScheduleWakes();
      await scheduler.stop();
      await notifications.stop();
      stopDispatchKicks();
      await dispatcher.stop();
      terminals.close('the control plane is restarting; open the terminal again');
      await link.stop();
      await api.close();
      await bus.close();
      if (linkDb !== db) await linkDb.destroy();
      await dispatchStore?.db.destroy();
      await db.destroy();
    },
  };
}
