/**
 * A small XML-RPC client (the LTA stager speaks XML-RPC): encode a methodCall, POST it, decode the
 * methodResponse or fault. Supports the types the spec defines; dateTime and base64 come back as strings.
 */
import http from 'node:http';
import https from 'node:https';

export type XmlRpcValue = string | number | boolean | null | XmlRpcValue[] | { [key: string]: XmlRpcValue };

export class XmlRpcFault extends Error {
  constructor(
    readonly faultCode: number,
    readonly faultString: string,
  ) {
    super(`XML-RPC fault ${faultCode}: ${faultString}`);
  }
}

export interface XmlRpcOptions {
  /** Value of the Authorization header */
  authorization?: string;
  signal?: AbortSignal;
}

export async function xmlRpcCall(url: string, method: string, params: XmlRpcValue[], opts: XmlRpcOptions = {}): Promise<XmlRpcValue> {
  const body = `<?xml version="1.0"?>\n<methodCall><methodName>${escapeXml(method)}</methodName><params>${params
    .map((p) => `<param>${encodeValue(p)}</param>`)
    .join('')}</params></methodCall>`;
  const target = new URL(url);
  const res = await post(target, body, opts);
  if (res.status !== 200) throw new Error(`${method}: HTTP ${res.status}${res.status === 401 ? ' (check the stager user and password)' : ''}`);
  return decodeResponse(res.body);
}

function post(url: URL, body: string, opts: XmlRpcOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { 'Content-Type': 'text/xml', 'Content-Length': Buffer.byteLength(body) };
    if (opts.authorization) headers.Authorization = opts.authorization;
    const req = (url.protocol === 'https:' ? https : http).request(url, { method: 'POST', headers, signal: opts.signal }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export function encodeValue(v: XmlRpcValue): string {
  if (v === null) return '<value><nil/></value>';
  if (typeof v === 'string') return `<value><string>${escapeXml(v)}</string></value>`;
  if (typeof v === 'boolean') return `<value><boolean>${v ? 1 : 0}</boolean></value>`;
  if (typeof v === 'number') return Number.isInteger(v) ? `<value><int>${v}</int></value>` : `<value><double>${v}</double></value>`;
  if (Array.isArray(v)) return `<value><array><data>${v.map(encodeValue).join('')}</data></array></value>`;
  return `<value><struct>${Object.entries(v)
    .map(([k, x]) => `<member><name>${escapeXml(k)}</name>${encodeValue(x)}</member>`)
    .join('')}</struct></value>`;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function unescapeXml(s: string): string {
  return s.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-f]+);/gi, (_m, e: string) => {
    const named: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
    if (named[e.toLowerCase()]) return named[e.toLowerCase()]!;
    return String.fromCodePoint(e[1]?.toLowerCase() === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
  });
}

interface XmlNode {
  name: string;
  children: XmlNode[];
  text: string;
}

/** Elements and text only: enough for XML-RPC (no attributes are meaningful there). */
function parseXml(xml: string): XmlNode {
  const root: XmlNode = { name: '#root', children: [], text: '' };
  const stack: XmlNode[] = [root];
  const re = /<!\[CDATA\[([\s\S]*?)\]\]>|<!--[\s\S]*?-->|<\?[\s\S]*?\?>|<(\/?)([A-Za-z_][\w.:-]*)[^>]*?(\/?)>|([^<]+)/g;
  for (const m of xml.matchAll(re)) {
    const top = stack[stack.length - 1]!;
    if (m[1] !== undefined) top.text += m[1];
    else if (m[3] !== undefined) {
      const name = m[3].replace(/^.*:/, '');
      if (m[2]) {
        if (stack.length > 1) stack.pop();
      } else {
        const node: XmlNode = { name, children: [], text: '' };
        top.children.push(node);
        if (!m[4]) stack.push(node);
      }
    } else if (m[5] !== undefined) top.text += unescapeXml(m[5]);
  }
  return root;
}

function child(node: XmlNode, name: string): XmlNode | undefined {
  return node.children.find((c) => c.name === name);
}

function decodeValue(value: XmlNode): XmlRpcValue {
  const typed = value.children[0];
  if (!typed) return value.text; // untyped value: a string
  switch (typed.name) {
    case 'string':
    case 'dateTime.iso8601':
      return typed.text;
    case 'base64':
      return Buffer.from(typed.text.trim(), 'base64').toString('utf8');
    case 'int':
    case 'i4':
    case 'i8':
    case 'double':
      return Number(typed.text.trim());
    case 'boolean':
      return typed.text.trim() === '1';
    case 'nil':
      return null;
    case 'array':
      return (child(typed, 'data')?.children ?? []).filter((c) => c.name === 'value').map(decodeValue);
    case 'struct': {
      const out: Record<string, XmlRpcValue> = {};
      for (const member of typed.children.filter((c) => c.name === 'member')) {
        const name = child(member, 'name')?.text ?? '';
        const v = child(member, 'value');
        out[name] = v ? decodeValue(v) : null;
      }
      return out;
    }
    default:
      throw new Error(`XML-RPC: unknown value type <${typed.name}>`);
  }
}

export function decodeResponse(xml: string): XmlRpcValue {
  const response = child(parseXml(xml), 'methodResponse');
  if (!response) throw new Error('XML-RPC: the answer is not a methodResponse');
  const fault = child(response, 'fault');
  if (fault) {
    const v = child(fault, 'value');
    const f = (v ? decodeValue(v) : {}) as Record<string, XmlRpcValue>;
    throw new XmlRpcFault(Number(f.faultCode ?? 0), String(f.faultString ?? 'unknown fault'));
  }
  const value = child(child(child(response, 'params') ?? response, 'param') ?? response, 'value');
  return value ? decodeValue(value) : null;
}
