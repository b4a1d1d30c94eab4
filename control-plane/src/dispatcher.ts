import type { Db } from './store/database.ts';
import type { JobRow } from './store/schema.ts';
import { offerPicked, pickJobs } from './queue/claim.ts';
import type { AgentCandidate } from './domain/selector.ts';
import type { Sealer } from './secrets/sealer.ts';
import { sshTargetOf } from './servers/credentials.ts';
import { variablesOfOwners } from './variables/store.ts';

/** An SSH server's address and credentials, opened for one offer. */
export interface SshTarget {
  readonly serverId: string;
  readonly host: string;
  readonly port: number;
  readonly username: string;
  readonly privateKey: string;
  readonly password: string;
  readonly hostKeyFingerprint: string;
}

/** What an offer carries besides the job's own spec. */
export interface OfferContext {
  readonly variables: Readonly<Record<string, string>>;
  /** Secret variables, opened for this offer only (never stored in the job's spec). */
  readonly secrets: Readonly<Record<string, string>>;
  readonly ssh?: SshTarget;
}

export interface DispatchTarget extends AgentCandidate {
  offer(job: JobRow, context: OfferContext): void;
}

export interface DispatcherOptions {
  readonly db: Db;
  /** Agents connected to this replica. */
  readonly agents: () => Iterable<DispatchTarget>;
  readonly offerTimeoutMs: number;
  readonly sealer: Sealer;
  readonly onError: (error: unknown) => void;
  readonly onOffered?: (job: JobRow) => void;
}

/**
 * Matches queued jobs to this replica's agents. Single flight: a kick while a
 * pass runs schedules one more pass, so bursts of kicks cost one claim each.
 */
export class Dispatcher {
  readonly #options: DispatcherOptions;
  #running = false;
  #again = false;
  #stopped = false;
  #pass: Promise<void> = Promise.resolve();

  constructor(options: DispatcherOptions) {
    this.#options = options;
  }

  kick(): void {
    if (this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    this.#pass = this.#loop();
  }

  /** No offers after this; resolves when the pass under way has sent its offers. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#pass;
  }

  async #loop(): Promise<void> {
    try {
      do {
        this.#again = false;
        const targets = new Map<string, DispatchTarget>();
        for (const agent of this.#options.agents()) if (agent.freeSlots > 0) targets.set(agent.id, agent);
        if (targets.size === 0) break;
        const picks = await pickJobs(this.#options.db, [...targets.values()]);
        if (picks.length === 0) continue;
        // The owners' variables are read while the picked jobs are claimed (on two connections), not after.
        const [claimed, variables] = await Promise.all([
          offerPicked(this.#options.db, picks, this.#options.offerTimeoutMs),
          variablesOfOwners(this.#options.db, this.#options.sealer, [...new Set(picks.map((pick) => pick.ownerId))]),
        ]);
        const servers = await this.#servers(claimed);
        for (const job of claimed) {
          this.#options.onOffered?.(job);
          targets.get(job.agent_id!)?.offer(job, { variables: {}, secrets: {}, ...variables.get(job.owner_id), ssh: job.server_id ? servers.get(job.server_id) : undefined });
        }
        this.#again = true;
      } while (this.#again && !this.#stopped);
    } catch (error) {
      this.#options.onError(error);
    } finally {
      this.#running = false;
    }
  }

  async #servers(jobs: readonly JobRow[]): Promise<Map<string, SshTarget>> {
    const ids = [...new Set(jobs.map((job) => job.server_id).filter((id) => id !== null))];
    if (ids.length === 0) return new Map();
    const rows = await this.#options.db.selectFrom('servers').selectAll().where('id', 'in', ids).execute();
    return new Map(rows.map((row) => [row.id, sshTargetOf(this.#options.sealer, row)]));
  }
}
