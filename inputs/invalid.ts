/**
 * The one way to fail on bad input (a run config, a data file, an activity's arguments): a
 * non-retryable Temporal failure whose message says what and where, since retrying cannot fix
 * it. The type names the kind (the workflows list them as non-retryable).
 */
import { ApplicationFailure } from '@temporalio/common';

export type InvalidKind = 'InvalidConfig' | 'InvalidData' | 'InvalidInput' | 'NoPreferencePairs' | 'NoPrompts';

export function invalid(message: string, type: InvalidKind = 'InvalidInput'): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, type);
}
