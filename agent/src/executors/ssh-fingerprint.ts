// Host key fingerprints, pinned-key connects and the server probe.
//
// Free of agent-only imports (only node: and ssh2), so the control plane can
// import it for TestServer:
//
//   import { probeServer } from '../../agent/src/executors/ssh-fingerprint.ts';
//
// Fingerprints use the format `ssh-keygen -l -E sha256` prints:
// `SHA256:` + base64 (no padding) of the SHA-256 of the key blob.

import { createHash } from 'node:crypto';
import type { Client as SshClient, ConnectConfig } from 'ssh2';

/** What it takes to reach and log in to one server. */
export interface SshEndpoint {
  readonly host: string;
  readonly port: number;
  readonly username: string;
  /** PEM/OpenSSH private key; empty when a password is used. */
  readonly privateKey?: string;
  readonly password?: string;
}

/** `SHA256:<base64 without padding>` of an SSH public key blob (the wire format, as in a .pub file's second field). */
export function fingerprintOf(key: Buffer | Uint8Array): string {
  return 'SHA256:' + createHash('sha256').update(key).digest('base64').replace(/=+$/, '');
}

/** The algorithm named at the start of a key blob (e.g. `ssh-ed25519`), or '' if unreadable. */
export function keyTypeOf(key: Buffer | Uint8Array): string {
  const buf = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  if (buf.length < 4) return '';
  const len = buf.readUInt32BE(0);
  if (len === 0 || len > 64 || buf.length < 4 + len) return '';
  const type = buf.subarray(4, 4 + len).toString('latin1');
  return /^[\x21-\x7e]+$/.test(type) ? type : '';
}

/** Trims and drops base64 padding; `SHA256:` is required. Returns '' for anything not shaped like a SHA256 fingerprint. */
export function normalizeFingerprint(fingerprint: string): string {
  const m = /^SHA256:([A-Za-z0-9+/]{43})=?$/.exec(fingerprint.trim());
  return m ? `SHA256:${m[1]}` : '';
}

export type SshConnectErrorCode = 'connect' | 'timeout' | 'host-key' | 'auth' | 'credentials' | 'protocol';

/** A connect that failed; `message` is meant for users (no secrets in it). */
export class SshConnectError extends Error {
  readonly code: SshConnectErrorCode;
  /** The fingerprint the server presented, when the handshake got that far. */
  readonly hostKeyFingerprint: string;
  constructor(code: SshConnectErrorCode, message: string, hostKeyFingerprint = '') {
    super(message);
    this.name = 'SshConnectError';
    this.code = code;
    this.hostKeyFingerprint = hostKeyFingerprint;
  }
}

/** `host:port`, with brackets for IPv6 literals. */
export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export interface ConnectOptions {
  /**
   * The pinned key: a server presenting another key is refused during key
   * exchange, before any credential is sent. `null` accepts any key (probe only).
   */
  readonly expectedFingerprint: string | null;
  /** Handshake + authentication limit (default 15 s). */
  readonly timeoutMs?: number;
  /** Reject at once when neither a key nor a password is given (default true; the probe still learns the host key without them). */
  readonly requireCredentials?: boolean;
  /** ssh2 keepalive (default 15 s; 0 = off). */
  readonly keepaliveIntervalMs?: number;
  /** Keepalives without answer before the connection is dropped (default 3). */
  readonly keepaliveCountMax?: number;
}

export interface SshConnection {
  readonly client: SshClient;
  readonly hostKeyFingerprint: string;
}

/**
 * Connects and authenticates. Rejects with an SshConnectError whose message
 * says what went wrong, e.g. `cannot connect to 127.0.0.1:2222: ECONNREFUSED`,
 * `authentication failed for user x on 127.0.0.1:2222`, or `host key changed
 * for …: expected SHA256:…, got SHA256:…`.
 */
export async function connectSsh(endpoint: SshEndpoint, options: ConnectOptions): Promise<SshConnection> {
  const address = formatAddress(endpoint.host, endpoint.port);
  const timeoutMs = options.timeoutMs ?? 15_000;
  const expected = options.expectedFingerprint === null ? null : normalizeFingerprint(options.expectedFingerprint);
  if (expected === '') {
    return Promise.reject(
      new SshConnectError('host-key', `no valid pinned host key for ${address} (expected SHA256:…, as ssh-keygen -l -E sha256 prints it)`),
    );
  }
  const privateKey = endpoint.privateKey ?? '';
  const password = endpoint.password ?? '';
  if (privateKey === '' && password === '' && options.requireCredentials !== false) {
    return Promise.reject(new SshConnectError('credentials', `no private key or password for user ${endpoint.username} on ${address}`));
  }
  // Loaded with the first SSH connection: ssh2 holds ~18 MB (its asm.js crypto heap) an agent without SSH jobs never needs.
  const { Client } = (await import('ssh2')).default;

  return new Promise((resolve, reject) => {
    const client = new Client();
    let presented = '';
    let presentedType = '';
    let mismatch = false;
    let settled = false;
    const fail = (err: SshConnectError) => {
      if (settled) return;
      settled = true;
      client.removeAllListeners('ready');
      client.end();
      // Errors after this one (e.g. the socket closing) must not crash the process.
      client.on('error', () => {});
      reject(err);
    };
    client.once('ready', () => {
      if (settled) return;
      settled = true;
      client.removeAllListeners('error');
      resolve({ client, hostKeyFingerprint: presented });
    });
    client.on('error', (err: Error & { level?: string; code?: string }) => {
      if (mismatch) {
        fail(
          new SshConnectError(
            'host-key',
            `host key changed for ${address}: expected ${expected}, got ${presented}${presentedType ? ` (${presentedType})` : ''}; refused before authentication`,
            presented,
          ),
        );
      } else if (err.level === 'client-authentication') {
        fail(new SshConnectError('auth', `authentication failed for user ${endpoint.username} on ${address}`, presented));
      } else if (err.level === 'client-timeout') {
        fail(new SshConnectError('timeout', `cannot connect to ${address}: timed out after ${timeoutMs / 1000} s`, presented));
      } else if (err.level === 'client-socket') {
        fail(new SshConnectError('connect', `cannot connect to ${address}: ${err.code ?? err.message}`, presented));
      } else {
        fail(new SshConnectError('protocol', `cannot connect to ${address}: ${err.message}`, presented));
      }
    });
    client.once('close', () =>
      fail(new SshConnectError('connect', `cannot connect to ${address}: connection closed during the handshake`, presented)),
    );

    const config: ConnectConfig = {
      host: endpoint.host,
      port: endpoint.port,
      username: endpoint.username,
      readyTimeout: timeoutMs,
      keepaliveInterval: options.keepaliveIntervalMs ?? 15_000,
      keepaliveCountMax: options.keepaliveCountMax ?? 3,
      tryKeyboard: false,
      // Called during key exchange, before the client sends any credential.
      hostVerifier: (key: Buffer) => {
        presented = fingerprintOf(key);
        presentedType = keyTypeOf(key);
        if (expected !== null && presented !== expected) {
          mismatch = true;
          return false;
        }
        return true;
      },
    };
    if (privateKey !== '') config.privateKey = privateKey;
    if (password !== '') config.password = password;
    try {
      client.connect(config);
      // SSH sends many small packets (channel requests, SFTP calls): without
      // this, Nagle + delayed ACKs add ~40 ms stalls to each round trip.
      client.setNoDelay(true);
    } catch (err) {
      // ssh2 parses the private key synchronously.
      fail(new SshConnectError('credentials', `invalid private key for user ${endpoint.username} on ${address}: ${(err as Error).message}`));
    }
  });
}
