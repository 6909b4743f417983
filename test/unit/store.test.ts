import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LocalStore } from '../../store/store';
import { storeContract } from '../helpers/store-contract';

storeContract('LocalStore', async () => new LocalStore(fs.mkdtempSync(path.join(os.tmpdir(), 'srlm-local-store-'))), {
  largeFileBytes: 3 * 1024 * 1024,
});
