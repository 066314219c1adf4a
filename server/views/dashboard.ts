/** Views the status command and the dashboard need beyond `progress`. */
import type { ViewDef } from './types.js';

export const dashboardViews: Record<string, ViewDef> = {};
