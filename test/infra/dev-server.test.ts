import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { freePort, isTemporalReachable, runningDevServer, startDevServer, type DevServerHandle } from '../../infra/dev-server';
import { loadEnvPaths } from '../../infra/paths';
import { testTemporalAddress } from '../helpers/temporal';

describe('global setup dev server', () => {
  it('answers, and its address reaches the test worker both ways', async () => {
    const address = testTemporalAddress();
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(process.env.SRLM_TEST_TEMPORAL_ADDRESS).toBe(address);
    expect(await isTemporalReachable(address, 2000, 'default')).toBe(true);
  });
});

describe('isTemporalReachable', () => {
  it('is false, quickly, where nothing listens', async () => {
    const port = await freePort();
    const t0 = Date.now();
    expect(await isTemporalReachable(`127.0.0.1:${port}`, 1000)).toBe(false);
    expect(Date.now() - t0).toBeLessThan(3000);
  });
});

describe('startDevServer', () => {
  let dir: string;
  let temporalBin: string;
  const servers: DevServerHandle[] = [];

  beforeAll(() => {
    temporalBin = loadEnvPaths().temporal;
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-dev-server-test-'));
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('starts on a fresh db and stops', async () => {
    const dbFile = path.join(dir, 'fresh', 'temporal.db');
    const s = await startDevServer({ temporalBin, dbFile, uiPort: false });
    servers.push(s);
    expect(s.uiUrl).toBeUndefined();
    expect(await isTemporalReachable(s.address, 2000, 'default')).toBe(true);
    expect(runningDevServer(dbFile)?.pid).toBe(s.pid);
    await s.stop();
    expect(await isTemporalReachable(s.address, 1000)).toBe(false);
    expect(runningDevServer(dbFile)).toBeUndefined();
    expect(() => process.kill(s.pid, 0)).toThrow();
    await s.stop(); // idempotent
  });

  it('refuses a second server on the same db, and a busy port', async () => {
    const dbFile = path.join(dir, 'guard', 'temporal.db');
    const s = await startDevServer({ temporalBin, dbFile, uiPort: false });
    servers.push(s);
    await expect(startDevServer({ temporalBin, dbFile, uiPort: false })).rejects.toThrow(/already has .* open/);
    const port = Number(s.address.split(':')[1]);
    await expect(startDevServer({ temporalBin, dbFile: path.join(dir, 'other', 'temporal.db'), port, uiPort: false })).rejects.toThrow(
      /in use/,
    );
    await s.stop();
  });

  it('keeps workflow executions across a restart on the same db', async () => {
    const dbFile = path.join(dir, 'persist', 'temporal.db');
    const namespace = 'srlm-test';
    const searchAttributes = { SrlmRunName: 'Keyword' } as const;
    const workflowId = `restart-${Date.now()}`;

    let s = await startDevServer({ temporalBin, dbFile, namespace, searchAttributes });
    servers.push(s);
    expect(s.uiUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    let connection = await Connection.connect({ address: s.address });
    try {
      const client = new Client({ connection, namespace });
      // Nobody polls this task queue: the execution stays Running.
      await client.workflow.start('nobodyPollsThis', { taskQueue: 'srlm-test-nobody', workflowId, args: [1] });
    } finally {
      await connection.close();
    }
    await s.stop();

    s = await startDevServer({ temporalBin, dbFile, namespace, searchAttributes, uiPort: false });
    servers.push(s);
    connection = await Connection.connect({ address: s.address });
    try {
      const client = new Client({ connection, namespace });
      const desc = await client.workflow.getHandle(workflowId).describe();
      expect(desc.type).toBe('nobodyPollsThis');
      expect(desc.status.name).toBe('RUNNING');
      const ids: string[] = [];
      for await (const wf of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) ids.push(wf.workflowId);
      expect(ids).toEqual([workflowId]);
    } finally {
      await connection.close();
    }
    await s.stop();
  });
});
