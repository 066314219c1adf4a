/** TLS material for https transfers: the grid proxy as client certificate, the grid CAs as trust. */
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import type { TlsMaterial } from './transfer/http.js';
import { proxyTlsCredentials, readProxy } from './proxy.js';

/** Builds the per-request TLS material; CAs are read once, the proxy each time (it may be renewed). */
export function gridTls(proxyFile: () => string, env: NodeJS.ProcessEnv = process.env): () => TlsMaterial {
  let ca: string[] | undefined;
  return () => {
    ca ??= gridCas(env.X509_CERT_DIR || '/etc/grid-security/certificates');
    const material: TlsMaterial = ca.length > 0 ? { ca: [...tls.rootCertificates, ...ca] } : {};
    const file = proxyFile();
    try {
      if (readProxy(file).secondsLeft > 0) Object.assign(material, proxyTlsCredentials(file));
    } catch {
      // No usable proxy: plain https (the preflight decides whether a proxy is required).
    }
    return material;
  };
}

function gridCas(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => n.endsWith('.pem') || /\.\d+$/.test(n)).map((n) => fs.readFileSync(path.join(dir, n), 'utf8'));
}
