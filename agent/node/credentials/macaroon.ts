/**
 * Macaroons as dCache issues them (and StageIT hands them out): libmacaroons' V1 format, base64
 * (URL-safe or not, padded or not) of packets `<4 hex digits: packet length>key value\n`, keys
 * `location`, `identifier`, `cid` (a caveat), `vid`/`cl` (third-party caveats) and `signature` (32
 * raw bytes). The caveats are plain text and need no key to read: this reads the expiry
 * (`before:<ISO time>`) and the paths and activities a macaroon allows. It never verifies the
 * signature: that is the storage's business (the HMAC chain needs its root key).
 */

export interface Macaroon {
  location: string;
  identifier: string;
  /** First-party caveats in order, e.g. `activity:DOWNLOAD,LIST`, `path:/pnfs/…`, `before:2026-12-04T10:00:00.000Z` */
  caveats: string[];
  /** The earliest `before:` caveat */
  expiresAt?: Date;
}

export class MacaroonFormatError extends Error {}

/** The packets of a serialized macaroon, in order. */
export function macaroonPackets(serialized: string): Array<{ key: string; value: Buffer }> {
  const bytes = Buffer.from(serialized.trim().replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  const packets: Array<{ key: string; value: Buffer }> = [];
  for (let at = 0; at < bytes.length; ) {
    const len = Number.parseInt(bytes.toString('latin1', at, at + 4), 16);
    if (!Number.isInteger(len) || len < 6 || at + len > bytes.length || bytes[at + len - 1] !== 0x0a) throw new MacaroonFormatError('not a macaroon (V1 packet framing)');
    const body = bytes.subarray(at + 4, at + len - 1);
    const space = body.indexOf(0x20);
    if (space < 1) throw new MacaroonFormatError('not a macaroon (packet without a key)');
    packets.push({ key: body.toString('latin1', 0, space), value: body.subarray(space + 1) });
    at += len;
  }
  if (packets.at(-1)?.key !== 'signature') throw new MacaroonFormatError('not a macaroon (no signature)');
  return packets;
}

export function parseMacaroon(serialized: string): Macaroon {
  const packets = macaroonPackets(serialized);
  const text = (key: string) => packets.find((p) => p.key === key)?.value.toString('utf8') ?? '';
  const caveats = packets.filter((p) => p.key === 'cid').map((p) => p.value.toString('utf8'));
  const expiries = caveats
    .filter((c) => c.startsWith('before:'))
    .map((c) => new Date(c.slice('before:'.length)))
    .filter((d) => !Number.isNaN(d.getTime()));
  const expiresAt = expiries.length > 0 ? new Date(Math.min(...expiries.map((d) => d.getTime()))) : undefined;
  return { location: text('location'), identifier: text('identifier'), caveats, ...(expiresAt ? { expiresAt } : {}) };
}
