import 'reflect-metadata';
import { webcrypto, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;

export interface PemPair {
  readonly cert: string;
  readonly key: string;
}

export interface CertificateAuthority {
  readonly certPem: string;
  /** A server certificate for the agent link, valid for the given DNS names and IPs. */
  issueServer(names: readonly string[], days?: number): Promise<PemPair>;
  /** A client certificate whose common name is the agent id and nothing else. */
  issueAgent(agentId: string, days?: number): Promise<PemPair>;
  /** Signs an agent's CSR: the certificate names `agentId` whatever the CSR asks for. */
  signAgentCsr(agentId: string, csrPem: string, days?: number): Promise<{ cert: string; serial: string }>;
  /** SHA-256 of the CA certificate (DER), hex: what a join token pins. */
  readonly fingerprint: string;
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function keyPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString('hex');
}

async function importKey(pem: string): Promise<CryptoKey> {
  return webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(pem), KEY_ALGORITHM, false, ['sign']);
}

/** Loads the CA from `dir`, creating it on first start. */
export async function loadOrCreateCa(dir: string): Promise<CertificateAuthority> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certPath = join(dir, 'ca.crt');
  const keyPath = join(dir, 'ca.key');
  if (!existsSync(certPath)) {
    const keys = await newKeys();
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `CN=Cronium agent CA (${hostname()})`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3650 * DAY_MS),
      keys,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      ],
    });
    writeFileSync(keyPath, await keyPem(keys.privateKey), { mode: 0o600 });
    writeFileSync(certPath, cert.toString('pem'));
  }
  const caCert = new x509.X509Certificate(readFileSync(certPath, 'utf8'));
  const caKey = await importKey(readFileSync(keyPath, 'utf8'));

  async function sign(subject: string, days: number, publicKey: x509.PublicKeyType, extensions: x509.Extension[]) {
    const now = Date.now();
    return x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject,
      issuer: caCert.subject,
      // Backdated a little for clock skew, never by more than a tenth of the lifetime.
      notBefore: new Date(now - Math.min(60_000, (days * DAY_MS) / 10)),
      notAfter: new Date(now + days * DAY_MS),
      publicKey,
      signingKey: caKey,
      signingAlgorithm: SIGNING_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        ...extensions,
      ],
    });
  }

  async function issue(subject: string, days: number, extensions: x509.Extension[]): Promise<PemPair> {
    const keys = await newKeys();
    const cert = await sign(subject, days, keys.publicKey, extensions);
    return { cert: cert.toString('pem'), key: await keyPem(keys.privateKey) };
  }

  const clientAuth = () => [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth])];

  return {
    certPem: caCert.toString('pem'),
    fingerprint: Buffer.from(await caCert.getThumbprint('SHA-256')).toString('hex'),
    issueServer(names, days = 365) {
      const san = names.map((name) =>
        /^[\d.]+$/.test(name) || name.includes(':') ? { type: 'ip' as const, value: name } : { type: 'dns' as const, value: name },
      );
      return issue(`CN=${names[0] ?? 'cronium'}`, days, [
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(san),
      ]);
    },
    issueAgent(agentId, days = 30) {
      checkAgentId(agentId);
      return issue(`CN=${agentId}`, days, clientAuth());
    },
    async signAgentCsr(agentId, csrPem, days = 30) {
      checkAgentId(agentId);
      let csr: x509.Pkcs10CertificateRequest;
      try {
        csr = new x509.Pkcs10CertificateRequest(csrPem);
      } catch {
        throw new Error('the certificate signing request is not valid PEM PKCS#10');
      }
      if (!(await csr.verify())) throw new Error('the certificate signing request signature does not verify');
      const cert = await sign(`CN=${agentId}`, days, csr.publicKey, clientAuth());
      return { cert: cert.toString('pem'), serial: cert.serialNumber };
    },
  };
}

function checkAgentId(agentId: string): void {
  if (!/^[A-Za-z0-9_.-]{1,128}$/.test(agentId)) throw new Error(`agent id ${JSON.stringify(agentId)} is not valid`);
}

/** Writes a PEM pair and the CA certificate where an agent expects them. */
export function writeAgentCredentials(dir: string, pair: PemPair, caPem: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, 'client.key'), pair.key, { mode: 0o600 });
  writeFileSync(join(dir, 'client.crt'), pair.cert);
  writeFileSync(join(dir, 'ca.crt'), caPem);
}
