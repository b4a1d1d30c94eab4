import { connect, type NatsConnection } from 'nats';
import type { Bus } from './bus.ts';

/** The bus across replicas. Core NATS (at most once): the database stays the source of truth. */
export async function createNatsBus(url: string, name: string): Promise<Bus> {
  const nc: NatsConnection = await connect({ servers: url, name, maxReconnectAttempts: -1, reconnectTimeWait: 500 });
  let connected = true;
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') connected = false;
      else if (status.type === 'reconnect') connected = true;
    }
  })();
  return {
    kind: 'nats',
    connected: () => connected && !nc.isClosed(),
    publish(subject, data) {
      if (!nc.isClosed()) nc.publish(subject, data);
    },
    subscribe(subject, handler) {
      const subscription = nc.subscribe(subject, { callback: (error, message) => error || handler(message.data) });
      return () => subscription.unsubscribe();
    },
    async close() {
      await nc.drain().catch(() => nc.close());
    },
  };
}
