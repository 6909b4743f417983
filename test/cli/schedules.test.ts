/**
 * `srlm schedule describe` shows the calendar as a person writes it (cron lines, intervals),
 * also for a schedule made without srlm (no memo), as the real dev server returns it.
 */
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeSchedule } from '../../cli/schedules';
import { testTemporalAddress } from '../helpers/temporal';
import { scheduleId, TASK_QUEUES } from '../../workflows/contract';

let connection: Connection;
let client: Client;

describe('schedule describe', () => {
  beforeAll(async () => {
    connection = await Connection.connect({ address: testTemporalAddress() });
    client = new Client({ connection });
  });
  afterAll(async () => connection?.close());

  it('turns the server calendars and intervals back into cron lines and durations', async () => {
    const name = `calendar-${process.pid}`;
    const handle = await client.schedule.create({
      scheduleId: scheduleId(name),
      spec: { cronExpressions: ['0 3 * * 1', '*/15 9-17 * * 1-5', '30 6 1 1,7 *'], intervals: [{ every: '36h' }] },
      action: { type: 'startWorkflow', workflowType: 'srlmRun', taskQueue: TASK_QUEUES.orchestration, args: [{}] },
      state: { paused: true },
    });
    try {
      const d = await describeSchedule(client, name);
      expect(d.spec).toBe('cron "0 3 * * 1"; cron "*/15 9-17 * * 1-5"; cron "30 6 1 1,7 *"; every 1d12h');
      expect(d.spec).not.toContain('{');
    } finally {
      await handle.delete();
    }
  });
});
