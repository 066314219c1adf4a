// express-pouchdb and PouchDB 7 ship no type declarations; we only touch them here.
declare module 'express-pouchdb';
declare module 'pouchdb-core';
declare module 'pouchdb-adapter-leveldb';
declare module 'pouchdb-adapter-memory';
declare module 'pouchdb-mapreduce';
declare module 'pouchdb-replication';
declare module 'pouchdb-adapter-http';
declare module 'pouchdb-find';
declare module 'pouchdb-auth';
