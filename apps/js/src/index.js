// lepton test app: JavaScript built with j2w (@spinframework/build-tools), wasi:http@0.2.3.
//
// The same routes and response bodies as apps/py-p2 (every body is deterministic so tests
// compare it exactly); Spin's interfaces come from the `fermyon:spin@2.0.0` WIT in ../wit:
//   GET    /                 plain hello
//   GET    /vars             the `greeting` (default only) and `target` (set per app) variables
//   PUT    /kv/<key>         store the request body under <key> in the `default` store
//   GET    /kv/<key>         the value, or 404 `no such key`
//   DELETE /kv/<key>         delete <key>
//   GET    /kv-exists/<key>  `true` or `false`
//   GET    /kv-keys          every key of the `default` store, sorted, one per line
//   GET    /kv-forbidden     open a store not in `key_value_stores`: 403 with the error text
//   POST   /sql/init         create the `notes` table in the `default` database
//   POST   /sql/notes        insert the request body as a note
//   GET    /sql/notes        every note, ordered by id: a header line, then `id|body` lines
//   GET    /sql/types        one row of each SQLite value type, rendered with its type
import { Store } from 'fermyon:spin/key-value@2.0.0';
import { get as getVariable } from 'fermyon:spin/variables@2.0.0';
import { Connection } from 'fermyon:spin/sqlite@2.0.0';

const APP = 'js';

function text(status, body) {
  return new Response(body, { status, headers: { 'content-type': 'text/plain' } });
}

function errorText(e) {
  // jco bindings throw a ComponentError whose `payload` is the WIT error variant.
  return `${e.name}: ${e.message} ${JSON.stringify(e.payload)}`;
}

function render(value) {
  switch (value.tag) {
    case 'integer':
      return `integer:${value.val}`;
    case 'real':
      return `real:${value.val}`;
    case 'text':
      return `text:${value.val}`;
    case 'blob':
      return `blob:${Array.from(value.val, (b) => b.toString(16).padStart(2, '0')).join('')}`;
    case 'null':
      return 'null';
    default:
      return `unknown:${value.tag}`;
  }
}

function kvRoute(method, path, body) {
  if (path === '/kv-forbidden') {
    try {
      Store.open('forbidden');
    } catch (e) {
      return text(403, `${errorText(e)}\n`);
    }
    return text(200, 'opened forbidden store\n');
  }
  const store = Store.open('default');
  if (path === '/kv-keys') {
    return text(200, store.getKeys().sort().map((k) => `${k}\n`).join(''));
  }
  if (path.startsWith('/kv-exists/')) {
    return text(200, `${store.exists(path.slice('/kv-exists/'.length))}\n`);
  }
  const key = path.slice('/kv/'.length);
  if (method === 'PUT') {
    store.set(key, body);
    return text(200, `stored ${key}\n`);
  }
  if (method === 'DELETE') {
    store.delete(key);
    return text(200, `deleted ${key}\n`);
  }
  const value = store.get(key);
  if (value === undefined) {
    return text(404, 'no such key\n');
  }
  return new Response(value, { status: 200, headers: { 'content-type': 'application/octet-stream' } });
}

function sqlRoute(method, path, body) {
  const db = Connection.open('default');
  if (path === '/sql/init') {
    db.execute('CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)', []);
    return text(200, 'created\n');
  }
  if (path === '/sql/notes' && method === 'POST') {
    db.execute('INSERT INTO notes (body) VALUES (?)', [{ tag: 'text', val: new TextDecoder().decode(body) }]);
    return text(200, 'inserted\n');
  }
  if (path === '/sql/notes') {
    const result = db.execute('SELECT id, body FROM notes ORDER BY id', []);
    const lines = [result.columns.join('|')];
    for (const row of result.rows) {
      lines.push(row.values.map((v) => String(v.val)).join('|'));
    }
    return text(200, lines.map((l) => `${l}\n`).join(''));
  }
  if (path === '/sql/types') {
    const result = db.execute("SELECT ? AS i, ? AS r, ? AS t, x'00ff10' AS b, NULL AS n", [
      { tag: 'integer', val: -7n },
      { tag: 'real', val: 2.5 },
      { tag: 'text', val: 'héllo' },
    ]);
    const lines = [result.columns.join(',')];
    for (const row of result.rows) {
      lines.push(row.values.map(render).join(','));
    }
    return text(200, lines.map((l) => `${l}\n`).join(''));
  }
  return text(404, 'not found\n');
}

async function handle(request) {
  const path = new URL(request.url).pathname;
  const body = new Uint8Array(await request.arrayBuffer());
  if (path === '/') {
    return text(200, `Hello from ${APP}\n`);
  }
  if (path === '/vars') {
    return text(200, `greeting=${getVariable('greeting')}\ntarget=${getVariable('target')}\n`);
  }
  if (path.startsWith('/kv')) {
    return kvRoute(request.method, path, body);
  }
  if (path.startsWith('/sql/')) {
    return sqlRoute(request.method, path, body);
  }
  return text(404, 'not found\n');
}

addEventListener('fetch', (event) => {
  event.respondWith(
    handle(event.request).catch((e) => text(500, `${e}\n`)),
  );
});
