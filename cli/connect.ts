/**
 * Reaching Temporal from the CLI, failing in seconds with the fix: no server at the address
 * (within about 3 s), or no worker polling the task queue a command waits on (DescribeTaskQueue
 * pollers, within about 5 s), instead of the SDK's retries ending in "Failed to connect before
 * the deadline" or "Failed to query Workflow" half a minute later.
 */
import * as net from 'node:net';
import type { Client, Connection } from '@temporalio/client';
import type { TemporalSettings } from '../infra/connection';
import { ConfigError } from './config';

/** An error the CLI reports with a kind (`--json`: {"error": {"kind", "message"}}). */
export class OperatorError extends ConfigError {
  constructor(
    readonly kind: 'no-server' | 'no-worker',
    message: string,
  ) {
    super(message);
  }
}

export const CONNECT_TIMEOUT_MS = 3000;
const DESCRIBE_TIMEOUT_MS = 4000;

/** The command that starts a worker for `queue`, as a person types it. */
export function workerCommand(queue: string): string {
  const name = queue.replace(/^srlm-/, '').replace(/@.*$/, '');
  return `npx tsx workers/main.ts --queues ${name}`;
}

/** Connects, or throws an OperatorError naming the address and how to start a server. */
export async function connectOrExplain(settings: TemporalSettings): Promise<Connection> {
  const { Connection } = await import('@temporalio/client');
  try {
    // a refused or unroutable address fails here at once, before the SDK's connect retries
    await tcpReachable(settings.address, CONNECT_TIMEOUT_MS);
    return await Connection.connect({ ...settings.connectionOptions, connectTimeout: CONNECT_TIMEOUT_MS });
  } catch (err) {
    const why = (err as Error).message;
    throw new OperatorError(
      'no-server',
      `no Temporal server answers at ${settings.address} (namespace ${settings.namespace}; ${why}). Start one: \`npm start\` (the embedded stack, which \`srlm run\` also starts) or \`temporal server start-dev\`; or point TEMPORAL_ADDRESS (or the temporal CLI profile) at yours`,
    );
  }
}

/** Resolves once a TCP connection to host:port opens; rejects naming why (refused, timed out). */
function tcpReachable(address: string, timeoutMs: number): Promise<void> {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address);
  if (!m) return Promise.resolve(); // let the SDK judge an address it understands and we do not
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: m[1]!, port: Number(m[2]) });
    const done = (err?: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => done(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
    socket.once('connect', () => done());
    socket.once('error', (e: NodeJS.ErrnoException) => done(new Error(e.code ?? e.message)));
  });
}

/** Workers polling the workflow tasks of `queue` (0: nobody would run a query or a workflow). */
export async function workflowPollers(client: Client, queue: string): Promise<number> {
  const { temporal } = (await import('@temporalio/proto')).default;
  const res = await client.connection.withDeadline(Date.now() + DESCRIBE_TIMEOUT_MS, () =>
    client.workflowService.describeTaskQueue({
      namespace: client.options.namespace,
      taskQueue: { name: queue, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
      taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    }),
  );
  return res.pollers?.length ?? 0;
}

/** The message for a queue nobody polls. */
export function noWorkerMessage(queue: string, address: string, what: string): string {
  return `no worker polls task queue ${queue} at ${address}, so ${what}. Start one: \`${workerCommand(queue)}\` (or \`srlm run\`, which runs its own workers)`;
}

/** Throws an OperatorError when no worker polls `queue`: `what` is what cannot happen without one. */
export async function requireWorker(client: Client, queue: string, address: string, what: string): Promise<void> {
  if ((await workflowPollers(client, queue)) === 0) throw new OperatorError('no-worker', noWorkerMessage(queue, address, what));
}
