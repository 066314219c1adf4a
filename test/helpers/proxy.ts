/**
 * Test grid proxies made with openssl: a CA, a user certificate signed by it, and RFC 3820 proxy
 * certificates signed by the user (proxyCertInfo extension, subject = user DN + /CN=<number>),
 * written the way voms-proxy-init writes them: proxy cert, proxy key, user cert; mode 0600.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const USER_DN = '/DC=org/DC=tokenpool-test/O=LOFAR/CN=Jane Tester';

export interface TestCa {
  dir: string;
  /** CA certificate (PEM file) */
  caFile: string;
  /**
   * Writes a proxy valid from notBefore to notAfter (default: now-5 min … now+12 h) to `file`
   * and returns its path; of USER_DN, or of `userDn` (a user certificate for it made once).
   */
  makeProxy(file: string, opts?: { notBefore?: Date; notAfter?: Date; mode?: number; userDn?: string }): string;
  /**
   * A server certificate for 127.0.0.1 signed by the CA, written in `dir`, and a `certificates`
   * directory there trusting the CA (as /etc/grid-security/certificates does: for X509_CERT_DIR).
   */
  makeHost(dir: string): { key: Buffer; cert: Buffer; certDir: string };
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** OpenSSL's -startdate/-enddate form: YYYYMMDDHHMMSSZ */
function asn1Time(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z');
}

export function createTestCa(dir: string): TestCa {
  fs.mkdirSync(path.join(dir, 'newcerts'), { recursive: true });
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '30', '-subj', '/DC=org/DC=tokenpool-test/CN=Tokenpool Test CA'], dir);
  fs.writeFileSync(path.join(dir, 'user.ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n');
  const users = new Map<string, string>();
  /** The user certificate for a DN: `<name>.pem` and `<name>.key` in dir. */
  const user = (dn: string): string => {
    let name = users.get(dn);
    if (name) return name;
    name = users.size === 0 ? 'user' : `user${users.size}`;
    openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', dn], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '30', '-extfile', 'user.ext'], dir);
    users.set(dn, name);
    return name;
  };
  user(USER_DN);
  fs.writeFileSync(path.join(dir, 'index.txt'), '');
  fs.writeFileSync(path.join(dir, 'serial'), '1000\n');
  fs.writeFileSync(
    path.join(dir, 'proxy-ca.cnf'),
    `[ ca ]
default_ca = proxyca
[ proxyca ]
dir = ${dir}
database = ${dir}/index.txt
new_certs_dir = ${dir}/newcerts
serial = ${dir}/serial
default_md = sha256
policy = anything
unique_subject = no
email_in_dn = no
[ anything ]
domainComponent = optional
organizationName = optional
commonName = supplied
[ proxy_ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
proxyCertInfo = critical,language:id-ppl-inheritAll
`,
  );
  let n = 0;
  return {
    dir,
    caFile: path.join(dir, 'ca.pem'),
    makeProxy(file, opts = {}) {
      n++;
      const notBefore = opts.notBefore ?? new Date(Date.now() - 5 * 60_000);
      const notAfter = opts.notAfter ?? new Date(Date.now() + 12 * 3600_000);
      const cn = String(100000 + n);
      const dn = opts.userDn ?? USER_DN;
      const issuer = user(dn);
      openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `proxy${n}.key`, '-out', `proxy${n}.csr`, '-subj', `${dn}/CN=${cn}`], dir);
      openssl(
        ['ca', '-batch', '-config', 'proxy-ca.cnf', '-cert', `${issuer}.pem`, '-keyfile', `${issuer}.key`, '-in', `proxy${n}.csr`, '-out', `proxy${n}.pem`,
          '-startdate', asn1Time(notBefore), '-enddate', asn1Time(notAfter), '-extensions', 'proxy_ext', '-preserveDN', '-notext'],
        dir,
      );
      const pem = ['proxy' + n + '.pem', 'proxy' + n + '.key', `${issuer}.pem`].map((f) => fs.readFileSync(path.join(dir, f), 'utf8')).join('');
      fs.writeFileSync(file, pem, { mode: 0o600 });
      fs.chmodSync(file, opts.mode ?? 0o600);
      return file;
    },
    makeHost(hostDir) {
      fs.mkdirSync(hostDir, { recursive: true });
      openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'host.key', '-out', 'host.csr', '-subj', '/CN=127.0.0.1'], hostDir);
      fs.writeFileSync(path.join(hostDir, 'host.ext'), 'subjectAltName=IP:127.0.0.1\n');
      openssl(['x509', '-req', '-in', 'host.csr', '-CA', path.join(dir, 'ca.pem'), '-CAkey', path.join(dir, 'ca.key'), '-CAcreateserial', '-out', 'host.pem', '-days', '2', '-extfile', 'host.ext'], hostDir);
      const certDir = path.join(hostDir, 'certificates');
      fs.mkdirSync(certDir);
      fs.copyFileSync(path.join(dir, 'ca.pem'), path.join(certDir, 'tokenpool-test-ca.pem'));
      return { key: fs.readFileSync(path.join(hostDir, 'host.key')), cert: fs.readFileSync(path.join(hostDir, 'host.pem')), certDir };
    },
  };
}
