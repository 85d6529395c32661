/**
 * The noisy-neighbour load (bench/noisy-neighbor.ts, bench/noisy-stages.ts): `loud`
 * flooding tenants next to one quiet tenant that prints a numbered line every 100 ms.
 *
 * Busybox cannot print at exactly N lines/s: a flood prints a batch of N/10 lines (`cat`
 * of a file) then sleeps 0.1 s, so it offers somewhat less than N.
 */
import path from 'node:path';
import type { BenchContainerSpec } from './containers.js';
import { writeLinesFile } from './lines.js';

export interface NoisyLoad {
  specs: BenchContainerSpec[];
  quietTenant: string;
  /** Every flooding tenant's name starts with this. */
  loudPrefix: string;
  /** Lines the quiet tenant prints. */
  quietLines: number;
  /** The quiet tenant's line `i` reads `${quietText} ${i} end` (the end mark keeps the number apart from the bytes after it). */
  quietText: string;
}

export function noisyLoad(o: {
  runId: string;
  labelPrefix: string;
  /** Names this phase's tenants (unique per phase). */
  tag: string;
  loud: number;
  seconds: number;
  /** Lines per second each flood prints. */
  loudRate: number;
  lineBytes: number;
  /** Where the flood's batch file is written. */
  dir: string;
  seed: number;
}): NoisyLoad {
  const quietLines = o.seconds * 10;
  const batch = Math.max(1, Math.round(o.loudRate / 10));
  const file = path.join(o.dir, `flood-${batch}.txt`);
  writeLinesFile(file, batch, o.lineBytes, 1, o.seed);
  const quietTenant = `${o.tag}-quiet`;
  const quietText = `${o.tag} quiet line`;
  return {
    specs: [
      ...Array.from({ length: o.loud }, (_, i) => ({
        runId: o.runId,
        labelPrefix: o.labelPrefix,
        tenant: `${o.tag}-loud${i}`,
        app: 'flood',
        script: `i=0; while [ $i -lt ${o.seconds * 10} ]; do cat /bench/batch.txt; sleep 0.1; i=$((i+1)); done; exec sleep 3600`,
        binds: [`${file}:/bench/batch.txt:ro`],
      })),
      { runId: o.runId, labelPrefix: o.labelPrefix, tenant: quietTenant, app: 'quiet', script: `i=0; while [ $i -lt ${quietLines} ]; do echo "${quietText} $i end"; sleep 0.1; i=$((i+1)); done; exec sleep 3600` },
    ],
    quietTenant,
    loudPrefix: `${o.tag}-loud`,
    quietLines,
    quietText,
  };
}
