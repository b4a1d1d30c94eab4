import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { IncomingMessage, Server } from 'node:http';
import { HttpExecutor } from '../src/executors/http.ts';
import type { HttpExecutorOptions } from '../src/executors/http.ts';
import type { ExecutionResult, HttpRequestSpec, JobSpec, LogStreamName } from '../src/job.ts';

let server: Server;
let base = '';
const received: { method: string; url: string; body: string; headers: IncomingMessage['headers'] }[] = [];

function spec(http: Partial<HttpRequestSpec> & { url: string }, extra: Partial<JobSpec> = {}): JobSpec {
  return {
    jobId: `test-http-${randomUUID()}`,
    attempt: 1,
    eventId: 'evt',
    runId: 'run',
    eventName: 'http test',
    kind: 'http',
    script: '',
    env: {},
    timeoutSeconds: 10,
    input: null,
    variables: {},
    memoryBytes: 0,
    cpus: 0,
    network: true,
    http: { method: 'GET', headers: {}, body: '', ...http },
    ...extra,
  };
}

async function run(s: JobSpec, signal?: AbortSignal, options?: HttpExecutorOptions) {
  const logs: Record<LogStreamName, string> = { stdout: '', stderr: '', system: '' };
  let started = 0;
  const result: ExecutionResult = await new HttpExecutor(options).run(s, {
    signal: signal ?? new AbortController().signal,
    async log(stream, data) {
      logs[stream] += data.toString('utf8');
    },
    started() {
      started++;
    },
  });
  return { result, logs, started };
}

describe('HttpExecutor', { concurrency: true }, () => {
  before(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({ method: req.method ?? '', url: req.url ?? '', body: Buffer.concat(chunks).toString(), headers: req.headers });
        if (req.url === '/json') {
          res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'x-test': 'yes' });
          res.end(JSON.stringify({ ok: true, n: 1 }));
        } else if (req.url === '/echo') {
          res.writeHead(201, { 'content-type': 'text/plain' });
          res.end(`${req.method} ${Buffer.concat(chunks).toString()}`);
        } else if (req.url === '/fail') {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end('boom');
        } else if (req.url === '/big') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('x'.repeat(5000));
        } else if (req.url === '/slow') {
          const t = setTimeout(() => res.end('late'), 30_000);
          res.on('close', () => clearTimeout(t));
        } else {
          res.writeHead(404);
          res.end();
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  test('200 JSON → succeeded, body parsed, logged', async () => {
    const r = await run(spec({ url: `${base}/json`, headers: { 'x-from': 'cronium' } }));
    assert.equal(r.result.outcome, 'succeeded');
    assert.equal(r.result.exitCode, 0);
    const out = r.result.output as { status: number; statusText: string; headers: Record<string, string>; body: unknown };
    assert.equal(out.status, 200);
    assert.equal(out.statusText, 'OK');
    assert.equal(out.headers['x-test'], 'yes');
    assert.deepEqual(out.body, { ok: true, n: 1 });
    assert.match(r.logs.system, /^HTTP 200 OK in \d+ ms\n$/);
    assert.equal(r.logs.stdout, '{"ok":true,"n":1}');
    assert.equal(r.started, 1);
    assert.ok(received.some((q) => q.url === '/json' && q.headers['x-from'] === 'cronium'));
  });

  test('POST sends the body; text response kept as text', async () => {
    const r = await run(spec({ url: `${base}/echo`, method: 'post', body: 'hello' }));
    assert.equal(r.result.outcome, 'succeeded');
    assert.deepEqual((r.result.output as { body: unknown }).body, 'POST hello');
  });

  test('500 → failed with exit code 1', async () => {
    const r = await run(spec({ url: `${base}/fail` }));
    assert.equal(r.result.outcome, 'failed');
    assert.equal(r.result.exitCode, 1);
    assert.equal(r.result.error, 'HTTP 500');
    assert.equal((r.result.output as { body: unknown }).body, 'boom');
  });

  test('timeout → timed_out', async () => {
    const t0 = Date.now();
    const r = await run(spec({ url: `${base}/slow` }, { timeoutSeconds: 1 }));
    assert.equal(r.result.outcome, 'timed_out');
    assert.equal(r.result.error, 'timed out after 1s');
    assert.ok(Date.now() - t0 < 3000);
  });

  test('cancel → cancelled', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const r = await run(spec({ url: `${base}/slow` }), ac.signal);
    assert.equal(r.result.outcome, 'cancelled');
  });

  test('connection refused → failed with the reason', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const r = await run(spec({ url: `http://127.0.0.1:${port}/` }));
    assert.equal(r.result.outcome, 'failed');
    assert.match(r.result.error, /ECONNREFUSED/);
  });

  test('body capped at maxBodyBytes', async () => {
    const r = await run(spec({ url: `${base}/big` }), undefined, { maxBodyBytes: 1000 });
    assert.equal(r.result.outcome, 'succeeded');
    assert.equal(r.logs.stdout.length, 1000);
    assert.match(r.logs.system, /truncated after 1000 bytes/);
  });
});
