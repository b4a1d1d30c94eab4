import type { Bus } from '../bus/bus.ts';
import type { Db } from '../store/database.ts';
import type { JobRow } from '../store/schema.ts';
import type { JoinTokenSigner } from '../enrollment/join-tokens.ts';
import type { Sealer } from '../secrets/sealer.ts';
import type { TerminalGateway } from './terminal-gateway.ts';

export interface ApiDeps {
  readonly db: Db;
  readonly bus: Bus;
  /** Why a queued job is still waiting, or '' when an agent could take it now. */
  readonly waitingReason: (job: JobRow) => Promise<string>;
  readonly enrollment: { readonly signer: JoinTokenSigner; readonly caFingerprint: string };
  /** An agent silent for longer is shown offline. */
  readonly leaseTtlMs: number;
  readonly sealer: Sealer;
  /** Prometheus text for /metrics. */
  readonly metrics?: () => Promise<{ readonly contentType: string; readonly body: string }>;
  /** For /readyz: throws when this replica cannot serve (database unreachable). */
  readonly ready?: () => Promise<void>;
  /** WebSocket terminals at /terminal/ws. */
  readonly terminals?: TerminalGateway;
}
