// A TCP proxy a test controls, to put a network partition between an agent
// and the control plane: `partition()` stops every byte both ways (open
// connections stay open, as on a real network where TCP just retransmits;
// new ones are accepted and held), `heal()` lets the held bytes flow again,
// `drop()` resets every connection.
import { connect, createServer, type Server, type Socket } from 'node:net';

interface Pair {
  readonly client: Socket;
  upstream?: Socket;
}

export class TcpProxy {
  readonly targetPort: number;
  readonly #pairs = new Set<Pair>();
  #server?: Server;
  #partitioned = false;
  port = 0;

  constructor(targetPort: number) {
    this.targetPort = targetPort;
  }

  async start(): Promise<this> {
    this.#server = createServer((client) => this.#accept(client));
    await new Promise<void>((done) => this.#server!.listen(0, '127.0.0.1', done));
    this.port = (this.#server.address() as { port: number }).port;
    return this;
  }

  get partitioned(): boolean {
    return this.#partitioned;
  }

  #accept(client: Socket): void {
    const pair: Pair = { client };
    this.#pairs.add(pair);
    client.pause();
    const forget = () => {
      this.#pairs.delete(pair);
      client.destroy();
      pair.upstream?.destroy();
    };
    client.on('error', forget);
    client.on('close', forget);
    if (!this.#partitioned) this.#link(pair);
  }

  #link(pair: Pair): void {
    if (!pair.upstream) {
      const upstream = connect(this.targetPort, '127.0.0.1');
      pair.upstream = upstream;
      upstream.on('error', () => pair.client.destroy());
      upstream.on('close', () => pair.client.destroy());
    }
    pair.client.pipe(pair.upstream);
    pair.upstream.pipe(pair.client);
    pair.client.resume();
    pair.upstream.resume();
  }

  /** No byte passes either way until heal(). */
  partition(): void {
    this.#partitioned = true;
    for (const pair of this.#pairs) {
      pair.client.unpipe();
      pair.upstream?.unpipe();
      pair.client.pause();
      pair.upstream?.pause();
    }
  }

  heal(): void {
    this.#partitioned = false;
    for (const pair of this.#pairs) this.#link(pair);
  }

  /** Resets every connection (the agent sees its stream fail). */
  drop(): void {
    for (const pair of this.#pairs) {
      pair.client.destroy();
      pair.upstream?.destroy();
    }
    this.#pairs.clear();
  }

  async close(): Promise<void> {
    this.drop();
    await new Promise((done) => this.#server?.close(done));
  }
}
