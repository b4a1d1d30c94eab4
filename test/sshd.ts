// A real OpenSSH server for tests: `startSshd()` runs Debian's
// `/usr/sbin/sshd -D -e -f CONFIG` on a free loopback port with its own
// ed25519 host key, its own config, pid file and authorized_keys folder (all
// in a temp dir), and a fresh local test user with a password and a client key
// pair. Several instances can run at once (each stands for one server).
// Needs root (useradd, sshd). Stop every instance with `stop()`; it kills the
// sshd it started (and the per-connection sshd processes and the test users'
// processes), deletes the test users and the temp dir.
//
//   const server = await startSshd();          // or startSshd({ users: 2, extraConfig: ['MaxSessions 2'] })
//   // server.host, server.port, server.username, server.password,
//   // server.privateKey, server.hostKeyFingerprint ('SHA256:…'), server.users[i]
//   spawn('ssh', [...server.sshArgs(), 'true']); // plain OpenSSH client, host key checked
//   await server.regenerateHostKey(); // same port, new key (fingerprint updated)
//   server.log();                     // sshd's stderr so far (LogLevel VERBOSE)
//   await readdir(server.tmpDir);     // sessions' TMPDIR: job folders land here
//   await server.jobProcesses();      // the test users' processes, sshd's own left out
//   await server.killConnections();   // drop every open connection, keep listening
//   await server.stop();

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const SSHD_PATH = '/usr/sbin/sshd';

export interface SshdUser {
  readonly username: string;
  readonly password: string;
  /** OpenSSH-format ed25519 private key (authorized for this user on this server). */
  readonly privateKey: string;
  /** The same key as a file (mode 0600), for the `ssh` command line. */
  readonly privateKeyPath: string;
  readonly uid: number;
}

export interface StartSshdOptions {
  /** How many test users to create on this server (default 1); `users[0]` is the main one. */
  readonly users?: number;
  /** Extra sshd_config lines (e.g. `MaxSessions 2`); they override the fixture's defaults. */
  readonly extraConfig?: readonly string[];
  /** Loopback address to listen on (default 127.0.0.1), e.g. 127.0.0.2 for a server only one agent is told to reach. */
  readonly host?: string;
}

export interface Sshd {
  readonly host: string;
  readonly port: number;
  /** The main test user (`users[0]`). */
  readonly username: string;
  readonly password: string;
  readonly privateKey: string;
  readonly privateKeyPath: string;
  readonly users: readonly SshdUser[];
  /** Current host key, as `ssh-keygen -l -E sha256` prints it (`SHA256:…`); changes on regenerateHostKey(). */
  readonly hostKeyFingerprint: string;
  /** A known_hosts file with the current host key (for the `ssh` command line). */
  readonly knownHostsPath: string;
  /** The temp dir holding config, keys, pid file. */
  readonly dir: string;
  /** TMPDIR of every session on this server (sshd `SetEnv`), mode 1777: `mktemp -d` folders land here. */
  readonly tmpDir: string;
  /** pid of the listening sshd. */
  readonly pid: number;
  /** sshd's log (stderr) so far. */
  log(): string;
  /** Processes of this server's test users other than sshd's own session processes. */
  jobProcesses(): Promise<ProcessInfo[]>;
  /** Kills the per-connection sshd processes (clients see their connections die); the listener stays. */
  killConnections(): Promise<void>;
  /** pids of the per-connection sshd processes (monitor, network child, SFTP server; not the listener, not user commands). */
  connectionPids(): Promise<number[]>;
  /** Arguments for `ssh` to run a command as the main user, host key checked: `spawn('ssh', [...server.sshArgs(), 'cmd'])`. */
  sshArgs(): string[];
  /** Stops sshd and all its connections, makes a new host key, starts again on the same port. */
  regenerateHostKey(): Promise<void>;
  stop(): Promise<void>;
}

let userCounter = 0;

/** A free loopback TCP port (another process may take it before sshd does; startSshd retries). */
async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function retry<T>(what: string, fn: () => Promise<T>, attempts = 20): Promise<T> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await fn();
    } catch (err) {
      last = err;
      // useradd/userdel/chpasswd take a lock on /etc/passwd; parallel test files may hold it.
      await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 200));
    }
  }
  throw new Error(`${what}: ${(last as Error).message}`);
}

async function fingerprintOfFile(pubPath: string): Promise<string> {
  const { stdout } = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', pubPath]);
  const fp = stdout.split(' ')[1];
  if (!fp?.startsWith('SHA256:')) throw new Error(`unexpected ssh-keygen -l output: ${stdout}`);
  return fp;
}

/** All descendants of pid (found through /proc). */
async function descendants(pid: number): Promise<number[]> {
  const parents = new Map<number, number[]>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = parents.get(ppid) ?? [];
      list.push(Number(name));
      parents.set(ppid, list);
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of parents.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

export interface ProcessInfo {
  readonly pid: number;
  /** /proc/PID/comm, e.g. `sleep`, `sshd`. */
  readonly command: string;
  /** Full command line, arguments joined by spaces. */
  readonly cmdline: string;
}

/** Processes owned by uid (from /proc; zombies left out). */
export async function processesOf(uid: number): Promise<ProcessInfo[]> {
  const out: ProcessInfo[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = await readFile(`/proc/${name}/status`, 'utf8');
      const m = /^Uid:\s+(\d+)/m.exec(status);
      if (!m || Number(m[1]) !== uid || /^State:\s+Z/m.test(status)) continue;
      const command = (/^Name:\s+(.*)$/m.exec(status)?.[1] ?? '').trim();
      const cmdline = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0').join(' ').trim();
      out.push({ pid: Number(name), command, cmdline });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

async function createUser(): Promise<{ username: string; password: string; uid: number }> {
  const username = `cronium-ssh-${process.pid}-${++userCounter}`;
  const password = randomBytes(12).toString('base64url');
  await retry(`useradd ${username}`, () => run('useradd', ['-m', '-s', '/bin/bash', username]));
  await retry(`chpasswd ${username}`, () =>
    new Promise<void>((resolve, reject) => {
      const child = execFile('chpasswd', (err) => (err ? reject(err) : resolve()));
      child.stdin?.end(`${username}:${password}\n`);
    }),
  );
  const { stdout } = await run('id', ['-u', username]);
  return { username, password, uid: Number(stdout.trim()) };
}

async function deleteUser(username: string, uid: number): Promise<void> {
  for (const p of await processesOf(uid)) kill(p.pid, 'SIGKILL');
  await retry(`userdel ${username}`, () => run('userdel', ['-r', '-f', username]), 10).catch(() => {});
}

/** Resolves once something on host:port answers with an SSH banner. */
async function waitForBanner(host: string, port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error('sshd exited');
    const ok = await new Promise<boolean>((resolve) => {
      const sock = connect(port, host);
      let data = '';
      const done = (v: boolean) => {
        sock.destroy();
        resolve(v);
      };
      sock.setTimeout(1000, () => done(false));
      sock.on('data', (d) => {
        data += d.toString('latin1');
        if (data.includes('\n')) done(data.startsWith('SSH-2.0-'));
      });
      sock.on('error', () => done(false));
      sock.on('close', () => done(false));
    });
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`sshd did not answer on port ${port} within ${timeoutMs} ms`);
}

export async function startSshd(options: StartSshdOptions = {}): Promise<Sshd> {
  if (process.getuid?.() !== 0) throw new Error('startSshd needs root (it runs sshd and creates test users)');
  const host = options.host ?? '127.0.0.1';
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  const dir = await mkdtemp(join(tmpdir(), 'cronium-sshd-'));
  // sshd reads authorized_keys as the user: the path must be traversable.
  await chmod(dir, 0o755);
  const keysDir = join(dir, 'authorized_keys');
  await mkdir(keysDir, { mode: 0o755 });
  const hostKey = join(dir, 'ssh_host_ed25519_key');
  const config = join(dir, 'sshd_config');
  const knownHostsPath = join(dir, 'known_hosts');
  const tmpDir = join(dir, 'tmp');
  await mkdir(tmpDir);
  await chmod(tmpDir, 0o1777);
  const users: SshdUser[] = [];
  let child: ChildProcess | undefined;
  let logText = '';
  let port = 0;
  let fingerprint = '';
  let stopped = false;

  const makeHostKey = async () => {
    await rm(hostKey, { force: true });
    await rm(`${hostKey}.pub`, { force: true });
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'cronium-test-host', '-f', hostKey]);
    fingerprint = await fingerprintOfFile(`${hostKey}.pub`);
    const pub = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(' ').slice(0, 2).join(' ');
    await writeFile(knownHostsPath, `[${host}]:${port} ${pub}\n`);
  };

  const writeConfig = async () => {
    const lines = [
      // sshd keeps the first value of a keyword: extra lines go first so they win.
      ...(options.extraConfig ?? []),
      `Port ${port}`,
      `ListenAddress ${host}`,
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${keysDir}/%u`,
      'UsePAM no',
      'StrictModes no',
      'PasswordAuthentication yes',
      'PubkeyAuthentication yes',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin no',
      `AllowUsers ${users.map((u) => u.username).join(' ')}`,
      'MaxSessions 10',
      'MaxStartups 100:30:200',
      'UseDNS no',
      'PrintMotd no',
      'PrintLastLog no',
      'X11Forwarding no',
      'LogLevel VERBOSE',
      `SetEnv TMPDIR=${tmpDir}`,
      'Subsystem sftp internal-sftp',
    ];
    await writeFile(config, lines.join('\n') + '\n');
  };

  const launch = async () => {
    const proc = spawn(SSHD_PATH, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (d: string) => (logText += d));
    const exited = new Promise<never>((_, reject) =>
      proc.once('exit', (code, signal) => reject(new Error(`sshd exited (${signal ?? code}): ${logText.trim().split('\n').slice(-3).join(' | ')}`))),
    );
    exited.catch(() => {});
    await Promise.race([waitForBanner(host, port, proc, 10_000), exited]);
  };

  /** Kills the listener and every per-connection sshd (and their sessions). */
  const killAll = async () => {
    const proc = child;
    child = undefined;
    if (!proc?.pid) return;
    const pids = [proc.pid, ...(await descendants(proc.pid))];
    const exited = proc.exitCode !== null || proc.signalCode !== null ? Promise.resolve() : new Promise((resolve) => proc.once('exit', resolve));
    for (const pid of pids) kill(pid, 'SIGKILL');
    await exited;
  };

  try {
    const count = Math.max(1, options.users ?? 1);
    for (let i = 0; i < count; i++) {
      const u = await createUser();
      const keyPath = join(dir, `id_ed25519_${u.username}`);
      await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', u.username, '-f', keyPath]);
      await writeFile(join(keysDir, u.username), await readFile(`${keyPath}.pub`), { mode: 0o644 });
      users.push({ ...u, privateKey: await readFile(keyPath, 'utf8'), privateKeyPath: keyPath });
    }
    for (let attempt = 0; ; attempt++) {
      port = await freePort(host);
      await makeHostKey();
      await writeConfig();
      try {
        await launch();
        break;
      } catch (err) {
        await killAll();
        // Lost the port to another process between freePort() and bind: try another.
        if (attempt >= 4 || !/Address already in use|Bind to port|Cannot bind/i.test(logText)) throw err;
      }
    }
  } catch (err) {
    await killAll();
    for (const u of users) await deleteUser(u.username, u.uid);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  const main = users[0]!;
  return {
    host,
    get port() {
      return port;
    },
    username: main.username,
    password: main.password,
    privateKey: main.privateKey,
    privateKeyPath: main.privateKeyPath,
    users,
    get hostKeyFingerprint() {
      return fingerprint;
    },
    knownHostsPath,
    dir,
    tmpDir,
    get pid() {
      return child?.pid ?? 0;
    },
    log: () => logText,
    async jobProcesses() {
      const all = await Promise.all(users.map((u) => processesOf(u.uid)));
      return all.flat().filter((p) => p.command !== 'sshd');
    },
    async connectionPids() {
      if (!child?.pid) return [];
      const out: number[] = [];
      for (const pid of await descendants(child.pid)) {
        const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
        if (comm.trim() === 'sshd') out.push(pid);
      }
      return out;
    },
    async killConnections() {
      if (!child?.pid) return;
      for (const pid of await descendants(child.pid)) kill(pid, 'SIGKILL');
    },
    sshArgs: () => [
      '-p', String(port),
      '-i', main.privateKeyPath,
      '-o', `UserKnownHostsFile=${knownHostsPath}`,
      '-o', 'StrictHostKeyChecking=yes',
      '-o', 'BatchMode=yes',
      '-o', 'IdentitiesOnly=yes',
      '-F', '/dev/null',
      `${main.username}@${host}`,
    ],
    async regenerateHostKey() {
      if (stopped) throw new Error('sshd stopped');
      await killAll();
      await makeHostKey();
      await launch();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await killAll();
      for (const u of users) await deleteUser(u.username, u.uid);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
