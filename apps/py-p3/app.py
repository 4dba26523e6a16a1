"""lepton test app: Python spin-sdk 5.0.0 (componentize-py 0.25.1), wasi:http@0.3 (WASIp3).

The same routes and response bodies as apps/py-p2, through the SDK's async (spin:*@3) APIs:
  GET    /               plain hello
  GET    /vars           the `greeting` (default only) and `target` (set per app) variables
  PUT    /kv/<key>       store the request body under <key> in the `default` store
  GET    /kv/<key>       the value, or 404 `no such key`
  DELETE /kv/<key>       delete <key>
  GET    /kv-exists/<key>  `true` or `false`
  GET    /kv-keys        every key of the `default` store, sorted, one per line
  GET    /kv-forbidden   open a store not in `key_value_stores`: 403 with the SDK's error text
  POST   /sql/init       create the `notes` table in the `default` database
  POST   /sql/notes      insert the request body as a note (answers with its rowid)
  GET    /sql/notes      every note, ordered by id: a header line, then `id|body` lines
  GET    /sql/types      one row of each SQLite value type, rendered with its type
"""

from componentize_py_types import Err
from spin_sdk import http, key_value, sqlite, variables
from spin_sdk.http import Request, Response
from spin_sdk.sqlite import Value_Blob, Value_Integer, Value_Real, Value_Text
from spin_sdk.wit.imports.spin_sqlite_sqlite_3_1_0 import Value_Null
from spin_sdk.util import collect

APP = "py-p3"


def text(status: int, body: str) -> Response:
    return Response(status, {"content-type": "text/plain"}, bytes(body, "utf-8"))


def render(value) -> str:
    if isinstance(value, Value_Integer):
        return f"integer:{value.value}"
    if isinstance(value, Value_Real):
        return f"real:{value.value}"
    if isinstance(value, Value_Text):
        return f"text:{value.value}"
    if isinstance(value, Value_Blob):
        return f"blob:{value.value.hex()}"
    if isinstance(value, Value_Null):
        return "null"
    return f"unknown:{value!r}"


async def kv_route(method: str, path: str, body: bytes) -> Response:
    if path == "/kv-forbidden":
        try:
            await key_value.open("forbidden")
        except Err as e:
            return text(403, f"{e!r}\n")
        return text(200, "opened forbidden store\n")
    with await key_value.open_default() as store:
        if path == "/kv-keys":
            keys = await collect(await store.get_keys())
            return text(200, "".join(f"{k}\n" for k in sorted(keys)))
        if path.startswith("/kv-exists/"):
            key = path[len("/kv-exists/"):]
            return text(200, f"{str(await store.exists(key)).lower()}\n")
        key = path[len("/kv/"):]
        if method == "PUT":
            await store.set(key, body)
            return text(200, f"stored {key}\n")
        if method == "DELETE":
            await store.delete(key)
            return text(200, f"deleted {key}\n")
        value = await store.get(key)
        if value is None:
            return text(404, "no such key\n")
        return Response(200, {"content-type": "application/octet-stream"}, value)


async def query(db, statement: str, params) -> tuple:
    columns, rows, result = await db.execute(statement, params)
    collected = await collect((rows, result))
    return columns, collected


async def sql_route(method: str, path: str, body: bytes) -> Response:
    with await sqlite.Connection.open_default() as db:
        if path == "/sql/init":
            await query(
                db,
                "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
                [],
            )
            return text(200, "created\n")
        if path == "/sql/notes" and method == "POST":
            await query(db, "INSERT INTO notes (body) VALUES (?)", [Value_Text(str(body, "utf-8"))])
            return text(200, "inserted\n")
        if path == "/sql/notes":
            columns, rows = await query(db, "SELECT id, body FROM notes ORDER BY id", [])
            lines = ["|".join(columns)]
            for row in rows:
                lines.append("|".join(str(v.value) for v in row.values))
            return text(200, "".join(f"{line}\n" for line in lines))
        if path == "/sql/types":
            columns, rows = await query(
                db,
                "SELECT ? AS i, ? AS r, ? AS t, x'00ff10' AS b, NULL AS n",
                [Value_Integer(-7), Value_Real(2.5), Value_Text("héllo")],
            )
            lines = [",".join(columns)]
            for row in rows:
                lines.append(",".join(render(v) for v in row.values))
            return text(200, "".join(f"{line}\n" for line in lines))
    return text(404, "not found\n")


class HttpHandler(http.Handler):
    async def handle_request(self, request: Request) -> Response:
        path = request.uri.split("?", 1)[0]
        body = request.body or b""
        if path == "/":
            return text(200, f"Hello from {APP}\n")
        if path == "/vars":
            greeting = await variables.get("greeting")
            target = await variables.get("target")
            return text(200, f"greeting={greeting}\ntarget={target}\n")
        if path.startswith("/kv"):
            return await kv_route(request.method, path, body)
        if path.startswith("/sql/"):
            return await sql_route(request.method, path, body)
        return text(404, "not found\n")
