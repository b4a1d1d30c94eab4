import type { Sealer } from '../secrets/sealer.ts';
import type { ServerRow } from '../store/schema.ts';

/** The associated data binding a sealed credential to its server row and field. */
function boundTo(serverId: string, field: 'private_key' | 'password'): string {
  return `cronium/servers/${serverId}/${field}`;
}

export function sealCredential(sealer: Sealer, serverId: string, field: 'private_key' | 'password', value: string): string | null {
  return value ? sealer.seal(value, boundTo(serverId, field)) : null;
}

export function openCredentials(sealer: Sealer, server: Pick<ServerRow, 'id' | 'private_key_sealed' | 'password_sealed'>) {
  return {
    privateKey: server.private_key_sealed ? sealer.open(server.private_key_sealed, boundTo(server.id, 'private_key')) : '',
    password: server.password_sealed ? sealer.open(server.password_sealed, boundTo(server.id, 'password')) : '',
  };
}

/** A server's address and opened credentials, for an offer or a terminal (never stored or logged). */
export function sshTargetOf(sealer: Sealer, row: ServerRow) {
  return { serverId: row.id, host: row.host, port: row.port, username: row.username, hostKeyFingerprint: row.host_key_fingerprint, ...openCredentials(sealer, row) };
}
