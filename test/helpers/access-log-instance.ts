/**
 * One access-log parser instance as a child process (see instance.ts):
 * `node --import tsx test/helpers/access-log-instance.ts`, built from the config in its
 * environment as the pipeline builds it (routing by the autoscale lbApp and the label
 * prefix). SIGTERM stops it.
 */
import { startAccessLogParser } from '../../processors/access-log/processor.js';
import { runInstance } from './instance.js';

await runInstance(({ config, bus, logger, registry }) =>
  startAccessLogParser({ bus, logger, registry, routing: { lbApp: config.autoscale.lbApp, labelPrefix: config.labelPrefix } }),
);
