/**
 * The local stack: Docker, Redis, Kafka and HAProxy, in the order `up` brings them.
 */
import type { BaseConfig as Config } from '../config.js';
import { dockerService } from './docker.js';
import { haproxyService } from './haproxy.js';
import { kafkaService } from './kafka.js';
import { redisService } from './redis.js';
import type { ServiceStatus, StackService } from './service.js';

export type { ServiceStatus, StackService };

export function stackServices(config: Config): StackService[] {
  return [dockerService(config.docker.host), redisService(config.redis.url), kafkaService(config.kafka.brokers[0]!), haproxyService()];
}

export function formatStatus(rows: ServiceStatus[]): string {
  const table = [['SERVICE', 'STATE', 'STARTED BY', 'WHERE', 'PID', 'SINCE', 'DETAIL']];
  for (const r of rows) {
    table.push([
      r.name,
      r.state,
      r.state === 'running' ? (r.managed ? 'logmeter' : 'other') : '-',
      r.where,
      r.pid ? String(r.pid) : '-',
      r.since ? r.since.toISOString().replace(/\.\d+Z$/, 'Z') : '-',
      r.detail ?? '',
    ]);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  return `${table.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n')}\n`;
}
