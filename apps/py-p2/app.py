"""lepton test app: Python spin-sdk 3.4.1 (componentize-py 0.17.2), wasi:http@0.2.

Routes (every response body is deterministic so tests compare it exactly):
  GET    /               plain hello
  GET    /vars           the `greeting` (default only) and `target` (set per app) variables
  PUT    /kv/<key>       store the request body under <key> in the `default` store
  GET    /kv/<key>       the value, or 404 `no such key`
  DELETE /kv/<key>       delete <key>
  GET    /kv-exists/<key>  `true` or `false`
  GET    /kv-keys        every key of the `default` store, sorted, one per line
  GET    /kv-forbidden   open a store not in `key_value_stores`: 403 with the SDK's error text
  POST   /sql/init       create the `notes` table in the `default` database
  POST   /sql/notes      insert the request body as a note
  GET    /sql/notes      every note, ordered by id: a header line, then `id|body` lines
  GET    /sql/types      one row of each SQLite value type, rendered with its type
"""

from spin_sdk import http, key_value, variables
from spin_sdk.http import Request, Response
from spin_sdk.wit.types import Err
from spin_sdk.wit.imports.fermyon_spin_sqlite import (
    Connection,
    Value_Blob,
    Value_Integer,
    Value_Null,
    Value_Real,
    Value_Text,
)

APP = "py-p2"


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


def kv_route(method: str, path: str, body: bytes) -> Response:
    if path == "/kv-forbidden":
        try:
            key_value.open("forbidden")
        except Err as e:
            return text(403, f"{e!r}\n")
        return text(200, "opened forbidden store\n")
    with key_value.open_default() as store:
        if path == "/kv-keys":
            return text(200, "".join(f"{k}\n" for k in sorted(store.get_keys())))
        if path.startswith("/kv-exists/"):
            key = path[len("/kv-exists/"):]
            return text(200, f"{str(store.exists(key)).lower()}\n")
        key = path[len("/kv/"):]
        if method == "PUT":
            store.set(key, body)
            return text(200, f"stored {key}\n")
        if method == "DELETE":
            store.delete(key)
            return text(200, f"deleted {key}\n")
        value = store.get(key)
        if value is None:
            return text(404, "no such key\n")
        return Response(200, {"content-type": "application/octet-stream"}, value)


def sql_route(method: str, path: str, body: bytes) -> Response:
    with Connection.open("default") as db:
        if path == "/sql/init":
            db.execute(
                "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
                [],
            )
            return text(200, "created\n")
        if path == "/sql/notes" and method == "POST":
            db.execute("INSERT INTO notes (body) VALUES (?)", [Value_Text(str(body, "utf-8"))])
            return text(200, "inserted\n")
        if path == "/sql/notes":
            result = db.execute("SELECT id, body FROM notes ORDER BY id", [])
            lines = ["|".join(result.columns)]
            for row in result.rows:
                lines.append("|".join(str(v.value) for v in row.values))
            return text(200, "".join(f"{line}\n" for line in lines))
        if path == "/sql/types":
            result = db.execute(
                "SELECT ? AS i, ? AS r, ? AS t, x'00ff10' AS b, NULL AS n",
                [Value_Integer(-7), Value_Real(2.5), Value_Text("héllo")],
            )
            lines = [",".join(result.columns)]
            for row in result.rows:
                lines.append(",".join(render(v) for v in row.values))
            return text(200, "".join(f"{line}\n" for line in lines))
    return text(404, "not found\n")


class IncomingHandler(http.IncomingHandler):
    def handle_request(self, request: Request) -> Response:
        path = request.uri.split("?", 1)[0]
        body = request.body or b""
        if path == "/":
            return text(200, f"Hello from {APP}\n")
        if path == "/vars":
            greeting = variables.get("greeting")
            target = variables.get("target")
            return text(200, f"greeting={greeting}\ntarget={target}\n")
        if path.startswith("/kv"):
            return kv_route(request.method, path, body)
        if path.startswith("/sql/"):
            return sql_route(request.method, path, body)
        return text(404, "not found\n")
