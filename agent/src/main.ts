import { existsSync, readFileSync, mkdirSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import Docker from 'dockerode';
import { pino } from 'pino';
import { ConfigError, loadConfig, USAGE } from './config.ts';
import { Runner } from './runner.ts';
import { Connection } from './link/connection.ts';
import { DockerExecutor, removeLeftoverContainers } from './executors/docker.ts';
import { HttpExecutor } from './executors/http.ts';
import { SshExecutor } from './executors/ssh.ts';
import { runtimeDir } from './runtime-dir.ts';
import { enroll, EnrollmentError, renew, renewalTime } from './enrollment.ts';
import { Spool } from './spool.ts';
import { startMetricsServer } from './metrics-server.ts';
import { startTracing } from './tracing.ts';
import { Terminals } from './terminal/terminals.ts';

const VERSION = '0.1.0';
const logger = pino({ name: 'cronium-agent' }, pino.destination(2));
const log = (message: string, fields?: Record<string, unknown>) => logger.info(fields ?? {}, message);

function readTls(tls: { ca: string; cert: string; key: string }) {
  try {
    return { ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key) };
  } catch (error) {
    throw new ConfigError(`TLS files: ${(error as Error).message} (enroll with a join token, or give --ca, --cert and --key)`);
  }
}

async function main(): Promise<number> {
  const config = loadConfig(process.argv.slice(2));
  if (config === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (config === 'version') {
    process.stdout.write(`cronium-agent ${VERSION}\n`);
    return 0;
  }
  if (!existsSync(config.tls.cert)) {
    if (!config.joinToken) throw new ConfigError(`no certificate at ${config.tls.cert}: enroll with --join-token, or give --ca, --cert and --key`);
    const enrolled = await enroll({ address: config.controlPlanes[0]!, joinToken: config.joinToken, name: config.name, tls: config.tls });
    log('enrolled with the control plane', { agentId: enrolled });
  }
  const tls = readTls(config.tls);
  const agentId = new X509Certificate(tls.cert).subject.replace(/^CN=/, '').split('\n')[0]!;
  mkdirSync(join(config.dataDir, 'jobs'), { recursive: true });
  const stopTracing = await startTracing(agentId);

  const docker = new Docker();
  // Containers of this agent (same id and data folder) left by an earlier process.
  const ownLabels = { 'cronium.agent': agentId, 'cronium.agent-home': config.dataDir };
  const removed = await removeLeftoverContainers(docker, ownLabels).catch((error: Error) => {
    logger.warn({ error: error.message }, 'docker engine not reachable; docker jobs will fail until it is');
    return 0;
  });
  if (removed > 0) log('removed containers left by an earlier run', { count: removed });

  let connection: Connection | undefined;
  const helpers = runtimeDir(config.dataDir);
  const ssh = config.enableSsh ? new SshExecutor({ runtimeDir: helpers, stopGraceSeconds: config.stopGraceSeconds }) : undefined;
  const spool = new Spool(config.dataDir, config.spoolMaxBytes);
  const dockerExecutor = new DockerExecutor({
    docker,
    images: config.images,
    workRoot: join(config.dataDir, 'jobs'),
    runtimeDir: helpers,
    stopGraceSeconds: config.stopGraceSeconds,
    labels: ownLabels,
    networkMode: config.dockerNetwork,
    warmContainers: config.warmContainers,
    warmIdleMs: config.warmIdleSeconds * 1000,
    onWarmError: (key, error) => logger.warn({ key, error: String(error) }, 'could not keep a warm container or network sandbox ready; jobs of this kind start without one'),
  });
  const runner = new Runner({
    slots: config.slots,
    executors: [
      dockerExecutor,
      new HttpExecutor(),
      ...(ssh ? [ssh] : []),
    ],
    send: (message) => connection?.send(message),
    log,
    spool,
  });
  const recovered = runner.recover();
  if (recovered > 0) log('recovered unacknowledged jobs from the spool', { count: recovered });
  connection = new Connection({
    agentId,
    name: config.name,
    version: VERSION,
    mode: config.mode,
    labels: config.labels,
    slots: config.slots,
    reconnectMaxMs: config.reconnectMaxMs,
    controlPlanes: config.controlPlanes,
    tls: () => readTls(config.tls),
    runner,
    terminals: new Terminals({ send: (message) => connection?.send(message), localEnabled: config.enableTerminal, sshEnabled: config.enableSsh, log }),
    log,
    onConnected: (address) => scheduleRenewal(address),
  });

  // Renews the certificate over the mTLS link once two thirds of its lifetime have passed.
  let renewalTimer: NodeJS.Timeout | undefined;
  const scheduleRenewal = (address: string) => {
    clearTimeout(renewalTimer);
    const delay = Math.max(0, renewalTime(readTls(config.tls).cert) - Date.now());
    renewalTimer = setTimeout(() => {
      renew(address, config.tls, readTls(config.tls)).then(
        () => {
          log('certificate renewed; used from the next connection');
          scheduleRenewal(address);
        },
        (error: Error) => {
          logger.warn({ error: error.message }, 'certificate renewal failed; retrying in a minute');
          renewalTimer = setTimeout(() => scheduleRenewal(address), 60_000);
        },
      );
    }, Math.min(delay, 2 ** 31 - 1));
    renewalTimer.unref();
  };
  if (config.metricsAddress) {
    await startMetricsServer(config.metricsAddress, {
      slots: config.slots,
      runningJobs: () => runner.executing,
      freeSlots: () => runner.freeSlots,
      unacknowledged: () => [...runner.outbox.pending()].length,
      spoolBytes: () => spool.bytes,
      connected: () => connection?.connected ?? false,
    });
    log('metrics served', { address: config.metricsAddress });
  }
  log('agent starting', { agentId, mode: config.mode, controlPlanes: config.controlPlanes, slots: config.slots });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log('draining: no new jobs; waiting for running ones', { signal });
    runner.drain();
    await runner.idle();
    // Give the last results a moment to be acknowledged.
    const deadline = Date.now() + 5_000;
    while ([...runner.outbox.pending()].length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    await ssh?.close();
    await dockerExecutor.close().catch(() => {});
    await stopTracing().catch(() => {});
    connection.stop();
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  await connection.run();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    if (error instanceof ConfigError || error instanceof EnrollmentError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`cronium-agent: ${(error as Error).message}\n`);
      process.exit(2);
    }
    logger.fatal({ error: String(error) }, 'agent failed');
    process.exit(1);
  },
);
