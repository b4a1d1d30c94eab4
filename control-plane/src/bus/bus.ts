/** Carries what every control-plane replica must see fast. Losing a message may delay work, never lose it. */
export interface Bus {
  readonly kind: 'nats' | 'memory';
  /** False while NATS is unreachable (messages are dropped meanwhile; the database catches up). */
  connected(): boolean;
  publish(subject: string, data: Uint8Array): void;
  /** Returns a function that ends the subscription. */
  subscribe(subject: string, handler: (data: Uint8Array) => void): () => void;
  close(): Promise<void>;
}

export const subjects = {
  /** Log entries and status changes of one job (WatchJobResponse, binary). */
  job: (jobId: string) => `cronium.job.${jobId}`,
  /** Something became ready to dispatch (empty payload). */
  dispatch: 'cronium.dispatch',
  /** Schedules were created, changed or removed (empty payload): the leading scheduler lists them again. */
  schedules: 'cronium.schedules',
  /** Stop an attempt on an agent (agent.v1.CancelJob, binary). */
  agentCancel: (agentId: string) => `cronium.agent.${agentId}.cancel`,
  /** 'drain' or 'revoke' for one agent, wherever its stream is. */
  agentControl: (agentId: string) => `cronium.agent.${agentId}.control`,
} as const;
