/** The web dashboard: static page plus read-only query routes, mounted on the embedded server's front. */
import type { RouteHandler } from '../embedded/front.js';

export function dashboardRoutes(): RouteHandler[] {
  return [];
}
