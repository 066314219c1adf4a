/**
 * Servers that take connections and never answer, as a stuck proxy or load balancer does: one that
 * is silent from the start, and a TCP relay to a real server that can fall silent and come back.
 */
import net from 'node:net';

export interface SilentServer {
  port: number;
  close(): Promise<void>;
}

/** Accepts every connection, reads what is sent, answers nothing. */
export async function silentServer(): Promise<SilentServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      sockets.forEach((s) => s.destroy());
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface FreezingRelay {
  /** the relay's URL for a URL of the real server (same path and credentials) */
  url(target: string): string;
  /** stop passing bytes either way (connections stay open and new ones are taken) */
  freeze(): void;
  thaw(): void;
  close(): Promise<void>;
}

/** Relays TCP to `target`'s host and port; while frozen it holds everything, as a hung proxy would. */
export async function freezingRelay(target: string): Promise<FreezingRelay> {
  const to = new URL(target);
  let frozen = false;
  const pairs = new Set<[net.Socket, net.Socket]>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(to.port), to.hostname);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    // Bytes that arrive while frozen are held back for good: a thawed relay serves new requests.
    client.on('data', (c) => frozen || upstream.write(c));
    upstream.on('data', (c) => frozen || client.write(c));
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url(t) {
      const u = new URL(t);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString().replace(/\/$/, '');
    },
    freeze: () => (frozen = true),
    thaw: () => {
      frozen = false;
      // The connections that saw silence are the stuck ones; clients open new ones.
      for (const [c, u] of pairs) (c.destroy(), u.destroy());
    },
    close: async () => {
      for (const [c, u] of pairs) (c.destroy(), u.destroy());
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
