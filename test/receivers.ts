// Local receivers for notification tests: an HTTP server that records what is
// posted to it, and an SMTP server that records the mail it is given.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

export interface ReceivedRequest {
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

export class HttpReceiver {
  readonly requests: ReceivedRequest[] = [];
  /** Status codes to answer with, in order; 200 once they run out. */
  readonly answers: number[] = [];
  #server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      this.requests.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() });
      res.writeHead(this.answers.shift() ?? 200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  port = 0;

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  on(path: string): ReceivedRequest[] {
    return this.requests.filter((request) => request.path === path);
  }

  async waitFor(path: string, count = 1, timeoutMs = 60_000): Promise<ReceivedRequest[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.on(path).length < count) {
      if (Date.now() > deadline) throw new Error(`${path}: ${this.on(path).length} of ${count} requests after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return this.on(path);
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((r) => this.#server.close(r));
  }
}

export interface ReceivedMail {
  readonly from: string;
  readonly to: string[];
  readonly raw: string;
  readonly user?: string;
}

export class SmtpReceiver {
  readonly mails: ReceivedMail[] = [];
  port = 0;
  readonly #server: SMTPServer;

  constructor(credentials: { user: string; pass: string }) {
    this.#server = new SMTPServer({
      disabledCommands: ['STARTTLS'],
      allowInsecureAuth: true,
      authOptional: false,
      onAuth: (auth, _session, callback) => {
        if (auth.username === credentials.user && auth.password === credentials.pass) callback(null, { user: auth.username });
        else callback(new Error('bad credentials'));
      },
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
        stream.on('end', () => {
          this.mails.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks).toString(),
            user: session.user as string | undefined,
          });
          callback();
        });
      },
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.server.address() as AddressInfo).port;
    return this;
  }

  async waitForMail(timeoutMs = 60_000): Promise<ReceivedMail> {
    const deadline = Date.now() + timeoutMs;
    while (this.mails.length === 0) {
      if (Date.now() > deadline) throw new Error(`no mail after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return this.mails[0]!;
  }

  async stop(): Promise<void> {
    await new Promise((r) => this.#server.close(() => r(undefined)));
  }
}
