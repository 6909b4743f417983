/**
 * Importers for public seed data: OpenAssistant `*.trees.jsonl` exports (IFT examples and
 * human-ranked reply sets, first turn only) and Self-Instruct seed tasks.
 */
import { z } from 'zod';
import { parseJsonl } from './jsonl';
import { IftExample, RankedSet } from './schemas';

// ---------------------------------------------------------------------------------------
// OASST
// ---------------------------------------------------------------------------------------

export interface OasstMessage {
  message_id: string;
  parent_id: string | null;
  text: string;
  role: 'prompter' | 'assistant';
  lang: string;
  rank?: number | null;
  deleted?: boolean;
  review_result?: boolean | null;
  synthetic?: boolean;
  replies?: OasstMessage[];
}

/** The fields the importer reads; the export's other fields (user_id, emojis, ...) pass. */
export const OasstMessage: z.ZodType<OasstMessage> = z.lazy(() =>
  z.looseObject({
    message_id: z.string().min(1),
    parent_id: z.string().nullable(),
    text: z.string(),
    role: z.enum(['prompter', 'assistant']),
    lang: z.string(),
    rank: z.number().int().nonnegative().nullable().optional(),
    deleted: z.boolean().optional(),
    review_result: z.boolean().nullable().optional(),
    synthetic: z.boolean().optional(),
    replies: z.array(OasstMessage).optional(),
  }),
);

export const OasstTree = z.looseObject({
  message_tree_id: z.string().min(1),
  tree_state: z.string(),
  prompt: OasstMessage,
});
export type OasstTree = z.infer<typeof OasstTree>;

export const OASST_SKIP_REASONS = [
  /** root message in another language */
  'other_lang',
  'root_deleted',
  /** root failed human review (review_result false) */
  'root_failed_review',
  'root_not_prompter',
  'empty_prompt',
  /** no usable rank-0 reply: no IFT example from this tree */
  'no_rank0_reply',
  /** fewer than 2 usable ranked replies: no ranked set from this tree */
  'fewer_than_2_ranked',
] as const;
export type OasstSkipReason = (typeof OASST_SKIP_REASONS)[number];

export interface OasstImport {
  ift: IftExample[];
  ranked: RankedSet[];
  stats: { trees: number; roots: number; ift: number; ranked: number; skipped: Record<OasstSkipReason, number> };
}

/**
 * First turn of each tree: a root prompter message in `lang`, not deleted, not failed in
 * review. Its IFT example pairs it with its rank-0 assistant reply; its ranked set holds
 * its assistant replies that carry a human rank, renumbered 0..k-1 in rank order, when
 * there are at least two. A reply is usable when it is an assistant message in `lang`,
 * not deleted, not failed in review and not empty.
 */
export function importOasstTrees(text: string, file: string, opts: { lang: string }): OasstImport {
  const trees = parseJsonl(text, OasstTree, file);
  const skipped = Object.fromEntries(OASST_SKIP_REASONS.map((r) => [r, 0])) as Record<OasstSkipReason, number>;
  const ift: IftExample[] = [];
  const ranked: RankedSet[] = [];
  let roots = 0;
  for (const tree of trees) {
    const root = tree.prompt;
    const reason =
      root.lang !== opts.lang
        ? 'other_lang'
        : root.deleted === true
          ? 'root_deleted'
          : root.review_result === false
            ? 'root_failed_review'
            : root.role !== 'prompter'
              ? 'root_not_prompter'
              : root.text.trim() === ''
                ? 'empty_prompt'
                : null;
    if (reason !== null) {
      skipped[reason]++;
      continue;
    }
    roots++;
    const id = `oasst-${root.message_id}`;
    const usable = (root.replies ?? []).filter(
      (r) => r.role === 'assistant' && r.lang === opts.lang && r.deleted !== true && r.review_result !== false && r.text.trim() !== '',
    );
    const withRank = usable.filter((r): r is OasstMessage & { rank: number } => typeof r.rank === 'number').sort((a, b) => a.rank - b.rank);

    const best = withRank.find((r) => r.rank === 0);
    if (best) ift.push(IftExample.parse({ id, prompt: root.text, response: best.text, source: 'oasst' }));
    else skipped.no_rank0_reply++;

    if (withRank.length >= 2) {
      ranked.push(
        RankedSet.parse({ id, prompt: root.text, replies: withRank.map((r, k) => ({ text: r.text, rank: k })), source: 'oasst' }),
      );
    } else skipped.fewer_than_2_ranked++;
  }
  return { ift, ranked, stats: { trees: trees.length, roots, ift: ift.length, ranked: ranked.length, skipped } };
}

// ---------------------------------------------------------------------------------------
// Self-Instruct seed tasks
// ---------------------------------------------------------------------------------------

export const SelfInstructSeedTask = z.looseObject({
  id: z.string().min(1).optional(),
  name: z.string().min(1),
  instruction: z.string().min(1),
  instances: z.array(z.strictObject({ input: z.string(), output: z.string().min(1) })).min(1),
  is_classification: z.boolean(),
});
export type SelfInstructSeedTask = z.infer<typeof SelfInstructSeedTask>;

/**
 * One IftExample per instance: prompt = instruction, plus a blank line and the input when
 * there is one; response = the output. Id: the task's `id` (or `self-instruct-<name>`),
 * suffixed `-<k>` for all but the first instance.
 */
export function importSelfInstructSeeds(text: string, file: string): IftExample[] {
  const out: IftExample[] = [];
  for (const task of parseJsonl(text, SelfInstructSeedTask, file)) {
    const base = task.id ?? `self-instruct-${task.name}`;
    task.instances.forEach((inst, k) => {
      const input = inst.input.trim();
      out.push(
        IftExample.parse({
          id: k === 0 ? base : `${base}-${k}`,
          prompt: task.instruction.trim() + (input ? `\n\n${input}` : ''),
          response: inst.output,
          source: 'self-instruct',
        }),
      );
    });
  }
  return out;
}
