import * as fs from 'node:fs';
import * as path from 'node:path';
import { sha256Hex } from '../../store/store';

/** A checkpoint directory as the compute process leaves it: files, then manifest.json. */
export function localCheckpoint(dir: string, step: number): string {
  const d = path.join(dir, `local-${step}`);
  fs.mkdirSync(d, { recursive: true });
  const files = {
    'model.safetensors': `weights at ${step}`,
    'optimizer.pt': `adam at ${step}`,
    'trainer_state.json': JSON.stringify({ global_step: step }),
  };
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(d, name), text);
  const manifest = {
    kind: 'train-checkpoint',
    step,
    mode: 'sft',
    files: Object.entries(files).map(([p, text]) => ({ path: p, sha256: sha256Hex(text), bytes: Buffer.byteLength(text) })),
  };
  fs.writeFileSync(path.join(d, 'manifest.json'), JSON.stringify(manifest));
  return d;
}
