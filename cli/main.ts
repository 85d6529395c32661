/**
 * `logmeter` — the one command-line entry. Each command loads and validates the
 * config once, then hands the pieces to the component it runs.
 */
import { Command, Option } from 'commander';
import { ConfigError } from '../lib/config.js';
import { loadConfig, type Config } from '../app/config.js';
import { createLogger } from '../lib/logger.js';
import { LogmeterError, errorMessage } from '../lib/errors.js';
import { stackCommand } from './stack.js';
import { upCommand } from './up.js';
import { sqlCommand } from './sql.js';
import { schemasCommand } from './schemas.js';
import { collectorCommand } from './collector.js';
import { processorCommand } from './processor.js';
import { reportCommand } from './report.js';
import { apiCommand } from './api.js';
import { logsCommand } from './logs.js';
import { adminTokenCommand } from './admin-token.js';
import { withAdminTokenFile } from '../lib/admin-token.js';

const program = new Command()
  .name('logmeter')
  .description('Event-sourced log and metering pipeline for multi-tenant container clouds')
  .addOption(new Option('-c, --config <file>', 'YAML or JSON config file (also LOGMETER_CONFIG)'))
  .showHelpAfterError()
  .exitOverride();

/** Loads the config named by the global `--config` option; config errors exit 2 with every problem listed. */
export function config(): Config {
  return loadConfig({ file: program.opts<{ config?: string }>().config });
}

/** The config of a command that calls the running process: with the admin-token file's token when none is configured. */
function clientConfig(): Config {
  return withAdminTokenFile(config());
}

stackCommand(program, config);
upCommand(program, config);
sqlCommand(program, clientConfig);
schemasCommand(program);
collectorCommand(program, config);
processorCommand(program, config);
reportCommand(program, clientConfig);
apiCommand(program, config);
logsCommand(program, clientConfig);
adminTokenCommand(program, config);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const code = (err as { code?: string }).code;
  if (code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help') process.exit(0);
  if (typeof code === 'string' && code.startsWith('commander.')) process.exit(2);
  const log = createLogger('error', 2);
  if (err instanceof ConfigError) {
    process.stderr.write(`logmeter: ${err.message}\n`);
    process.exit(2);
  }
  if (err instanceof LogmeterError) {
    process.stderr.write(`logmeter: ${err.message}\n`);
    process.exit(1);
  }
  log.fatal({ err }, errorMessage(err));
  process.stderr.write(`logmeter: ${errorMessage(err)}\n`);
  process.exit(1);
}
