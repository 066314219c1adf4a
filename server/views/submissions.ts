/** Views over pilot submission records (type "submission"). */
import type { ViewDef } from './types.js';

export const submissionViews: Record<string, ViewDef> = {};
