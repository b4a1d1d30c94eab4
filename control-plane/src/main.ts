import { pino } from 'pino';
import { configFromEnv } from './config.ts';
import { startControlPlane } from './control-plane.ts';
import { startTracing } from './tracing.ts';

// Node 24 pools small Buffers in 64 KiB slabs; a slab stays resident while any slice of it lives, and every
// agent's TLS socket keeps one (its ALPN list): about 10 KB per connected agent. 8 KiB slabs waste a tenth of that.
Buffer.poolSize = 8 * 1024;

const logger = pino({ name: 'cronium-control-plane' }, pino.destination(2));

try {
  const config = configFromEnv();
  const stopTracing = await startTracing();
  const controlPlane = await startControlPlane(config, logger);
  if (controlPlane.generatedAdminToken) {
    process.stdout.write(
      `\nCronium admin API token (shown once; set CRONIUM_ADMIN_TOKEN to choose your own):\n\n  ${controlPlane.generatedAdminToken}\n\n`,
    );
  }
  if (controlPlane.generatedAdminPassword) {
    process.stdout.write(
      `\nCronium admin sign-in (shown once; set CRONIUM_ADMIN_PASSWORD to choose your own):\n\n  email:    ${config.adminEmail ?? 'admin@localhost'}\n  password: ${controlPlane.generatedAdminPassword}\n\n`,
    );
  }
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    const timer = setTimeout(() => process.exit(1), 10_000);
    await controlPlane.stop();
    await stopTracing().catch(() => {});
    clearTimeout(timer);
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
} catch (error) {
  logger.fatal({ error: error instanceof Error ? error.message : String(error) }, 'control plane failed to start');
  process.exit(1);
}
