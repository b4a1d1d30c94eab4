import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { ConnectResponseSchema, type ConnectRequest, type ConnectResponse, type SshTarget } from '@cronium/proto/agent/v1';

/** Unacknowledged bytes allowed in flight per direction of one terminal. */
export const TERMINAL_WINDOW_BYTES = 64 * 1024;
/** Keystrokes are cut into messages of at most this size (a large paste becomes many). */
const MAX_DATA_BYTES = 32 * 1024;

/** An agent stream terminals can ride on. */
export interface TerminalAgent {
  readonly id: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly executors: readonly string[];
}

/** The control-plane end of one terminal (the browser's WebSocket, through the gateway). */
export interface TerminalPeer {
  opened(): void;
  /** Output of the shell; call `delivered` once it has been passed on, which returns credit to the agent. */
  output(data: Uint8Array, delivered: () => void): void;
  /** The shell took keystrokes up to this offset. */
  inputAcked(): void;
  closed(reason: string): void;
}

export interface TerminalLink {
  readonly agentId: string;
  /** Keystroke bytes sent to the agent and not yet taken by the shell. */
  readonly inputInFlight: number;
  write(data: Uint8Array): void;
  resize(cols: number, rows: number): void;
  close(reason: string): void;
}

export interface TerminalTarget {
  readonly ssh?: Omit<SshTarget, '$typeName' | '$unknown'>;
  readonly local?: boolean;
}

interface Open {
  readonly id: string;
  readonly agent: TerminalAgent;
  readonly peer: TerminalPeer;
  inputSent: bigint;
  inputAcked: bigint;
  outputReceived: bigint;
  ended: boolean;
}

/**
 * Terminals multiplexed on the agents' link streams: which stream each agent
 * holds on this replica, and the routing of TerminalData/Resize/Close/Ack by
 * terminal id. Terminal messages skip the link's database batch queue.
 */
export class TerminalChannel {
  readonly #streams = new Map<string, { agent: TerminalAgent; send: (message: ConnectResponse) => void }>();
  readonly #open = new Map<string, Open>();

  /** A stream said Hello; an older stream of the same agent is gone, and so are its terminals. */
  attach(agent: TerminalAgent, send: (message: ConnectResponse) => void): void {
    const previous = this.#streams.get(agent.id);
    if (previous) this.#endAgent(previous.agent, 'the agent reconnected; its terminals ended');
    this.#streams.set(agent.id, { agent, send });
  }

  detach(agent: TerminalAgent): void {
    if (this.#streams.get(agent.id)?.agent !== agent) return;
    this.#streams.delete(agent.id);
    this.#endAgent(agent, 'the agent disconnected');
  }

  /** Agents connected to this replica. */
  agents(): TerminalAgent[] {
    return [...this.#streams.values()].map((stream) => stream.agent);
  }

  openCount(agentId: string): number {
    let count = 0;
    for (const open of this.#open.values()) if (open.agent.id === agentId) count++;
    return count;
  }

  open(agentId: string, id: string, target: TerminalTarget, size: { cols: number; rows: number }, peer: TerminalPeer): TerminalLink {
    const stream = this.#streams.get(agentId);
    if (!stream) throw new Error(`agent ${agentId} is not connected to this control plane`);
    const open: Open = { id, agent: stream.agent, peer, inputSent: 0n, inputAcked: 0n, outputReceived: 0n, ended: false };
    this.#open.set(id, open);
    const send = (kind: MessageInitShape<typeof ConnectResponseSchema>['kind']) => {
      if (!open.ended) this.#streams.get(agentId)?.send(create(ConnectResponseSchema, { kind }));
    };
    send({ case: 'terminalOpen', value: { id, ssh: target.ssh, local: target.local ?? false, cols: size.cols, rows: size.rows } });
    return {
      agentId,
      get inputInFlight() {
        return Number(open.inputSent - open.inputAcked);
      },
      write(data) {
        for (let at = 0; at < data.length; at += MAX_DATA_BYTES) {
          const piece = data.subarray(at, at + MAX_DATA_BYTES);
          send({ case: 'terminalData', value: { id, seq: open.inputSent, data: piece } });
          open.inputSent += BigInt(piece.length);
        }
      },
      resize(cols, rows) {
        send({ case: 'terminalResize', value: { id, cols, rows } });
      },
      close: (reason) => {
        send({ case: 'terminalClose', value: { id, reason } });
        this.#end(open, reason);
      },
    };
  }

  /** Takes the terminal messages of an agent's stream; false for every other message. */
  receive(agentId: string, message: ConnectRequest): boolean {
    const kind = message.kind;
    if (kind.case !== 'terminalOpened' && kind.case !== 'terminalData' && kind.case !== 'terminalClose' && kind.case !== 'terminalAck') return false;
    const open = this.#open.get(kind.value.id);
    // Another agent never gets to speak for a terminal it does not carry.
    if (!open || open.agent.id !== agentId || open.ended) return true;
    switch (kind.case) {
      case 'terminalOpened':
        open.peer.opened();
        break;
      case 'terminalData': {
        const end = kind.value.seq + BigInt(kind.value.data.length);
        if (end <= open.outputReceived) break;
        open.outputReceived = end;
        open.peer.output(kind.value.data, () => this.#streams.get(agentId)?.send(create(ConnectResponseSchema, { kind: { case: 'terminalAck', value: { id: open.id, offset: end } } })));
        break;
      }
      case 'terminalAck':
        if (kind.value.offset > open.inputAcked) open.inputAcked = kind.value.offset;
        open.peer.inputAcked();
        break;
      case 'terminalClose':
        this.#end(open, kind.value.reason || 'the shell ended');
        break;
    }
    return true;
  }

  /** Ends every terminal (this control plane stops). */
  closeAll(reason: string): void {
    for (const open of [...this.#open.values()]) {
      this.#streams.get(open.agent.id)?.send(create(ConnectResponseSchema, { kind: { case: 'terminalClose', value: { id: open.id, reason } } }));
      this.#end(open, reason);
    }
  }

  #endAgent(agent: TerminalAgent, reason: string): void {
    for (const open of [...this.#open.values()]) if (open.agent === agent) this.#end(open, reason);
  }

  #end(open: Open, reason: string): void {
    if (open.ended) return;
    open.ended = true;
    this.#open.delete(open.id);
    open.peer.closed(reason);
  }
}
