import 'reflect-metadata';
import { webcrypto, X509Certificate } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { connect as tlsConnect, type PeerCertificate, type DetailedPeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import * as x509 from '@peculiar/x509';
import { decodeJwt } from 'jose';
import { create } from '@bufbuild/protobuf';
import {
  AgentLinkService,
  EnrollRequestSchema,
  EnrollmentService,
  RenewRequestSchema,
  type EnrollRequest,
  type EnrollResponse,
  type RenewRequest,
  type RenewResponse,
} from '@cronium/proto/agent/v1';
import { grpcServiceDefinition } from '@cronium/proto/grpc';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export interface TlsPaths {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export class EnrollmentError extends Error {}

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;

/** A fresh key pair and a CSR for it (the control plane decides the name). */
async function keyAndCsr(): Promise<{ keyPem: string; csrPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: 'CN=cronium-agent',
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
  });
  const keyPem = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
  return { keyPem, csrPem: csr.toString('pem') };
}

function writeAtomically(path: string, content: string, mode: number): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(`${path}.tmp`, content, { mode });
  renameSync(`${path}.tmp`, path);
}

function splitAddress(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(':');
  return { host: address.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(address.slice(at + 1)) };
}

/**
 * The control plane's CA, found in the chain it presents and accepted only if
 * its SHA-256 fingerprint is the one the join token pins.
 */
async function pinnedCa(address: string, fingerprint: string): Promise<string> {
  const { host, port } = splitAddress(address);
  const chain = await new Promise<DetailedPeerCertificate>((resolve, reject) => {
    const socket = tlsConnect({ host, port, servername: host, rejectUnauthorized: false, ALPNProtocols: ['h2'] }, () => {
      resolve(socket.getPeerCertificate(true));
      socket.end();
    });
    socket.once('error', reject);
    socket.setTimeout(10_000, () => socket.destroy(new Error('timed out')));
  }).catch((error: Error) => {
    throw new EnrollmentError(`cannot reach the control plane at ${address}: ${error.message}`);
  });
  const seen = new Set<PeerCertificate>();
  for (let cert: DetailedPeerCertificate | undefined = chain; cert && !seen.has(cert); cert = cert.issuerCertificate) {
    seen.add(cert);
    if (cert.fingerprint256.replaceAll(':', '').toLowerCase() === fingerprint) {
      return new X509Certificate(cert.raw).toString();
    }
  }
  throw new EnrollmentError(`the control plane at ${address} does not present the CA this join token names`);
}

function unary<Req, Res>(client: grpc.Client, method: string, request: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (req: Req, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Res) => void) => void>)[method]!(
      request,
      { deadline: Date.now() + 30_000 },
      (error, response) => (error ? reject(error) : resolve(response)),
    );
  });
}

/** Enrolls with a one-time join token: pins the CA, sends a CSR, stores the key and certificate. Returns the agent id. */
export async function enroll(options: { address: string; joinToken: string; name: string; tls: TlsPaths }): Promise<string> {
  let fingerprint: unknown;
  try {
    fingerprint = decodeJwt(options.joinToken).cah;
  } catch {
    throw new EnrollmentError('join_token: not a Cronium join token');
  }
  if (typeof fingerprint !== 'string') throw new EnrollmentError('join_token: names no CA fingerprint');
  const caPem = await pinnedCa(options.address, fingerprint);
  const { keyPem, csrPem } = await keyAndCsr();
  const Client = grpc.makeGenericClientConstructor(grpcServiceDefinition(EnrollmentService) as unknown as grpc.ServiceDefinition, 'EnrollmentService');
  const client = new Client(options.address, grpc.credentials.createSsl(Buffer.from(caPem)));
  try {
    const response = await unary<EnrollRequest, EnrollResponse>(
      client,
      'enroll',
      create(EnrollRequestSchema, { joinToken: options.joinToken, csrPem, name: options.name }),
    );
    writeAtomically(options.tls.ca, response.caPem, 0o644);
    writeAtomically(options.tls.key, keyPem, 0o600);
    writeAtomically(options.tls.cert, response.certificatePem, 0o644);
    return response.agentId;
  } catch (error) {
    throw new EnrollmentError(`enrollment refused: ${(error as grpc.ServiceError).details ?? (error as Error).message}`);
  } finally {
    client.close();
  }
}

/** When the certificate should be renewed: once less than a third of its lifetime is left. */
export function renewalTime(certPem: string | Buffer): number {
  const cert = new X509Certificate(certPem);
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  return to - (to - from) / 3;
}

/** Gets a new certificate for a new key over the mTLS link and stores both. */
export async function renew(address: string, tls: TlsPaths, current: { ca: Buffer; cert: Buffer; key: Buffer }): Promise<void> {
  const { keyPem, csrPem } = await keyAndCsr();
  const Client = grpc.makeGenericClientConstructor(grpcServiceDefinition(AgentLinkService) as unknown as grpc.ServiceDefinition, 'AgentLinkService');
  const client = new Client(address, grpc.credentials.createSsl(current.ca, current.key, current.cert));
  try {
    const response = await unary<RenewRequest, RenewResponse>(client, 'renew', create(RenewRequestSchema, { csrPem }));
    writeAtomically(tls.key, keyPem, 0o600);
    writeAtomically(tls.cert, response.certificatePem, 0o644);
  } finally {
    client.close();
  }
}
