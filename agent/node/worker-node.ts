/**
 * The worker node around a step: software image (CVMFS, node cache, runtime), grid proxy,
 * stage-in and stage-out. The agent (agent/) drives it through the WorkerNode interface.
 */
import type { Logger } from '../../server/log.js';
import { TokenpoolError } from '../../server/errors.js';
import { EXIT, inputFilesOf, type OutputFile, type Token } from '../../server/token.js';
import { NodeFault, PhaseError, type CwlContainer, type PhaseContext, type WorkerNode } from '../phases.js';
import { cwlOf } from '../cwl.js';
import type { CachedImage } from './image-cache.js';
import { locateImage, type Image } from './image.js';
import { StorageCredentials } from './credentials/index.js';
import { checkProxy, ProxyError, proxyPath, type ProxyInfo } from './proxy.js';
import { templateProblems } from './results-location.js';
import { chooseRuntime, cwlRuntime, wrapCommand, type Runtime, type RuntimeChoice } from './runtime.js';
import { stageIn } from './stage-in.js';
import { stageOut } from './stage-out.js';
import { GRID_SCHEMES, schemeOf, Transfers, type TransferTool } from './transfer/index.js';

export type ProxyRequirement = 'auto' | 'yes' | 'no';

export interface WorkerNodeConfig {
  image?: string;
  runtime: RuntimeChoice;
  cvmfsRoot?: string;
  cvmfsTimeoutS: number;
  initScript?: string;
  binds: string[];
  imageCache?: string;
  imageCacheBytes: number;
  requireProxy: ProxyRequirement;
  /** Unset: 1 h, or the token's time limit when it has one */
  minProxyLifetimeS?: number;
  results?: string;
  resultsBase?: string;
  resultsGzip: boolean;
  localResults: string;
  transferTool: TransferTool;
  transferTimeoutS: number;
  transferRetries: number;
  retryDelayS: number;
  parallelTransfers: number;
  /** Macaroons and bearer tokens (credentials/index.ts) */
  macaroonsFile: string;
  tokenRefreshCommand?: string[];
  minCredentialLifetimeS: number;
  credentialWaitS: number;
  /** The credential the --results storage takes: checked at preflight, before any claim */
  resultsAuth?: 'macaroon' | 'bearer';
  env: NodeJS.ProcessEnv;
}

/** URL schemes whose storage needs a grid proxy (davs:// is the grid's WebDAV door). */
const PROXY_SCHEMES = [...GRID_SCHEMES, 'davs:'];
const DEFAULT_MIN_PROXY_S = 3600;

interface Software {
  image: Image | null;
  cached: CachedImage | null;
  runtime: Runtime;
  /** with podman: the image's local name (podman.ts) */
  podmanImage?: string;
}

export class GridWorkerNode implements WorkerNode {
  private readonly transfers: Transfers;
  private readonly credentials: StorageCredentials;
  /** The agent's --image, resolved at preflight */
  private agentSoftware: Software | null = null;
  /** Per-token software resolved at stage-in, by scratch directory (wrapCommand is synchronous) */
  private readonly tokenSoftware = new Map<string, Software>();
  private proxy: ProxyInfo | null = null;

  constructor(
    private readonly config: WorkerNodeConfig,
    private readonly log: Logger,
  ) {
    this.credentials = new StorageCredentials({
      env: config.env,
      macaroonsFile: config.macaroonsFile,
      refreshCommand: config.tokenRefreshCommand,
      minLifetimeS: config.minCredentialLifetimeS,
      waitS: config.credentialWaitS,
      log,
    });
    this.transfers = new Transfers({
      credentials: this.credentials,
      tool: config.transferTool,
      timeoutS: config.transferTimeoutS,
      retries: config.transferRetries,
      retryDelayS: config.retryDelayS,
      env: config.env,
      tls: async () => (await import('./tls.js')).gridTls(() => proxyPath(config.env), config.env),
    });
  }

  async preflight(): Promise<void> {
    if (this.config.results) {
      const problems = templateProblems(this.config.results, this.config.resultsBase);
      if (problems.length > 0) throw new TokenpoolError(`--results ${this.config.results}: ${problems.join('; ')}`);
    }
    const agentNeedsProxy = this.config.results !== undefined && needsProxy([this.config.results]);
    if (this.config.requireProxy === 'yes' || (this.config.requireProxy === 'auto' && agentNeedsProxy)) {
      this.proxy = checkProxy(proxyPath(this.config.env), this.config.minProxyLifetimeS ?? DEFAULT_MIN_PROXY_S);
    }
    if (this.config.results && this.config.resultsAuth) await this.checkResultsCredential(this.config.results, this.config.resultsAuth);
    if (this.config.image && !this.agentSoftware) this.agentSoftware = await this.resolveSoftware(this.config.image);
  }

  /** As for the proxy: a node that could not store results refuses to claim (exit 11). */
  private async checkResultsCredential(template: string, kind: 'macaroon' | 'bearer'): Promise<void> {
    // The storage is named by what comes before the first per-token placeholder.
    const location = template.replace('${RESULTS}', this.config.resultsBase ?? '').replace(/\$\{[A-Z_]+\}/g, 'x');
    try {
      await this.credentials.prepare(location, { required: [kind] });
    } catch (err) {
      if (err instanceof NodeFault) throw new TokenpoolError(`--results ${template}: ${err.message}`, undefined, EXIT.credentials);
      throw err;
    }
  }

  async stageIn(ctx: PhaseContext): Promise<void> {
    const t = ctx.token;
    const urls = inputFilesOf(t).map((i) => i.url);
    const results = t.results ?? this.config.results;
    if (results) urls.push(results);
    if (this.config.requireProxy !== 'no' && (needsProxy(urls) || inputFilesOf(t).some((i) => i.auth === 'proxy'))) this.checkProxyFor(t, ctx);
    // Inputs that name the credential their storage takes: none moves unless all can be read.
    for (const input of inputFilesOf(t)) {
      if (input.auth && input.auth !== 'proxy') await this.credentials.prepare(input.url, { required: [input.auth], signal: ctx.signal, log: ctx.log });
    }
    const software =
      cwlOf(t)?.container === 'node'
        ? await this.cwlSoftware(t.image ?? this.config.image)
        : t.image && t.image !== this.config.image
          ? await this.resolveSoftware(t.image)
          : await this.defaultSoftware();
    this.remember(ctx.scratchDir, software);
    if (software.image) ctx.env.TOKENPOOL_IMAGE = software.cached?.path ?? software.image.path;
    await stageIn(ctx, { transfers: this.transfers, parallel: this.config.parallelTransfers });
  }

  wrapCommand(ctx: PhaseContext, command: string): { file: string; args: string[] } {
    const software = this.tokenSoftware.get(ctx.scratchDir) ?? this.agentSoftware;
    if (!software && (ctx.token.image ?? this.config.image)) {
      throw new PhaseError(`image not found: ${ctx.token.image ?? this.config.image}`, EXIT.imageNotFound, true, 'the image was not resolved before the step (stage-in did not run)');
    }
    const runImage = software?.image ? { path: software.cached?.path ?? software.image.path, kind: software.image.kind } : null;
    return wrapCommand(software?.runtime ?? 'none', runImage, command, {
      scratchDir: ctx.scratchDir,
      binds: this.config.binds,
      initScript: this.config.initScript,
    });
  }

  cwlContainer(ctx: PhaseContext): CwlContainer {
    const software = this.tokenSoftware.get(ctx.scratchDir);
    if (!software) throw new PhaseError('no runtime for the CWL step', EXIT.imageNotFound, true, 'the container engine was not chosen before the step (stage-in did not run)');
    if (software.runtime === 'podman') return { engine: 'podman', image: software.podmanImage ?? null };
    return { engine: 'singularity', image: software.image ? (software.cached?.path ?? software.image.path) : null };
  }

  async stageOut(ctx: PhaseContext): Promise<OutputFile[]> {
    return stageOut(ctx, {
      transfers: this.transfers,
      results: this.config.results,
      resultsBase: this.config.resultsBase,
      gzip: this.config.resultsGzip,
      localResults: this.config.localResults,
    });
  }

  /**
   * The agent spreads these onto the token's top level: `software` (runtime and image identity)
   * and `proxy` (subject and expiry only). Not `image`: that is the token's own field.
   */
  async provenance(ctx: PhaseContext): Promise<Record<string, unknown>> {
    const used = this.tokenSoftware.get(ctx.scratchDir) ?? this.agentSoftware;
    const software: Record<string, unknown> = { runtime: used?.runtime ?? 'none' };
    if (used?.image) {
      const { image, cached } = used;
      software.image = {
        path: image.requested,
        ...(image.path !== image.requested ? { located: image.path } : {}),
        kind: image.kind,
        size: cached?.meta.bytes ?? image.size,
        mtime: new Date(image.mtimeMs).toISOString(),
        ...(cached?.meta.adler32 ? { adler32: cached.meta.adler32 } : {}),
        ...(cached ? { cache: { path: cached.path, how: cached.how } } : {}),
        ...(used.podmanImage ? { podman: used.podmanImage } : {}),
      };
    }
    const facts: Record<string, unknown> = { software };
    if (this.proxy) facts.proxy = { subject: this.proxy.subject, expires: this.proxy.notAfter.toISOString() };
    return facts;
  }

  private async defaultSoftware(): Promise<Software> {
    if (this.config.image) {
      this.agentSoftware ??= await this.resolveSoftware(this.config.image);
      return this.agentSoftware;
    }
    return { image: null, cached: null, runtime: chooseRuntime(this.config.runtime, null) };
  }

  /** A CWL step in a container: cwltool's engine from the node's runtime; podman gets the image imported. */
  private async cwlSoftware(requested: string | undefined): Promise<Software> {
    if (!requested) {
      const runtime = cwlRuntime(this.config.runtime, null);
      if (runtime === 'podman') (await import('./podman.js')).checkRootlessPodman();
      return { image: null, cached: null, runtime };
    }
    const software = await this.resolveSoftware(requested, 'cwl');
    if (software.runtime !== 'podman') return software;
    const podman = await import('./podman.js');
    podman.checkRootlessPodman();
    return { ...software, podmanImage: await podman.podmanImage(software.cached?.path ?? software.image!.path, this.log) };
  }

  private async resolveSoftware(requested: string, use: 'command' | 'cwl' = 'command'): Promise<Software> {
    const image = await locateImage(requested, { cvmfsRoot: this.config.cvmfsRoot, timeoutS: this.config.cvmfsTimeoutS });
    const runtime = use === 'cwl' ? cwlRuntime(this.config.runtime, image) : chooseRuntime(this.config.runtime, image);
    // The cache (locks, checksums) loads only on nodes that use one.
    const cached = this.config.imageCache ? await (await import('./image-cache.js')).cachedImage(image, this.config.imageCache, this.config.imageCacheBytes, this.log) : null;
    this.log.debug({ image: image.path, runtime, cache: cached?.how }, 'software image ready');
    return { image, cached, runtime };
  }

  private checkProxyFor(token: Token, ctx: PhaseContext): void {
    const min = this.config.minProxyLifetimeS ?? token.requirements.time_limit_s ?? DEFAULT_MIN_PROXY_S;
    try {
      this.proxy = checkProxy(proxyPath(this.config.env), min);
    } catch (err) {
      if (err instanceof ProxyError) throw new NodeFault('no usable grid proxy', EXIT.credentials, err.message);
      throw err;
    }
    ctx.env.X509_USER_PROXY = this.proxy.path;
  }

  private remember(scratchDir: string, software: Software): void {
    this.tokenSoftware.set(scratchDir, software);
    // An agent runs tokens one after another for days: keep only the recent few.
    while (this.tokenSoftware.size > 16) this.tokenSoftware.delete(this.tokenSoftware.keys().next().value!);
  }
}

function needsProxy(urls: readonly string[]): boolean {
  return urls.some((u) => PROXY_SCHEMES.includes(schemeOf(u)));
}
