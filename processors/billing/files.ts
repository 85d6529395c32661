/**
 * Report files: `<dir>/<tenant>/<label>.csv` and `.json`. A tenant name never leaves its
 * directory, and a reader never sees half a file (each is written to a temporary file,
 * synced, and renamed over the old one).
 */
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { renderCsv, renderJson } from './render.js';
import type { Report } from './report.js';

/**
 * A tenant name as one safe path segment: letters, digits, `.`, `_`, `-` and the like
 * stay, anything else (`/` included) is percent-encoded, and `.`/`..` are spelled out.
 */
export function tenantDirName(tenant: string): string {
  const enc = encodeURIComponent(tenant);
  return enc === '.' || enc === '..' ? enc.replaceAll('.', '%2E') : enc;
}

/** Where a report's files go under `dir`: `<dir>/<tenant>/<label>.csv` and `.json`. */
export function reportPaths(dir: string, report: Report): { csv: string; json: string } {
  const base = path.join(dir, tenantDirName(report.tenant), report.period.label);
  return { csv: `${base}.csv`, json: `${base}.json` };
}

async function writeAtomically(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Writes the report's CSV, then its JSON, under `dir`; returns their paths. */
export async function writeReportFiles(dir: string, report: Report): Promise<{ csv: string; json: string }> {
  const files = reportPaths(dir, report);
  await mkdir(path.dirname(files.csv), { recursive: true });
  await writeAtomically(files.csv, renderCsv(report));
  await writeAtomically(files.json, renderJson(report));
  return files;
}
