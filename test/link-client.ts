// The agent link driven by hand, for tests that play a misbehaving agent:
// enrollment with a chosen CSR, and a Connect stream that sends whatever the
// test wants (typed messages or raw bytes).
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as x509 from '@peculiar/x509';
import { create, fromBinary, toBinary, type MessageInitShape } from '@bufbuild/protobuf';
import {
  AgentLinkService,
  ConnectRequestSchema,
  ConnectResponseSchema,
  EnrollmentService,
  EnrollRequestSchema,
  EnrollResponseSchema,
  RenewRequestSchema,
  RenewResponseSchema,
  AgentMode,
  JobState,
  type ConnectResponse,
  type JobRef,
} from '@cronium/proto/agent/v1';
import { grpcServiceDefinition } from '@cronium/proto/grpc';

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;

/** A fresh key and a CSR naming `subject` (the control plane must ignore the name). */
export async function keyAndCsr(subject = 'CN=cronium-agent'): Promise<{ keyPem: string; csrPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: subject, keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } });
  const keyPem = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
  return { keyPem, csrPem: csr.toString('pem') };
}

export interface AgentCredentials {
  readonly agentId: string;
  readonly ca: string;
  readonly key: string;
  readonly cert: string;
}

const raw = (bytes: Buffer) => bytes;

/** A grpc-js client for the agent link port. */
export class LinkClient {
  readonly address: string;
  readonly caPem: string;
  readonly #client: grpc.Client;

  constructor(address: string, caPem: string, credentials?: { key: string; cert: string }) {
    this.address = address;
    this.caPem = caPem;
    const ssl = credentials
      ? grpc.credentials.createSsl(Buffer.from(caPem), Buffer.from(credentials.key), Buffer.from(credentials.cert))
      : grpc.credentials.createSsl(Buffer.from(caPem));
    this.#client = new grpc.Client(address, ssl);
  }

  close(): void {
    this.#client.close();
  }

  #unary(path: string, request: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) =>
      this.#client.makeUnaryRequest(path, raw, raw, request, (error, response) => (error ? reject(error) : resolve(response!))),
    );
  }

  async enroll(joinToken: string, csrPem: string): Promise<{ agentId: string; certificatePem: string; caPem: string }> {
    const bytes = await this.#unary(`/${EnrollmentService.typeName}/Enroll`, Buffer.from(toBinary(EnrollRequestSchema, create(EnrollRequestSchema, { joinToken, csrPem }))));
    return fromBinary(EnrollResponseSchema, bytes);
  }

  async renew(csrPem: string): Promise<string> {
    const bytes = await this.#unary(`/${AgentLinkService.typeName}/Renew`, Buffer.from(toBinary(RenewRequestSchema, create(RenewRequestSchema, { csrPem }))));
    return fromBinary(RenewResponseSchema, bytes).certificatePem;
  }

  /** Sends bytes as one message of a unary method; resolves with the error, if any. */
  rawUnary(path: string, bytes: Buffer): Promise<grpc.ServiceError | undefined> {
    return this.#unary(path, bytes).then(
      () => undefined,
      (error: grpc.ServiceError) => error,
    );
  }

  /** Opens the Connect stream; messages written are raw bytes, messages read are decoded. */
  stream(): LinkStream {
    const call = this.#client.makeBidiStreamRequest(`/${AgentLinkService.typeName}/Connect`, raw, raw);
    return new LinkStream(call);
  }
}

export class LinkStream {
  readonly call: grpc.ClientDuplexStream<Buffer, Buffer>;
  readonly received: ConnectResponse[] = [];
  /** Resolves with the status the stream ended with. */
  readonly ended: Promise<grpc.StatusObject>;
  #waiters: (() => void)[] = [];
  status?: grpc.StatusObject;

  constructor(call: grpc.ClientDuplexStream<Buffer, Buffer>) {
    this.call = call;
    call.on('data', (bytes: Buffer) => {
      this.received.push(fromBinary(ConnectResponseSchema, bytes));
      for (const wake of this.#waiters.splice(0)) wake();
    });
    this.ended = new Promise((resolve) => {
      call.on('status', (status: grpc.StatusObject) => {
        this.status = status;
        resolve(status);
      });
      call.on('error', () => {});
    });
  }

  send(message: MessageInitShape<typeof ConnectRequestSchema>['kind']): void {
    this.call.write(Buffer.from(toBinary(ConnectRequestSchema, create(ConnectRequestSchema, { kind: message } as MessageInitShape<typeof ConnectRequestSchema>))));
  }

  /** Reports the attempt started, then succeeded with exit code 0, as an agent that ran it would. */
  succeed(job: JobRef): void {
    this.send({ case: 'jobStatus', value: { job, state: JobState.STARTED } });
    this.send({ case: 'jobStatus', value: { job, state: JobState.SUCCEEDED, exitCode: 0 } });
  }

  sendRaw(bytes: Uint8Array): void {
    this.call.write(Buffer.from(bytes));
  }

  /** Waits for a received message matching `predicate`. */
  async next(predicate: (message: ConnectResponse) => boolean, timeoutMs = 10_000): Promise<ConnectResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.received.find(predicate);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no matching message; got ${this.received.map((m) => m.kind.case).join(', ')}; stream ${this.status ? `ended ${this.status.code} ${this.status.details}` : 'open'}`);
      await Promise.race([new Promise<void>((wake) => this.#waiters.push(wake)), new Promise((done) => setTimeout(done, 200)), this.ended]);
    }
  }

  close(): void {
    this.call.cancel();
  }
}

/** Enrolls a hand-driven agent with a fresh join token; its certificate names the id the control plane chose. */
export async function enrollByHand(address: string, pkiDir: string, joinToken: string, subject?: string): Promise<AgentCredentials> {
  const caPem = readFileSync(join(pkiDir, 'ca.crt'), 'utf8');
  const client = new LinkClient(address, caPem);
  try {
    const { keyPem, csrPem } = await keyAndCsr(subject);
    const response = await client.enroll(joinToken, csrPem);
    return { agentId: response.agentId, ca: response.caPem, key: keyPem, cert: response.certificatePem };
  } finally {
    client.close();
  }
}

/**
 * Connects a hand-driven remote executor (docker and http, one slot) that says
 * it holds `jobs`, and waits for its Welcome.
 */
export async function connectByHand(
  address: string,
  credentials: AgentCredentials,
  labels: Record<string, string>,
  jobs: readonly JobRef[] = [],
): Promise<{ client: LinkClient; stream: LinkStream; welcome: ConnectResponse }> {
  const client = new LinkClient(address, credentials.ca, credentials);
  const stream = client.stream();
  stream.send({ case: 'hello', value: { agentId: credentials.agentId, protocolVersion: 1, mode: AgentMode.REMOTE_EXECUTOR, slots: 1, executors: [1, 3], labels, jobs: [...jobs] } });
  const welcome = await stream.next((m) => m.kind.case === 'welcome');
  return { client, stream, welcome };
}

/** What {@link assertKeptOnResume} reads through the API. */
interface JobReader {
  getJob(id: string): Promise<{ status: string }>;
  waitForTerminal(id: string, timeoutMs: number): Promise<{ status: string; attempt: number }>;
}

/**
 * After the control plane lost an agent's accept: the job is still offered
 * (not requeued, though its offer expired); the agent that started it
 * reconnects saying it holds it, is told to keep it, and finishes it; the job
 * succeeds in its first attempt.
 */
export async function assertKeptOnResume(
  api: JobReader,
  address: string,
  credentials: AgentCredentials,
  labels: Record<string, string>,
  jobId: string,
  ref: JobRef,
): Promise<void> {
  assert.equal((await api.getJob(jobId)).status, 'JOB_STATUS_OFFERED', 'not requeued while its agent may be running it');
  const { client, stream, welcome } = await connectByHand(address, credentials, labels, [ref]);
  try {
    assert.equal(welcome.kind.case === 'welcome' && welcome.kind.value.resume[0]?.keep, true, 'the agent keeps the job it started');
    stream.succeed(ref);
    const job = await api.waitForTerminal(jobId, 30_000);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED');
    assert.equal(job.attempt, 1);
  } finally {
    stream.close();
    client.close();
  }
}
