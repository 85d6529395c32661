/** Shared by the routes tests that start HAProxy. */
import net from 'node:net';

/** A TCP port free on 127.0.0.1 right now (HAProxy's frontend binds it next). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}
