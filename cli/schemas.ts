/**
 * `logmeter schemas check | release`: the append-only schema manifest.
 */
import type { Command } from 'commander';
import { loadManifest } from '../schemas/registry.js';
import { releaseSchemas } from '../schemas/release.js';

export function schemasCommand(program: Command): void {
  const schemas = program.command('schemas').description('the Avro contracts and their manifest');
  schemas
    .command('check')
    .description('verify the manifest: ids, versions, released files unchanged')
    .action(() => {
      const entries = loadManifest();
      process.stdout.write(`${entries.length} schema versions, manifest ok\n`);
    });
  schemas
    .command('release')
    .description('append new .avsc versions to the manifest (each must read every earlier version)')
    .action(() => {
      const added = releaseSchemas();
      for (const e of added) process.stdout.write(`released ${e.file} as id ${e.id}\n`);
      if (added.length === 0) process.stdout.write('nothing to release\n');
    });
}
