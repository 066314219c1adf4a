/**
 * One changes-feed watcher per database and credential, shared by every open page: each page holds
 * a Server-Sent Events stream and is told "changed" at most once a second, so a hundred viewers cost
 * the database one longpoll, not a hundred polls.
 */
import type http from 'node:http';
import type { PoolReader } from '../status/reader.js';
import { watchChanges } from '../status/watch.js';

const HEARTBEAT_MS = 20_000;

interface Channel {
  clients: Set<http.ServerResponse>;
  controller: AbortController;
}

export class LiveChannels {
  private readonly channels = new Map<string, Channel>();
  private readonly changeListeners: ((key: string) => void)[] = [];

  /** Called with the channel's key when its pool changed, just before the pages are told. */
  onPoolChange(listener: (key: string) => void): void {
    this.changeListeners.push(listener);
  }

  /** Keeps `res` open as an SSE stream until the page goes away. */
  subscribe(key: string, reader: PoolReader, res: http.ServerResponse): void {
    let channel = this.channels.get(key);
    if (!channel) {
      const controller = new AbortController();
      const created: Channel = { clients: new Set(), controller };
      channel = created;
      this.channels.set(key, created);
      void watchChanges(reader, {
        signal: controller.signal,
        throttleMs: 1000,
        onChange: () => {
          for (const listener of this.changeListeners) listener(key);
          this.broadcast(created, 'change', { time: Date.now() });
        },
        onError: () => this.broadcast(created, 'feed-error', { time: Date.now() }),
      });
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    res.write('retry: 3000\n\n');
    channel.clients.add(res);
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
    const leave = () => {
      clearInterval(heartbeat);
      const ch = this.channels.get(key);
      if (!ch) return;
      ch.clients.delete(res);
      if (ch.clients.size === 0) {
        ch.controller.abort();
        this.channels.delete(key);
      }
    };
    // Not req's 'close': that fires once the (empty) request body is read, not when the page leaves.
    res.on('close', leave);
  }

  closeAll(): void {
    for (const ch of this.channels.values()) {
      ch.controller.abort();
      for (const res of ch.clients) res.end();
    }
    this.channels.clear();
  }

  private broadcast(channel: Channel, event: string, data: unknown): void {
    const text = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const res of channel.clients) res.write(text);
  }
}
