/**
 * `logmeter admin-token rotate`: a new operator token in `$LOGMETER_DATA_DIR/admin-token`;
 * a running process refuses the old one from its next request (lib/admin-token.ts).
 */
import type { Command } from 'commander';
import type { Config } from '../app/config.js';
import { rotateAdminToken } from '../lib/admin-token.js';

export function adminTokenCommand(program: Command, config: () => Config): void {
  const cmd = program.command('admin-token').description('the operator token kept in $LOGMETER_DATA_DIR/admin-token when LOGMETER_ADMIN_TOKEN is unset');
  cmd
    .command('rotate')
    .description('write a new token (mode 0600); the old one is refused at once')
    .action(() => {
      const file = rotateAdminToken(config());
      process.stdout.write(`logmeter: new operator token in ${file}\n`);
    });
}
