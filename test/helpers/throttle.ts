/**
 * A TCP relay on loopback that slows what clients send to `target` to `bytesPerS` (answers pass
 * at full speed): a long upload on a fast machine, for credentials that expire during it.
 */
import net from 'node:net';

export interface Throttle {
  url: string;
  close(): Promise<void>;
}

export async function startThrottle(targetPort: number, bytesPerS: number): Promise<Throttle> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    sockets.add(client).add(upstream);
    const started = Date.now();
    let sent = 0;
    client.on('data', (chunk: Buffer) => {
      sent += chunk.length;
      upstream.write(chunk);
      // Ahead of the allowed pace: stop reading until the clock catches up.
      const aheadMs = (sent / bytesPerS) * 1000 - (Date.now() - started);
      if (aheadMs > 0) {
        client.pause();
        setTimeout(() => client.resume(), aheadMs);
      }
    });
    client.on('end', () => upstream.end());
    upstream.pipe(client);
    const done = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
