import pg from 'pg';

/** Whether this replica fires schedules. */
export interface Leadership {
  /** True while this replica holds the leadership; tries to take it when free. */
  held(): Promise<boolean>;
  release(): Promise<void>;
}

/** The embedded store serves one node: it always leads. */
export const soleLeader: Leadership = { held: async () => true, release: async () => {} };

const LOCK_KEY = 'cronium-scheduler';

/**
 * Leadership through a Postgres session advisory lock on a connection of its
 * own: it is released when the holder's session ends (process killed, network
 * gone), and another replica takes it at its next try.
 */
export function advisoryLeadership(url: string, onError: (error: unknown) => void): Leadership {
  let client: pg.Client | undefined;
  let leading = false;
  const drop = () => {
    leading = false;
    const old = client;
    client = undefined;
    old?.end().catch(() => {});
  };
  return {
    async held() {
      try {
        if (!client) {
          const fresh = new pg.Client({ connectionString: url, application_name: 'cronium-scheduler-lock' });
          fresh.on('error', (error) => {
            onError(error);
            if (client === fresh) drop();
          });
          await fresh.connect();
          client = fresh;
        }
        if (!leading) {
          const { rows } = await client.query<{ locked: boolean }>('select pg_try_advisory_lock(hashtext($1)) as locked', [LOCK_KEY]);
          leading = rows[0]?.locked === true;
        } else {
          await client.query('select 1');
        }
        return leading;
      } catch (error) {
        onError(error);
        drop();
        return false;
      }
    },
    async release() {
      drop();
    },
  };
}
