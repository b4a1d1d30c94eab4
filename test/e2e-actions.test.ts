// Variables, secret masking, conditional actions and notifications, end to end:
// API → control plane (Postgres) → agent → Docker, and notifications to local
// HTTP and SMTP receivers.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Stack, freshDatabase } from './harness.ts';
import { HttpReceiver, SmtpReceiver } from './receivers.ts';
import { startSshd } from './sshd.ts';

const V = 'cronium.api.v1.VariableService';
const N = 'cronium.api.v1.NotificationService';
const SECRET = 's3cr3t p@ss/+=';
const NEW_SECRET = 'rotated-by-script-42';

describe('variables, actions and notifications', () => {
  let stack: Stack;
  let database: Awaited<ReturnType<typeof freshDatabase>>;
  let sql: pg.Client;
  let receiver: HttpReceiver;
  let smtp: SmtpReceiver;

  before(async () => {
    database = await freshDatabase('e2e_actions');
    receiver = await new HttpReceiver().start();
    smtp = await new SmtpReceiver({ user: 'mailer', pass: 'smtp-pass-9' }).start();
    stack = new Stack({ databaseUrl: database.url });
    await stack.start();
    sql = new pg.Client({ connectionString: database.url });
    await sql.connect();
  });
  after(async () => {
    await sql?.end();
    await stack?.stop();
    await receiver?.stop();
    await smtp?.stop();
    await database?.drop();
  });

  const stdoutOf = (messages: any[]) => messages.filter((m) => m.log?.stream === 'LOG_STREAM_STDOUT').map((m) => m.log.data).join('');

  test('bad keys and reserved names are refused, naming variable.key', async () => {
    for (const key of ['lower_case', '1STARTS_WITH_DIGIT', 'HAS-DASH', 'CRONIUM_JOB_DIR', 'CRONIUM_ANYTHING', 'BASH_ENV', 'PYTHONPATH', 'NODE_PATH', '']) {
      const { status, body } = await stack.call(`${V}/SetVariable`, { key, value: 'x' });
      assert.equal(status, 400, key);
      assert.equal(body.code, 'invalid_argument', key);
      assert.match(body.message, /^variable\.key: /, key);
    }
    const none = await stack.ok(`${V}/ListVariables`, {});
    assert.deepEqual(none.variables ?? [], []);
  });

  test('a secret variable reaches the job in its env and getVariable, and is masked in every form, also split across writes', async () => {
    const set = await stack.ok(`${V}/SetVariable`, { key: 'API_TOKEN', value: SECRET, secret: true });
    assert.equal(set.variable.secret, true);
    assert.equal(set.variable.value ?? '', '');
    await stack.ok(`${V}/SetVariable`, { key: 'PLAIN_NAME', value: 'visible' });

    const listed = await stack.ok(`${V}/ListVariables`, {});
    assert.deepEqual(
      listed.variables.map((v: any) => [v.key, v.value ?? '', v.secret ?? false]),
      [['API_TOKEN', '', true], ['PLAIN_NAME', 'visible', false]],
    );
    assert.ok(!JSON.stringify(listed).includes(SECRET));
    const got = await stack.ok(`${V}/GetVariable`, { key: 'API_TOKEN' });
    assert.ok(!JSON.stringify(got).includes(SECRET));
    const row = (await sql.query("select value, secret from variables where key = 'API_TOKEN'")).rows[0];
    assert.equal(row.secret, true);
    assert.ok(!row.value.includes(SECRET) && !row.value.includes(Buffer.from(SECRET).toString('base64')), 'the row is sealed');
    assert.match(row.value, /^v1:/);

    const script = [
      '[ "${#API_TOKEN}" -eq 14 ] && echo env-ok',
      '[ "$(cronium_get_variable API_TOKEN)" = "$API_TOKEN" ] && echo helper-ok',
      'echo "raw:$API_TOKEN"',
      'printf "b64:%s\\n" "$(printf %s "$API_TOKEN" | base64)"',
      'printf "url:%s\\n" "$(node -e \'process.stdout.write(encodeURIComponent(process.env.API_TOKEN))\')"',
      'printf "split:%s" "${API_TOKEN:0:6}"; sleep 1; printf "%s:end\\n" "${API_TOKEN:6}"',
      'echo "err:$API_TOKEN" >&2',
      'echo "plain:$(cronium_get_variable PLAIN_NAME)"',
      `cronium_set_variable API_TOKEN ${NEW_SECRET}`,
    ].join('\n');
    const event = await stack.createEvent({ name: 'uses a secret', type: 'EVENT_TYPE_BASH', script });
    const run = await stack.runEvent(event.id);
    const live = await stack.watchJobUntil(run.jobs[0].id, (m) => m.job?.finishedAt !== undefined, 60_000);
    const job = await stack.waitForTerminal(run.jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
    const stored = await stack.watchJob(job.id);
    const forms = [SECRET, Buffer.from(SECRET).toString('base64'), encodeURIComponent(SECRET), SECRET.slice(6)];
    for (const [name, messages] of [['live', live], ['stored', stored]] as const) {
      const out = stdoutOf(messages);
      assert.equal(out, 'env-ok\nhelper-ok\nraw:***\nb64:***\nurl:***\nsplit:***:end\nplain:visible\n', name);
      const everything = JSON.stringify(messages);
      for (const form of forms) assert.ok(!everything.includes(form), `${name} log holds ${form}`);
      assert.match(everything, /err:\*\*\*/);
    }
    const logs = (await sql.query('select data from job_logs where job_id = $1', [job.id])).rows.map((r) => Buffer.from(r.data).toString()).join('');
    assert.ok(logs.includes('raw:***') && !logs.includes(SECRET));
    const jobRow = (await sql.query('select spec::text as spec from jobs where id = $1', [job.id])).rows[0];
    assert.ok(!jobRow.spec.includes(SECRET), 'the stored spec holds no secret');
    assert.ok(!JSON.stringify(await stack.getJob(job.id)).includes(SECRET));

    // The script's setVariable of a secret key keeps it secret: sealed, not listed, masked in the next run.
    const after = await stack.ok(`${V}/GetVariable`, { key: 'API_TOKEN' });
    assert.equal(after.variable.secret, true);
    assert.equal(after.variable.value ?? '', '');
    const sealed = (await sql.query("select value from variables where key = 'API_TOKEN'")).rows[0].value;
    assert.ok(!sealed.includes(NEW_SECRET));
    const second = await stack.createEvent({ name: 'reads the new secret', type: 'EVENT_TYPE_BASH', script: `[ "$API_TOKEN" = ${NEW_SECRET} ] && echo new-ok\necho "value:$API_TOKEN"\ncronium_output "{\\"t\\": \\"$API_TOKEN\\"}"` });
    const secondJob = await stack.waitForTerminal((await stack.runEvent(second.id)).jobs[0].id);
    assert.equal(stdoutOf(await stack.watchJob(secondJob.id)), 'new-ok\nvalue:***\n');
    assert.deepEqual(secondJob.output, { t: '***' }, 'a secret in the output is masked too');

  });

  test('a secret reaches a job on a server over SSH the same way, masked', async () => {
    const sshd = await startSshd();
    try {
      const server = (await stack.ok('cronium.api.v1.ServerService/CreateServer', { server: { name: 'ssh', host: sshd.host, port: sshd.port, username: sshd.username, privateKey: sshd.privateKey } })).server;
      await stack.ok('cronium.api.v1.ServerService/ApproveHostKey', { id: server.id, fingerprint: sshd.hostKeyFingerprint });
      await stack.ok(`${V}/SetVariable`, { key: 'SSH_SECRET', value: 'over-ssh-hidden', secret: true });
      const event = await stack.createEvent({
        name: 'ssh secret',
        type: 'EVENT_TYPE_BASH',
        script: '[ "$SSH_SECRET" = over-ssh-hidden ] && echo env-ok\necho "value:$SSH_SECRET"',
        target: { servers: { serverIds: [server.id] } },
      });
      const job = await stack.waitForTerminal((await stack.runEvent(event.id)).jobs[0].id);
      assert.equal(job.status, 'JOB_STATUS_SUCCEEDED', JSON.stringify(job));
      assert.equal(stdoutOf(await stack.watchJob(job.id)), 'env-ok\nvalue:***\n');
    } finally {
      await sshd.stop();
    }
  });

  test('a failure notifies a webhook with the templated text, signed, retried after an error', async () => {
    await stack.ok(`${V}/SetVariable`, { key: 'ENVIRONMENT', value: 'prod' });
    const channel = (
      await stack.ok(`${N}/CreateChannel`, {
        channel: { name: 'ops hook', webhook: { url: receiver.url('/hook?token=url-secret'), headers: { Authorization: 'Bearer hook-token' }, hmacSecret: 'hmac-key' } },
      })
    ).channel;
    assert.deepEqual(channel.webhook, { headerNames: ['Authorization'], signed: true });
    const shown = JSON.stringify(await stack.ok(`${N}/ListChannels`, {}));
    for (const secret of ['url-secret', 'hook-token', 'hmac-key']) assert.ok(!shown.includes(secret));
    const row = (await sql.query('select settings::text || secrets_sealed as all from notification_channels where id = $1', [channel.id])).rows[0].all;
    for (const secret of ['url-secret', 'hook-token', 'hmac-key']) assert.ok(!row.includes(secret), 'channel row holds no plaintext credential');

    receiver.answers.push(503);
    const template = '{{event.name}} {{run.status}} exit={{run.exitCode}} took={{run.durationMs}}ms output={{output}} env={{variables.ENVIRONMENT}}';
    const event = await stack.createEvent({
      name: 'nightly backup',
      type: 'EVENT_TYPE_BASH',
      script: "cronium_output 'disk full'\nexit 4",
      actions: [
        { trigger: 'ACTION_ON_FAILURE', notify: { channelId: channel.id, template, subject: 'backup {{run.status}}' } },
        { trigger: 'ACTION_ON_SUCCESS', notify: { channelId: channel.id, template: 'should not be sent' } },
      ],
    });
    assert.equal(event.actions.length, 2);
    const run = await stack.runEvent(event.id);
    const [first, second] = await receiver.waitFor('/hook?token=url-secret', 2);
    assert.equal(first!.body, second!.body, 'the retry sends the same notification');
    const body = JSON.parse(second!.body);
    assert.match(body.text, /^nightly backup failed exit=4 took=\d+ms output=disk full env=prod$/);
    assert.equal(body.subject, 'backup failed');
    assert.equal(body.run.id, run.id);
    assert.equal(second!.headers.authorization, 'Bearer hook-token');
    assert.equal(second!.headers['x-cronium-signature'], `sha256=${createHmac('sha256', 'hmac-key').update(second!.body).digest('hex')}`);

    let delivery: any;
    for (let i = 0; i < 50 && delivery?.status !== 'DELIVERY_STATUS_DELIVERED'; i++) {
      delivery = (await stack.ok(`${N}/ListDeliveries`, { runId: run.id })).deliveries[0];
      await sleep(100);
    }
    assert.equal(delivery.status, 'DELIVERY_STATUS_DELIVERED');
    assert.equal(delivery.attempts, 2);
    assert.match(delivery.lastError, /HTTP 503/);
    assert.equal(delivery.deliveryId ?? body.deliveryId, delivery.id);
    await sleep(1500);
    assert.equal(receiver.on('/hook?token=url-secret').length, 2, 'the success action did not fire');
  });

  test('a notification waiting for a retry survives a kill -9 of the control plane and is delivered after the restart', async () => {
    const channel = (await stack.ok(`${N}/CreateChannel`, { channel: { name: 'crash hook', webhook: { url: receiver.url('/crash') } } })).channel;
    receiver.answers.push(503, 503, 503);
    const event = await stack.createEvent({
      name: 'crashy',
      type: 'EVENT_TYPE_BASH',
      script: 'exit 1',
      actions: [{ trigger: 'ACTION_ON_FAILURE', notify: { channelId: channel.id, template: '{{event.name}} {{run.status}}' } }],
    });
    const run = await stack.runEvent(event.id);
    await receiver.waitFor('/crash', 1);
    const attempted = async () => (await sql.query('select status, attempts from notification_deliveries where run_id = $1', [run.id])).rows[0];
    for (let i = 0; i < 100 && (await attempted()).attempts < 1; i++) await sleep(50);
    await stack.killControlPlane();
    assert.equal((await attempted()).status, 'pending', 'the failed attempt is recorded and the notification waits in the outbox');
    await sleep(1000);
    await stack.startControlPlane();
    await stack.waitForAgent();
    for (let i = 0; i < 300 && (await attempted()).status !== 'delivered'; i++) await sleep(100);
    const row = await attempted();
    assert.equal(row.status, 'delivered');
    const requests = receiver.on('/crash');
    assert.ok(requests.length >= 2 && requests.length === row.attempts, `${requests.length} requests, ${row.attempts} attempts`);
    assert.ok(requests.every((r) => r.body === requests[0]!.body && r.headers['x-cronium-delivery'] === requests[0]!.headers['x-cronium-delivery']), 'the same notification each time, with one delivery id to deduplicate by');
    assert.equal(JSON.parse(requests.at(-1)!.body).text, 'crashy failed');
  });

  test('Slack and Discord channels post their JSON shapes; TestChannel sends a test message', async () => {
    const slack = (await stack.ok(`${N}/CreateChannel`, { channel: { name: 'slack', slack: { webhookUrl: receiver.url('/slack/T000/B000/XXXX') } } })).channel;
    const discord = (await stack.ok(`${N}/CreateChannel`, { channel: { name: 'discord', discord: { webhookUrl: receiver.url('/discord/123/abc') } } })).channel;
    assert.ok(!JSON.stringify([slack, discord]).includes('XXXX') && !JSON.stringify(discord).includes('abc'));
    const event = await stack.createEvent({
      name: 'report',
      type: 'EVENT_TYPE_BASH',
      script: "cronium_output '{\"rows\": 3}'",
      actions: [
        { trigger: 'ACTION_ALWAYS', notify: { channelId: slack.id, template: '{{event.name}} {{run.status}}: {{output}}' } },
        { trigger: 'ACTION_ON_SUCCESS', notify: { channelId: discord.id, template: '{{event.name}} ok in {{run.durationMs}} ms' } },
      ],
    });
    await stack.runEvent(event.id);
    const [toSlack] = await receiver.waitFor('/slack/T000/B000/XXXX');
    assert.deepEqual(JSON.parse(toSlack!.body), { text: 'report succeeded: {"rows":3}' });
    assert.equal(toSlack!.headers['content-type'], 'application/json');
    const [toDiscord] = await receiver.waitFor('/discord/123/abc');
    assert.deepEqual(Object.keys(JSON.parse(toDiscord!.body)), ['content']);
    assert.match(JSON.parse(toDiscord!.body).content, /^report ok in \d+ ms$/);

    const tested = await stack.ok(`${N}/TestChannel`, { id: slack.id });
    assert.equal(tested.ok, true);
    const all = await receiver.waitFor('/slack/T000/B000/XXXX', 2);
    assert.match(JSON.parse(all[1]!.body).text, /test message/);

    // An update that leaves the write-only URL empty keeps the stored one.
    const renamed = (await stack.ok(`${N}/UpdateChannel`, { channel: { id: slack.id, name: 'slack renamed', slack: {} } })).channel;
    assert.equal(renamed.name, 'slack renamed');
    assert.equal((await stack.ok(`${N}/TestChannel`, { id: slack.id })).ok, true);
    await receiver.waitFor('/slack/T000/B000/XXXX', 3);
  });

  test('an email reaches an SMTP server with the subject and body from the templates', async () => {
    const channel = (
      await stack.ok(`${N}/CreateChannel`, {
        channel: {
          name: 'mail',
          email: { host: '127.0.0.1', port: smtp.port, tls: 'SMTP_TLS_NONE', username: 'mailer', password: 'smtp-pass-9', from: 'cronium@example.com', to: ['ops@example.com'] },
        },
      })
    ).channel;
    assert.equal(channel.email.hasPassword, true);
    assert.ok(!JSON.stringify(channel).includes('smtp-pass-9'));
    const event = await stack.createEvent({
      name: 'invoice run',
      type: 'EVENT_TYPE_BASH',
      script: 'echo working\nexit 2',
      actions: [{ trigger: 'ACTION_ON_FAILURE', notify: { channelId: channel.id, subject: '{{event.name}}: {{run.status}}', template: 'Exit code {{run.exitCode}} for {{event.name}}.' } }],
    });
    await stack.runEvent(event.id);
    const mail = await smtp.waitForMail();
    assert.equal(mail.user, 'mailer');
    assert.equal(mail.from, 'cronium@example.com');
    assert.deepEqual(mail.to, ['ops@example.com']);
    assert.match(mail.raw, /^Subject: invoice run: failed\r?$/m);
    assert.match(mail.raw, /Exit code 2 for invoice run\./);
  });

  test('a runEvent action on success runs the second event with the first one\'s output as its input', async () => {
    const second = await stack.createEvent({ name: 'second', type: 'EVENT_TYPE_BASH', script: 'cronium_output "$(cronium_input)"\necho "got $(cronium_input)"' });
    const first = await stack.createEvent({
      name: 'first',
      type: 'EVENT_TYPE_BASH',
      script: "cronium_output '{\"n\": 41}'",
      actions: [
        { trigger: 'ACTION_ON_SUCCESS', runEvent: { eventId: second.id } },
        { trigger: 'ACTION_ON_FAILURE', runEvent: { eventId: second.id } },
      ],
    });
    const run = await stack.runEvent(first.id);
    await stack.waitForTerminal(run.jobs[0].id);
    let runs: any[] = [];
    for (let i = 0; i < 100 && runs.length === 0; i++) {
      runs = (await stack.ok('cronium.api.v1.RunService/ListRuns', { eventId: second.id })).runs ?? [];
      if (runs.length === 0) await sleep(100);
    }
    assert.equal(runs.length, 1, 'one run: only the success action fired');
    assert.deepEqual(runs[0].input, { n: 41 });
    const job = await stack.waitForTerminal(runs[0].jobs[0].id);
    assert.equal(job.status, 'JOB_STATUS_SUCCEEDED');
    assert.deepEqual(job.output, { n: 41 });
  });

  test('an event whose action runs itself stops after the chain depth cap (10 links)', async () => {
    const event = await stack.createEvent({ name: 'loop', type: 'EVENT_TYPE_HTTP', http: { method: 'POST', url: receiver.url('/loop') } });
    await stack.ok('cronium.api.v1.EventService/UpdateEvent', { event: { ...event, actions: [{ trigger: 'ACTION_ALWAYS', runEvent: { eventId: event.id } }] } });
    await stack.runEvent(event.id);
    await receiver.waitFor('/loop', 11, 120_000);
    await sleep(3000);
    assert.equal(receiver.on('/loop').length, 11, 'the first run and ten more, then no more');
  });

  test('actions naming a missing event or channel, or with a broken template, are refused naming the field', async () => {
    const cases: [unknown, RegExp][] = [
      [{ trigger: 'ACTION_ON_SUCCESS', runEvent: { eventId: 'nope' } }, /^event\.actions\[0\]\.runEvent\.eventId: /],
      [{ trigger: 'ACTION_ON_SUCCESS', notify: { channelId: 'nope' } }, /^event\.actions\[0\]\.notify\.channelId: /],
      [{ runEvent: { eventId: 'x' } }, /^event\.actions\[0\]\.trigger: /],
      [{ trigger: 'ACTION_ALWAYS' }, /^event\.actions\[0\]: /],
    ];
    for (const [action, message] of cases) {
      const { status, body } = await stack.call('cronium.api.v1.EventService/CreateEvent', { event: { name: 'bad', type: 'EVENT_TYPE_BASH', script: 'true', actions: [action] } });
      assert.equal(status, 400);
      assert.match(body.message, message);
    }
    const channel = (await stack.ok(`${N}/CreateChannel`, { channel: { name: 'c', slack: { webhookUrl: receiver.url('/unused') } } })).channel;
    const { body } = await stack.call('cronium.api.v1.EventService/CreateEvent', {
      event: { name: 'bad', type: 'EVENT_TYPE_BASH', script: 'true', actions: [{ trigger: 'ACTION_ALWAYS', notify: { channelId: channel.id, template: '{{#open}}' } }] },
    });
    assert.match(body.message, /^event\.actions\[0\]\.notify\.template: /);
  });

  test('no secret variable or channel credential reached the control plane or agent logs', async () => {
    for (const file of ['control-plane.log', 'agent.log']) {
      const text = readFileSync(join(stack.dataDir, file), 'utf8');
      assert.ok(text.length > 0, `${file} was written`);
      for (const secret of [SECRET, NEW_SECRET, 'over-ssh-hidden', 'url-secret', 'hook-token', 'hmac-key', 'smtp-pass-9', 'XXXX']) {
        assert.ok(!text.includes(secret), `${file} holds ${secret}`);
      }
    }
  });
});
