import type { Bus } from './bus.ts';

/** The single-node bus: delivery within this process only. */
export function createMemoryBus(): Bus {
  const handlers = new Map<string, Set<(data: Uint8Array) => void>>();
  return {
    kind: 'memory',
    connected: () => true,
    publish(subject, data) {
      for (const handler of handlers.get(subject) ?? []) handler(data);
    },
    subscribe(subject, handler) {
      const set = handlers.get(subject) ?? new Set();
      set.add(handler);
      handlers.set(subject, set);
      return () => {
        set.delete(handler);
        if (set.size === 0) handlers.delete(subject);
      };
    },
    async close() {
      handlers.clear();
    },
  };
}
