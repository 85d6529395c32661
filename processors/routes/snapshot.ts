/**
 * The route table's snapshot file (`<stateDir>/table.json`): members with their health,
 * so an upstream taken out still comes back after a restart. Written whole to a temporary
 * file and renamed, so a crash leaves the old snapshot or the new one, never half of one.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from '../../lib/logger.js';
import { errorMessage } from '../../lib/errors.js';
import type { TableSnapshot } from './table.js';

/** The snapshot in `file`; `undefined` when there is none or it cannot be read (logged). */
export function readSnapshot(file: string, log: Logger): TableSnapshot | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const snap = JSON.parse(text) as TableSnapshot;
    if (!Array.isArray(snap.hosts) || !Array.isArray(snap.members)) throw new Error('not a table snapshot');
    return snap;
  } catch (err) {
    // The topic still has every published set; only out-of-rotation members are lost.
    log.warn({ file, err: errorMessage(err) }, 'table snapshot unreadable; starting from the routes topic alone');
    return undefined;
  }
}

/** Replaces `file` with `snap` (write, then rename). */
export function writeSnapshot(file: string, snap: TableSnapshot): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify(snap));
  renameSync(tmp, file);
}
