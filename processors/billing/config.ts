/**
 * Billing's settings, as the processor takes them. They come from the config file's
 * `redis.url`, `kafka.topicPrefix`, `dataDir` and `processors.priceList` /
 * `processors.reportPeriods` (validated with the rest of the config in app/config.ts);
 * the composition root maps them here, so billing never sees the whole config.
 */
import type { PeriodKind } from './calendar.js';

export interface BillingConfig {
  /** bullmq's Redis (`redis.url`, env `REDIS_URL`). Default `redis://127.0.0.1:6379`. */
  redisUrl: string;
  /** The bullmq queue of ticks and report jobs: `<kafka.topicPrefix>billing` (env `LOGMETER_TOPIC_PREFIX`). Default `logmeter.billing`. */
  queue: string;
  /** Price list file (`processors.priceList`, env `LOGMETER_PRICE_LIST`). Default `config/prices.yaml`. */
  priceList?: string | undefined;
  /** Periods reported on a schedule (`processors.reportPeriods`). Default `['hourly', 'daily']`. */
  reportPeriods: readonly PeriodKind[];
  /** Root of the report files, `<reportsDir>/<tenant>/<label>.csv|.json`: `<dataDir>/reports` (env `LOGMETER_DATA_DIR`). Default `./data/reports`. */
  reportsDir: string;
}
