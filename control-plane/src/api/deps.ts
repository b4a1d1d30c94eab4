import type { Bus } from '../bus/bus.ts';
import type { Db } from '../store/database.ts';
import type { JobRow } from '../store/schema.ts';
import type { JoinTokenSigner } from '../enrollment/join-tokens.ts';
import type { Sealer } from '../secrets/sealer.ts';
import type { FailureBackoff, RateLimiter } from '../auth/rate-limit.ts';
import type { TerminalGateway } from './terminal-gateway.ts';

/** Sessions and the limits on sign-in and on API calls. */
export interface AccessOptions {
  readonly sessionKey: Uint8Array;
  readonly sessionHours: number;
  /** Failed sign-ins, per email and per client address. */
  readonly signInByEmail: FailureBackoff;
  readonly signInByAddress: FailureBackoff;
  /** Per API token or session; none: unlimited. */
  readonly apiLimiter?: RateLimiter;
}

export interface ApiDeps {
  readonly db: Db;
  readonly bus: Bus;
  /** Why a queued job is still waiting, or '' when an agent could take it now. */
  readonly waitingReason: (job: JobRow) => Promise<string>;
  readonly enrollment: { readonly signer: JoinTokenSigner; readonly caFingerprint: string };
  /** An agent silent for longer is shown offline. */
  readonly leaseTtlMs: number;
  readonly sealer: Sealer;
  readonly access: AccessOptions;
  /** Prometheus text for /metrics. */
  readonly metrics?: () => Promise<{ readonly contentType: string; readonly body: string }>;
  /** For /readyz: throws when this replica cannot serve (database unreachable). */
  readonly ready?: () => Promise<void>;
  /** WebSocket terminals at /terminal/ws. */
  readonly terminals?: TerminalGateway;
}
