/** A CouchDB view as stored in a design document. Functions are ES5 source: CouchDB 3 runs them in SpiderMonkey. */
export interface ViewDef {
  map: string;
  reduce?: string;
}
