import type { Db } from './store/database.ts';
import type { JobRow } from './store/schema.ts';
import { claimJobs } from './queue/claim.ts';
import type { AgentCandidate } from './domain/selector.ts';

export interface DispatchTarget extends AgentCandidate {
  offer(job: JobRow, variables: Readonly<Record<string, string>>): void;
}

export interface DispatcherOptions {
  readonly db: Db;
  /** Agents connected to this replica. */
  readonly agents: () => Iterable<DispatchTarget>;
  readonly offerTimeoutMs: number;
  readonly onError: (error: unknown) => void;
}

/**
 * Matches queued jobs to this replica's agents. Single flight: a kick while a
 * pass runs schedules one more pass, so bursts of kicks cost one claim each.
 */
export class Dispatcher {
  readonly #options: DispatcherOptions;
  #running = false;
  #again = false;

  constructor(options: DispatcherOptions) {
    this.#options = options;
  }

  kick(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    void this.#loop();
  }

  async #loop(): Promise<void> {
    try {
      do {
        this.#again = false;
        const targets = new Map<string, DispatchTarget>();
        for (const agent of this.#options.agents()) if (agent.freeSlots > 0) targets.set(agent.id, agent);
        if (targets.size === 0) break;
        const claimed = await claimJobs(this.#options.db, [...targets.values()], this.#options.offerTimeoutMs);
        if (claimed.length === 0) continue;
        const variables = await this.#variables(claimed);
        for (const job of claimed) targets.get(job.agent_id!)?.offer(job, variables.get(job.owner_id) ?? {});
        this.#again = true;
      } while (this.#again);
    } catch (error) {
      this.#options.onError(error);
    } finally {
      this.#running = false;
    }
  }

  async #variables(jobs: readonly JobRow[]): Promise<Map<string, Record<string, string>>> {
    const owners = [...new Set(jobs.map((job) => job.owner_id))];
    const rows = await this.#options.db.selectFrom('variables').select(['owner_id', 'key', 'value']).where('owner_id', 'in', owners).execute();
    const byOwner = new Map<string, Record<string, string>>();
    for (const row of rows) byOwner.set(row.owner_id, { ...byOwner.get(row.owner_id), [row.key]: row.value });
    return byOwner;
  }
}
