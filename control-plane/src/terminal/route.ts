import type { TerminalAgent } from '../link/terminal-channel.ts';

/**
 * The server label naming which agents can reach it: `via=key=value` (an agent
 * label and its value) or `via=key` (agents that carry the label at all).
 * Without it any agent with the SSH executor may carry the terminal, as for jobs.
 */
export const VIA_LABEL = 'via';

/** The agent to carry a terminal to a server: it reaches the server (SSH executor, `via`), and carries the fewest terminals. */
export function agentForServer(
  serverLabels: Readonly<Record<string, string>>,
  agents: readonly TerminalAgent[],
  openCount: (agentId: string) => number,
): TerminalAgent | undefined {
  const via = serverLabels[VIA_LABEL];
  const at = via?.indexOf('=') ?? -1;
  const key = via === undefined ? undefined : at > 0 ? via.slice(0, at) : via;
  const able = agents.filter((agent) => {
    if (!agent.executors.includes('ssh')) return false;
    if (key === undefined) return true;
    const value = agent.labels[key];
    return value !== undefined && (at <= 0 || value === via!.slice(at + 1));
  });
  return able.sort((a, b) => openCount(a.id) - openCount(b.id))[0];
}
