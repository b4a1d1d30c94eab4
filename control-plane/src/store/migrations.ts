import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';

/** Numbered migrations; never edit one that has shipped, add the next. */
const migrations: Record<string, Migration> = {
  '0001_core': {
    async up(db: Kysely<any>) {
      await runStatements(db, `
        create table events (
          id text primary key,
          owner_id text not null,
          name text not null,
          description text not null default '',
          type text not null,
          script text not null default '',
          env jsonb not null default '{}',
          timeout_seconds integer not null,
          retries integer not null default 0,
          target jsonb not null,
          schedule jsonb,
          status text not null,
          priority integer not null,
          http jsonb,
          memory_mb integer not null,
          cpus double precision not null,
          network boolean not null default false,
          created_at timestamptz not null default now(),
          updated_at timestamptz not null default now(),
          deleted_at timestamptz
        );
        create index events_owner on events (owner_id) where deleted_at is null;

        create table runs (
          id text primary key,
          event_id text not null references events (id),
          owner_id text not null,
          status text not null,
          exit_code integer,
          input jsonb,
          created_at timestamptz not null default now(),
          finished_at timestamptz
        );
        create index runs_event on runs (event_id, created_at desc, id desc);

        create table jobs (
          id text primary key,
          run_id text not null references runs (id),
          event_id text not null references events (id),
          owner_id text not null,
          attempt integer not null default 1,
          max_attempts integer not null default 1,
          status text not null,
          priority integer not null,
          spec jsonb not null,
          selector jsonb not null,
          pinned_agent_id text,
          agent_id text,
          lease_id text,
          offer_expires_at timestamptz,
          lease_expires_at timestamptz,
          accepted_at timestamptz,
          run_after timestamptz not null default now(),
          exit_code integer,
          output jsonb,
          condition boolean,
          error text not null default '',
          log_truncated boolean not null default false,
          oom_killed boolean not null default false,
          cancel_requested boolean not null default false,
          created_at timestamptz not null default now(),
          offered_at timestamptz,
          started_at timestamptz,
          finished_at timestamptz
        );
        create index jobs_ready on jobs (priority desc, created_at, id) where status = 'queued';
        create index jobs_active on jobs (agent_id) where status in ('offered', 'running');
        create index jobs_run on jobs (run_id);
        create index jobs_event on jobs (event_id, created_at desc, id desc);

        create table job_logs (
          id bigserial primary key,
          job_id text not null,
          attempt integer not null,
          stream smallint not null,
          "offset" bigint not null,
          data bytea not null,
          unique (job_id, attempt, stream, "offset")
        );

        create table variables (
          owner_id text not null,
          key text not null,
          value text not null,
          updated_at timestamptz not null default now(),
          primary key (owner_id, key)
        );

        create table agents (
          id text primary key,
          name text not null,
          mode text not null,
          labels jsonb not null default '{}',
          executors jsonb not null default '[]',
          slots integer not null,
          version text not null,
          connected boolean not null default false,
          draining boolean not null default false,
          last_heartbeat_at timestamptz,
          created_at timestamptz not null default now()
        );

        create table api_tokens (
          id text primary key,
          owner_id text not null,
          role text not null,
          name text not null,
          token_hash text not null unique,
          created_at timestamptz not null default now(),
          last_used_at timestamptz,
          revoked_at timestamptz
        );
      `);
    },
  },
  '0002_enrollment': {
    async up(db: Kysely<any>) {
      await runStatements(db, `
        alter table agents add column pinned_labels jsonb not null default '{}';
        alter table agents add column revoked_at timestamptz;
        alter table agents add column certificate_serial text;

        create table join_tokens (
          id text primary key,
          agent_id text not null,
          name text not null,
          labels jsonb not null default '{}',
          created_by text not null,
          created_at timestamptz not null default now(),
          expires_at timestamptz not null,
          used_at timestamptz
        );

        alter table events add column scheduling_timeout_seconds integer not null default 600;
        alter table jobs add column scheduling_deadline timestamptz;
      `);
    },
  },
  '0003_servers': {
    async up(db: Kysely<any>) {
      await runStatements(db, `
        create table servers (
          id text primary key,
          owner_id text not null,
          name text not null,
          host text not null,
          port integer not null,
          username text not null,
          private_key_sealed text,
          password_sealed text,
          host_key_fingerprint text not null default '',
          seen_host_key_fingerprint text not null default '',
          labels jsonb not null default '{}',
          created_at timestamptz not null default now(),
          updated_at timestamptz not null default now(),
          deleted_at timestamptz
        );
        create index servers_owner on servers (owner_id) where deleted_at is null;
        alter table jobs add column server_id text references servers (id);
      `);
    },
  },
  '0004_schedule_fires': {
    async up(db: Kysely<any>) {
      await runStatements(db, `
        create table schedule_fires (
          event_id text not null references events (id),
          fire_at timestamptz not null,
          run_id text references runs (id),
          created_at timestamptz not null default now(),
          primary key (event_id, fire_at)
        );
      `);
    },
  },
  '0005_schedules_retries': {
    async up(db: Kysely<any>) {
      await runStatements(db, `
        alter table events add column max_executions integer not null default 0;
        alter table events add column execution_count integer not null default 0;
        alter table events add column missed_fire_policy text not null default 'run_once';
        alter table events add column concurrency_policy text not null default 'allow';
        alter table events add column retry_delay_seconds integer not null default 10;
        alter table schedule_fires add column skipped_reason text not null default '';
        create index runs_event_running on runs (event_id) where status = 'running';
        create table job_attempts (
          job_id text not null,
          attempt integer not null,
          status text not null,
          exit_code integer,
          error text not null default '',
          agent_id text,
          started_at timestamptz,
          finished_at timestamptz not null,
          retry_at timestamptz,
          primary key (job_id, attempt)
        );
      `);
    },
  },
  '0006_workflows': {
    async up(db: Kysely<any>) {
      await runStatements(db, `
        create table workflows (
          id text primary key,
          owner_id text not null,
          name text not null,
          description text not null default '',
          status text not null,
          nodes jsonb not null,
          edges jsonb not null,
          webhook_key text unique,
          webhook_secret_sealed text,
          created_at timestamptz not null default now(),
          updated_at timestamptz not null default now(),
          deleted_at timestamptz
        );
        create index workflows_owner on workflows (owner_id) where deleted_at is null;

        create table workflow_executions (
          id text primary key,
          workflow_id text not null references workflows (id),
          owner_id text not null,
          status text not null,
          trigger text not null,
          input jsonb,
          nodes jsonb not null,
          edges jsonb not null,
          cancel_requested boolean not null default false,
          created_at timestamptz not null default now(),
          finished_at timestamptz
        );
        create index workflow_executions_workflow on workflow_executions (workflow_id, created_at desc, id desc);

        create table workflow_node_runs (
          execution_id text not null references workflow_executions (id),
          node_id text not null,
          event_id text not null,
          status text not null,
          run_id text unique references runs (id),
          input jsonb,
          output jsonb,
          condition boolean,
          error text not null default '',
          started_at timestamptz,
          finished_at timestamptz,
          primary key (execution_id, node_id)
        );

        alter table events add column webhook_key text unique;
        alter table events add column webhook_secret_sealed text;
      `);
    },
  },
  '0007_variables_actions': {
    async up(db: Kysely<any>) {
      await runStatements(db, `
        alter table variables add column secret boolean not null default false;
        alter table events add column actions jsonb not null default '[]';
        alter table runs add column action_depth integer not null default 0;
        alter table runs add column caused_by_run_id text;

        create table notification_channels (
          id text primary key,
          owner_id text not null,
          name text not null,
          kind text not null,
          settings jsonb not null default '{}',
          secrets_sealed text not null,
          created_at timestamptz not null default now(),
          updated_at timestamptz not null default now(),
          deleted_at timestamptz
        );
        create index notification_channels_owner on notification_channels (owner_id) where deleted_at is null;

        create table notification_deliveries (
          id text primary key,
          owner_id text not null,
          channel_id text not null references notification_channels (id),
          run_id text references runs (id),
          event_id text,
          status text not null default 'pending',
          attempts integer not null default 0,
          last_error text not null default '',
          message jsonb not null,
          next_attempt_at timestamptz not null default now(),
          locked_until timestamptz,
          created_at timestamptz not null default now(),
          delivered_at timestamptz
        );
        create index notification_deliveries_due on notification_deliveries (next_attempt_at) where status = 'pending';
        create index notification_deliveries_channel on notification_deliveries (channel_id, created_at desc);
        create index notification_deliveries_run on notification_deliveries (run_id);
      `);
    },
  },
  '0008_cluster_keys': {
    async up(db: Kysely<any>) {
      await runStatements(db, `
        create table cluster_keys (
          name text primary key,
          public_pem text not null,
          private_sealed text not null,
          created_at timestamptz not null default now()
        );
        alter table agents add column stream_id text;
        alter table join_tokens add column max_uses integer not null default 1;
        alter table join_tokens add column uses integer not null default 0;
      `);
    },
  },
  '0009_users': {
    async up(db: Kysely<any>) {
      await runStatements(db, `
        create table users (
          id text primary key,
          email text not null,
          name text not null default '',
          role text not null,
          password_hash text not null,
          disabled boolean not null default false,
          created_at timestamptz not null default now(),
          updated_at timestamptz not null default now(),
          deleted_at timestamptz
        );
        create unique index users_email on users (lower(email)) where deleted_at is null;

        create table sessions (
          id text primary key,
          user_id text not null references users (id),
          created_at timestamptz not null default now(),
          expires_at timestamptz not null,
          revoked_at timestamptz
        );
        create index sessions_user on sessions (user_id) where revoked_at is null;

        alter table api_tokens add column expires_at timestamptz;

        create table audit_events (
          id bigserial primary key,
          at timestamptz not null default now(),
          user_id text not null default '',
          credential_id text not null default '',
          method text not null,
          object_type text not null default '',
          object_id text not null default '',
          fields jsonb not null default '[]',
          remote_address text not null default '',
          user_agent text not null default '',
          outcome text not null default 'ok'
        );
        create index audit_events_object on audit_events (object_type, object_id, id desc);
        create index audit_events_user on audit_events (user_id, id desc);

        create table idempotency_keys (
          owner_id text not null,
          key text not null,
          request_hash text not null,
          response jsonb not null,
          created_at timestamptz not null default now(),
          expires_at timestamptz not null,
          primary key (owner_id, key)
        );
      `);
    },
  },
  '0010_workflow_schedules': {
    async up(db: Kysely<any>) {
      await runStatements(db, `
        alter table workflows add column schedule jsonb;
        create table workflow_schedule_fires (
          workflow_id text not null references workflows (id),
          fire_at timestamptz not null,
          execution_id text references workflow_executions (id),
          skipped_reason text not null default '',
          created_at timestamptz not null default now(),
          primary key (workflow_id, fire_at)
        );
      `);
    },
  },
  '0011_terminal_sessions': {
    async up(db: Kysely<any>) {
      await runStatements(db, `
        create table terminal_sessions (
          id text primary key,
          opened_by text not null,
          role text not null,
          target_kind text not null,
          target_id text not null,
          target_name text not null,
          agent_id text not null,
          client_address text not null default '',
          cols integer not null,
          rows integer not null,
          started_at timestamptz not null default now(),
          ended_at timestamptz,
          end_reason text not null default '',
          output_bytes bigint not null default 0
        );
        create index terminal_sessions_started on terminal_sessions (started_at desc, id desc);
        create table terminal_recording_chunks (
          session_id text not null references terminal_sessions (id),
          seq integer not null,
          events text not null,
          primary key (session_id, seq)
        );
      `);
    },
  },
};

// PGlite's extended protocol takes one statement per query.
async function runStatements(db: Kysely<any>, script: string): Promise<void> {
  for (const statement of script.split(/;\s*\n/)) {
    if (statement.trim()) await sql.raw(statement).execute(db);
  }
}

export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return migrations;
  },
};
