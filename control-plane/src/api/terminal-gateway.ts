// The browser's end of a terminal: a WebSocket at /terminal/ws on the HTTP
// port. Binary frames carry terminal bytes both ways; text frames carry JSON
// control messages ({type:'resize'} from the browser; {type:'opened'},
// {type:'closed'} and {type:'error'} to it). See docs/terminal.md.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Db } from '../store/database.ts';
import type { Sealer } from '../secrets/sealer.ts';
import { sshTargetOf } from '../servers/credentials.ts';
import { TERMINAL_WINDOW_BYTES, type TerminalChannel, type TerminalLink, type TerminalTarget } from '../link/terminal-channel.ts';
import { agentForServer } from '../terminal/route.ts';
import { Recording } from '../terminal/recording.ts';
import type { TerminalLimits } from '../terminal/limits.ts';
import { credentialOf, originAllowed } from './terminal-auth.ts';
import { authenticate, type AuthOptions, type Principal } from './auth.ts';

export const TERMINAL_PATH = '/terminal/ws';
/** The agent must have the shell ready by then. */
const OPEN_TIMEOUT_MS = 30_000;

export interface TerminalGatewayOptions {
  readonly db: Db;
  readonly sealer: Sealer;
  readonly channel: TerminalChannel;
  readonly limits: TerminalLimits;
  /** The console's cookie key (see terminal-auth.ts). */
  readonly consoleKey: () => Uint8Array | undefined;
  /** How API calls check their credential; a terminal checks its the same way. */
  readonly auth: AuthOptions;
  readonly log: (message: string, fields?: Record<string, unknown>) => void;
}

class Refusal extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

interface Resolved {
  readonly kind: 'server' | 'agent';
  readonly id: string;
  readonly name: string;
  readonly agentId: string;
  readonly target: TerminalTarget;
}

function size(value: string | null, fallback: number): number {
  const n = Number(value);
  return Number.isInteger(n) && n >= 1 && n <= 1000 ? n : fallback;
}

function spokenDuration(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000} minute${ms === 60_000 ? '' : 's'}` : `${ms / 1000} seconds`;
}

export class TerminalGateway {
  readonly #options: TerminalGatewayOptions;
  readonly #wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
  /** Open terminals on this replica: who and where, for the caps. */
  readonly #open = new Map<string, { readonly ownerId: string; readonly target: string }>();

  constructor(options: TerminalGatewayOptions) {
    this.#options = options;
  }

  /** Takes an HTTP upgrade for the terminal path; false for any other path. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== TERMINAL_PATH) return false;
    void this.#accept(req, socket, head, url);
    return true;
  }

  async #accept(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): Promise<void> {
    const credential = await credentialOf(req, this.#options.consoleKey());
    if (credential && !originAllowed(req, credential.via, this.#options.limits.origins)) {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nthis origin may not open terminals\n');
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => {});
      void this.#start(ws, req, url, credential?.token).catch((error: unknown) => {
        const refusal = error instanceof Refusal ? error : new Refusal('internal', 'the terminal could not be opened');
        if (!(error instanceof Refusal)) this.#options.log('terminal failed to open', { error: String(error) });
        ws.send(JSON.stringify({ type: 'error', code: refusal.code, message: refusal.message }));
        ws.close(4000, refusal.code);
      });
    });
  }

  async #start(ws: WebSocket, req: IncomingMessage, url: URL, token: string | undefined): Promise<void> {
    const { db, channel, limits, log } = this.#options;
    const principal = token ? await authenticate(this.#options.auth, token) : undefined;
    if (!principal) throw new Refusal('unauthenticated', 'sign in to the console, or send an API token');
    const allowed = this.#options.auth.apiLimiter?.take(principal.credentialId);
    if (allowed && !allowed.ok) throw new Refusal('resource_exhausted', `too many requests with this credential; retry in ${Math.ceil(allowed.retryAfterMs / 1000)} s`);
    if (principal.role !== 'admin') throw new Refusal('permission_denied', 'only admins may open terminals');
    const resolved = await this.#resolve(url);
    const targetKey = `${resolved.kind}/${resolved.id}`;
    const mine = [...this.#open.values()];
    if (mine.filter((open) => open.ownerId === principal.ownerId).length >= limits.perUser) {
      throw new Refusal('resource_exhausted', `at most ${limits.perUser} open terminals per user; close one first`);
    }
    if (mine.filter((open) => open.target === targetKey).length >= limits.perTarget) {
      throw new Refusal('resource_exhausted', `at most ${limits.perTarget} open terminals to ${resolved.name}`);
    }
    const cols = size(url.searchParams.get('cols'), 80);
    const rows = size(url.searchParams.get('rows'), 24);
    const id = randomUUID();
    await db
      .insertInto('terminal_sessions')
      .values({
        id,
        opened_by: principal.ownerId,
        role: principal.role,
        target_kind: resolved.kind,
        target_id: resolved.id,
        target_name: resolved.name,
        agent_id: resolved.agentId,
        client_address: req.socket.remoteAddress ?? '',
        cols,
        rows,
      })
      .execute();
    this.#open.set(id, { ownerId: principal.ownerId, target: targetKey });
    log('terminal opened', { terminalId: id, by: principal.ownerId, target: targetKey, agentId: resolved.agentId });
    try {
      this.#pipe(ws, id, resolved, { cols, rows }, principal);
    } catch (error) {
      // The agent left between the choice and the open.
      this.#open.delete(id);
      await db.updateTable('terminal_sessions').set({ ended_at: new Date(), end_reason: String((error as Error).message) }).where('id', '=', id).execute();
      throw new Refusal('unavailable', (error as Error).message);
    }
  }

  async #resolve(url: URL): Promise<Resolved> {
    const { db, channel, sealer } = this.#options;
    const serverId = url.searchParams.get('server');
    const agentId = url.searchParams.get('agent');
    if (serverId) {
      const server = await db.selectFrom('servers').selectAll().where('id', '=', serverId).where('deleted_at', 'is', null).executeTakeFirst();
      if (!server) throw new Refusal('not_found', `server ${serverId} not found`);
      if (!server.host_key_fingerprint) throw new Refusal('failed_precondition', `server ${server.name}: host key not approved (test the server, then approve its key)`);
      const agent = agentForServer(server.labels, channel.agents(), (id) => channel.openCount(id));
      if (!agent) throw new Refusal('unavailable', `no agent connected to this control plane can reach ${server.name} (SSH executor${server.labels.via ? `, via ${server.labels.via}` : ''})`);
      return { kind: 'server', id: server.id, name: server.name, agentId: agent.id, target: { ssh: sshTargetOf(sealer, server) } };
    }
    if (agentId) {
      const agent = channel.agents().find((candidate) => candidate.id === agentId);
      if (!agent) throw new Refusal('unavailable', `agent ${agentId} is not connected to this control plane`);
      if (!agent.executors.includes('terminal')) throw new Refusal('failed_precondition', `agent ${agentId} does not allow terminals on its host (enable_terminal)`);
      const row = await db.selectFrom('agents').select('name').where('id', '=', agentId).executeTakeFirst();
      return { kind: 'agent', id: agentId, name: row?.name ?? agentId, agentId, target: { local: true } };
    }
    throw new Refusal('invalid_argument', 'server or agent: required');
  }

  #pipe(ws: WebSocket, id: string, resolved: Resolved, dims: { cols: number; rows: number }, principal: Principal): void {
    const { db, channel, limits, log } = this.#options;
    let link: TerminalLink | undefined;
    let ended = false;
    let idle: NodeJS.Timeout | undefined;
    const close = (reason: string) => link?.close(reason);
    const touch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => close(`closed after ${spokenDuration(limits.idleMs)} without input`), limits.idleMs);
    };
    let lifetime: NodeJS.Timeout | undefined;
    let opening: NodeJS.Timeout | undefined;
    let recording: Recording | undefined;
    link = channel.open(resolved.agentId, id, resolved.target, dims, {
      opened: () => {
        clearTimeout(opening);
        ws.send(JSON.stringify({ type: 'opened', id, target: resolved.name, agentId: resolved.agentId }));
      },
      output: (data, delivered) => {
        recording?.output(data);
        ws.send(data, { binary: true }, () => delivered());
      },
      inputAcked: () => {
        if (ws.isPaused && link && link.inputInFlight < TERMINAL_WINDOW_BYTES / 2) ws.resume();
      },
      closed: (reason) => {
        if (ended) return;
        ended = true;
        clearTimeout(idle);
        clearTimeout(lifetime);
        clearTimeout(opening);
        this.#open.delete(id);
        log('terminal closed', { terminalId: id, reason });
        if (ws.readyState === ws.OPEN) {
          ws.send(JSON.stringify({ type: 'closed', reason }));
          ws.close(1000, Buffer.from(reason).subarray(0, 120).toString());
        }
        recording?.finish(reason).catch((error: unknown) => log('terminal recording could not be finished', { terminalId: id, error: String(error) }));
      },
    });
    recording = new Recording(db, id, { ...dims, title: `${resolved.name} (${principal.ownerId})` });
    lifetime = setTimeout(() => close(`reached the ${spokenDuration(limits.maxMs)} limit`), limits.maxMs);
    opening = setTimeout(() => close('the agent did not open the shell in time'), OPEN_TIMEOUT_MS);
    touch();
    ws.on('message', (data, isBinary) => {
      if (!link) return;
      if (isBinary) {
        touch();
        link.write(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer));
        // A large paste: stop reading the browser until the shell has taken most of it.
        if (link.inputInFlight > TERMINAL_WINDOW_BYTES) ws.pause();
        return;
      }
      let message: { type?: unknown; cols?: unknown; rows?: unknown };
      try {
        message = JSON.parse(String(data)) as typeof message;
      } catch {
        return;
      }
      if (message.type === 'resize') {
        const cols = size(String(message.cols), 0);
        const rows = size(String(message.rows), 0);
        if (cols && rows) {
          link.resize(cols, rows);
          recording.resize(cols, rows);
        }
      }
    });
    ws.on('close', () => close('closed by the browser'));
  }

  /** Ends every terminal with a message that says why (this control plane stops). */
  close(reason: string): void {
    this.#options.channel.closeAll(reason);
  }
}
