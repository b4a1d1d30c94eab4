import { positive as count } from '../config.ts';

export interface TerminalLimits {
  /** A terminal without a keystroke for this long is closed. */
  readonly idleMs: number;
  /** No terminal stays open longer. */
  readonly maxMs: number;
  readonly perUser: number;
  /** Open terminals per server (or agent host), whoever opened them. */
  readonly perTarget: number;
  /** Origins besides the server's own that may open terminals (e.g. behind a proxy that rewrites Host). */
  readonly origins: readonly string[];
}

export function terminalLimitsFromEnv(env: NodeJS.ProcessEnv = process.env): TerminalLimits {
  return Object.freeze({
    idleMs: count(env, 'CRONIUM_TERMINAL_IDLE_SECONDS', 600) * 1000,
    maxMs: count(env, 'CRONIUM_TERMINAL_MAX_SECONDS', 1800) * 1000,
    perUser: count(env, 'CRONIUM_TERMINAL_PER_USER', 3),
    perTarget: count(env, 'CRONIUM_TERMINAL_PER_TARGET', 5),
    origins: (env.CRONIUM_TERMINAL_ORIGINS ?? '').split(',').map((s) => s.trim()).filter(Boolean),
  });
}
