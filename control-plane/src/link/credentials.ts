import * as grpc from '@grpc/grpc-js';

/**
 * A certificate provider that always holds the same CA and identity. It
 * answers a new listener on the next tick: grpc-js registers the server as a
 * watcher only after adding its listeners, and drops a synchronous update.
 */
function staticProvider(ca: Buffer, certificate: Buffer, privateKey: Buffer): grpc.experimental.CertificateProvider {
  return {
    addCaCertificateListener: (listener) => setImmediate(() => listener({ caCertificate: ca })),
    removeCaCertificateListener: () => {},
    addIdentityCertificateListener: (listener) => setImmediate(() => listener({ certificate, privateKey })),
    removeIdentityCertificateListener: () => {},
  };
}

/**
 * TLS that asks for a client certificate but does not require one: the agent
 * link refuses calls without a verified certificate itself, while enrollment
 * (no certificate yet) is authenticated by its join token. The server sends
 * its chain with the CA so a new agent can pin the CA named in its token.
 */
export function linkServerCredentials(tls: { ca: string; cert: string; key: string }): grpc.ServerCredentials {
  const provider = staticProvider(Buffer.from(tls.ca), Buffer.from(`${tls.cert.trim()}\n${tls.ca.trim()}\n`), Buffer.from(tls.key));
  return grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
}

/** The verified client certificate's common name, or undefined when there is none. */
export function peerAgentId(call: Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getAuthContext'>): string | undefined {
  const cert = call.getAuthContext()?.sslPeerCertificate;
  const cn = cert?.subject?.CN;
  return typeof cn === 'string' ? cn : undefined;
}
