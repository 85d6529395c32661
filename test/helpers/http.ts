/**
 * HTTP through the load balancer in tests: a GET with a chosen Host header (fetch()
 * would not send one), answered with its status and trimmed body.
 */
import http from 'node:http';

export interface HttpAnswer {
  status: number;
  body: string;
}

export function getWithHost(o: { port: number; host: string; path?: string; agent?: http.Agent; timeoutMs?: number }): Promise<HttpAnswer> {
  const timeoutMs = o.timeoutMs ?? 3000;
  return new Promise((resolve, reject) => {
    const r = http.request({ host: '127.0.0.1', port: o.port, path: o.path ?? '/', headers: { host: o.host }, agent: o.agent, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: body.trim() }));
      res.on('error', reject);
    });
    r.on('timeout', () => r.destroy(new Error(`timed out after ${timeoutMs} ms`)));
    r.on('error', reject);
    r.end();
  });
}
