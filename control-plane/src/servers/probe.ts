import { createHash } from 'node:crypto';

export interface ProbeTarget {
  readonly host: string;
  readonly port: number;
  readonly username: string;
  readonly privateKey?: string;
  readonly password?: string;
}

export interface ProbeResult {
  readonly ok: boolean;
  readonly hostKeyFingerprint: string;
  readonly error: string;
  readonly latencyMs: number;
}

/** The fingerprint as `ssh-keygen -l -E sha256` prints it. */
export function fingerprintOf(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/**
 * Connects, records the host key whatever it is (so it can be shown and
 * approved), and tries to authenticate. Never runs a command.
 */
export async function probeServer(target: ProbeTarget, timeoutMs = 10_000): Promise<ProbeResult> {
  const started = Date.now();
  // Loaded on the first probe: ssh2 holds ~18 MB (its asm.js crypto heap) that a control plane without SSH servers never needs.
  const { Client } = await import('ssh2');
  return new Promise((resolve) => {
    const client = new Client();
    let fingerprint = '';
    let settled = false;
    const finish = (ok: boolean, error: string) => {
      if (settled) return;
      settled = true;
      client.end();
      resolve({ ok, hostKeyFingerprint: fingerprint, error, latencyMs: Date.now() - started });
    };
    client.on('ready', () => finish(true, ''));
    client.on('error', (error: Error & { level?: string }) =>
      finish(false, error.level === 'client-authentication' ? `authentication failed for user ${target.username}` : `cannot connect to ${target.host}:${target.port}: ${error.message}`),
    );
    client.connect({
      host: target.host,
      port: target.port,
      username: target.username,
      privateKey: target.privateKey || undefined,
      password: target.password || undefined,
      readyTimeout: timeoutMs,
      hostVerifier: (key: Buffer) => {
        fingerprint = fingerprintOf(key);
        return true;
      },
    });
  });
}
