import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { ConnectRequestSchema, type ConnectRequest, type ConnectResponse, type TerminalOpen } from '@cronium/proto/agent/v1';
import { openLocalShell } from './local-pty.ts';
import { openSshShell } from './ssh-shell.ts';
import type { Shell, ShellEvents } from './shell.ts';

/** Output bytes sent and not yet acknowledged before the shell's output is paused (the control plane's window). */
const WINDOW_BYTES = 64 * 1024;
const MAX_CHUNK_BYTES = 32 * 1024;

export interface TerminalsOptions {
  readonly send: (message: ConnectRequest) => void;
  /** Shells on this host (`enable_terminal`); SSH terminals need `sshEnabled`. */
  readonly localEnabled: boolean;
  readonly sshEnabled: boolean;
  readonly log: (message: string, fields?: Record<string, unknown>) => void;
}

interface Open {
  readonly shell: Shell;
  sent: bigint;
  acked: bigint;
  paused: boolean;
}

type Kind = MessageInitShape<typeof ConnectRequestSchema>['kind'];

/** The agent's end of the terminals multiplexed on its link: one shell per terminal id. */
export class Terminals {
  readonly #options: TerminalsOptions;
  readonly #open = new Map<string, Open>();

  constructor(options: TerminalsOptions) {
    this.#options = options;
  }

  get localEnabled(): boolean {
    return this.#options.localEnabled;
  }

  #send(kind: Kind): void {
    this.#options.send(create(ConnectRequestSchema, { kind }));
  }

  /** Takes the terminal messages from the control plane; false for every other message. */
  receive(message: ConnectResponse): boolean {
    const kind = message.kind;
    switch (kind.case) {
      case 'terminalOpen':
        this.#start(kind.value);
        return true;
      case 'terminalData': {
        const open = this.#open.get(kind.value.id);
        const end = kind.value.seq + BigInt(kind.value.data.length);
        open?.shell.write(kind.value.data, () => this.#send({ case: 'terminalAck', value: { id: kind.value.id, offset: end } }));
        return true;
      }
      case 'terminalResize':
        if (kind.value.cols > 0 && kind.value.rows > 0) this.#open.get(kind.value.id)?.shell.resize(kind.value.cols, kind.value.rows);
        return true;
      case 'terminalClose':
        this.#stop(kind.value.id);
        return true;
      case 'terminalAck': {
        const open = this.#open.get(kind.value.id);
        if (!open) return true;
        if (kind.value.offset > open.acked) open.acked = kind.value.offset;
        if (open.paused && open.sent - open.acked < BigInt(WINDOW_BYTES / 2)) {
          open.paused = false;
          open.shell.resume();
        }
        return true;
      }
      default:
        return false;
    }
  }

  /** The link dropped: no one can see these shells any more, so none is left running. */
  closeAll(reason: string): void {
    if (this.#open.size > 0) this.#options.log('closing terminals', { count: this.#open.size, reason });
    for (const id of [...this.#open.keys()]) this.#stop(id);
  }

  #start(request: TerminalOpen): void {
    const { id } = request;
    const refuse = (reason: string) => this.#send({ case: 'terminalClose', value: { id, reason } });
    if (this.#open.has(id)) return;
    if (request.local && !this.#options.localEnabled) return refuse('this agent does not allow terminals on its host (enable_terminal is off)');
    if (!request.local && (!request.ssh || !this.#options.sshEnabled)) return refuse('this agent has no SSH executor');
    const size = { cols: request.cols || 80, rows: request.rows || 24 };
    let open: Open | undefined;
    const events: ShellEvents = {
      ready: () => this.#send({ case: 'terminalOpened', value: { id } }),
      output: (data) => {
        if (!open) return;
        for (let at = 0; at < data.length; at += MAX_CHUNK_BYTES) {
          const piece = data.subarray(at, at + MAX_CHUNK_BYTES);
          this.#send({ case: 'terminalData', value: { id, seq: open.sent, data: piece } });
          open.sent += BigInt(piece.length);
        }
        if (!open.paused && open.sent - open.acked > BigInt(WINDOW_BYTES)) {
          open.paused = true;
          open.shell.pause();
        }
      },
      exit: (reason) => {
        if (this.#open.get(id) !== open) return;
        this.#open.delete(id);
        this.#send({ case: 'terminalClose', value: { id, reason } });
      },
    };
    const shell = request.local ? openLocalShell(size, events) : openSshShell(request.ssh!, size, events);
    open = { shell, sent: 0n, acked: 0n, paused: false };
    this.#open.set(id, open);
    this.#options.log('terminal opened', { terminalId: id, target: request.local ? 'local' : `${request.ssh!.host}:${request.ssh!.port}` });
  }

  #stop(id: string): void {
    const open = this.#open.get(id);
    if (!open) return;
    this.#open.delete(id);
    open.shell.close();
  }
}
