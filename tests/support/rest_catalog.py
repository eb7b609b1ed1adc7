"""Minimal Apache Iceberg REST catalog server -- a test fixture for weir's REST catalog client.

Integration tests start it as a subprocess and point iceberg-rust's REST client
(`iceberg-catalog-rest` 0.10.1) at it.  Every operation is delegated to pyiceberg's
`SqlCatalog` (SQLite), so table metadata, requirement checks and optimistic commits are
pyiceberg's own, not a re-implementation.  Stdlib HTTP server + pyiceberg only.

    python rest_catalog.py --catalog-name NAME --uri sqlite:////abs/catalog.db \\
        --warehouse file:///abs/warehouse [--port 0]
prints exactly one line `listening on http://127.0.0.1:PORT` (flushed) on stdout, then
serves until killed; requests are logged to stderr.  `python rest_catalog.py --self-test`
checks it end to end with pyiceberg's RestCatalog client and prints `self-test ok`.

Served (REST spec, no prefix; namespace levels joined by %1F): GET /v1/config,
POST /v1/oauth/tokens (dummy token), GET|POST /v1/namespaces (?parent=),
GET|HEAD|DELETE /v1/namespaces/{ns}, POST /v1/namespaces/{ns}/properties,
GET|POST /v1/namespaces/{ns}/tables, POST /v1/namespaces/{ns}/register,
GET|HEAD|DELETE|POST(commit) /v1/namespaces/{ns}/tables/{t},
POST /v1/namespaces/{ns}/tables/{t}/metrics (ignored), POST /v1/tables/rename.
Errors use the spec's ErrorModel: 404 NoSuch*, 409 AlreadyExists / NamespaceNotEmpty /
CommitFailed (a failed requirement, i.e. a concurrent commit), 400 bad request, 500 else.
All catalog calls are serialized by one lock (SQLite; a fixture needs no parallelism).
"""
import argparse, json, sys, threading, traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (CommitFailedException, NamespaceAlreadyExistsError, NamespaceNotEmptyError,
                                  NoSuchNamespaceError, NoSuchTableError, TableAlreadyExistsError)
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import CommitTableRequest
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER, SortOrder

P = "/v1/{prefix}/namespaces/{namespace}"  # advertised `endpoints` use the spec's templates
ENDPOINTS = ["GET /v1/{prefix}/namespaces", "POST /v1/{prefix}/namespaces", f"GET {P}", f"HEAD {P}",
             f"DELETE {P}", f"POST {P}/properties", f"GET {P}/tables", f"POST {P}/tables", f"POST {P}/register",
             f"GET {P}/tables/{{table}}", f"HEAD {P}/tables/{{table}}", f"POST {P}/tables/{{table}}",
             f"DELETE {P}/tables/{{table}}", "POST /v1/{prefix}/tables/rename"]
ERRORS = [(NoSuchNamespaceError, 404, "NoSuchNamespaceException"), (NoSuchTableError, 404, "NoSuchTableException"),
          (NamespaceAlreadyExistsError, 409, "AlreadyExistsException"),
          (TableAlreadyExistsError, 409, "AlreadyExistsException"),
          (NamespaceNotEmptyError, 409, "NamespaceNotEmptyException"),
          (CommitFailedException, 409, "CommitFailedException"),
          (NotImplementedError, 406, "UnsupportedOperationException"),
          (ValueError, 400, "BadRequestException"), (KeyError, 400, "BadRequestException")]  # incl. pydantic errors


class HttpError(Exception):
    def __init__(self, code, kind, message):
        super().__init__(message)
        self.code, self.kind = code, kind


class _Named:  # SqlCatalog.commit_table only needs table.name(); it reloads the current table itself
    def __init__(self, ident):
        self.ident = ident

    def name(self):
        return self.ident


def table_result(metadata, location):
    loc = f'"metadata-location": {json.dumps(location)}, ' if location else ""
    return '{%s"metadata": %s, "config": {}}' % (loc, metadata.model_dump_json())


def fill_spec(spec, first_field_id, spec_id=None):
    """iceberg-rust sends UnboundPartitionSpec (field-id/spec-id optional); pyiceberg needs them."""
    spec = dict(spec)
    spec["fields"] = [dict(f) for f in spec.get("fields", [])]
    for i, f in enumerate(spec["fields"]):
        f.setdefault("field-id", first_field_id + i)
    if spec_id is not None:
        spec.setdefault("spec-id", spec_id)
    return spec


class Api:
    def __init__(self, catalog):
        self.cat, self.lock = catalog, threading.Lock()

    def handle(self, method, segs, query, body):
        with self.lock:
            return self._route(method, segs, query, body)

    def _route(self, m, s, q, body):
        cat, n = self.cat, len(s)
        if s == ["config"] and m == "GET":
            return 200, {"defaults": {}, "overrides": {}, "endpoints": ENDPOINTS}
        if s == ["oauth", "tokens"] and m == "POST":
            return 200, {"access_token": "weir-test", "token_type": "bearer", "expires_in": 86400,
                         "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}
        if s == ["tables", "rename"] and m == "POST":
            src, dst = body["source"], body["destination"]
            cat.rename_table((*src["namespace"], src["name"]), (*dst["namespace"], dst["name"]))
            return 204, None
        if not s or s[0] != "namespaces":
            raise HttpError(404, "NoSuchEndpointException", f"no route for {m} /v1/{'/'.join(s)}")
        if n == 1 and m == "GET":
            parent = tuple(q["parent"][0].split("\x1f")) if q.get("parent", [""])[0] else ()
            return 200, {"namespaces": [list(x) for x in cat.list_namespaces(parent)]}
        if n == 1 and m == "POST":
            ns, props = tuple(body["namespace"]), body.get("properties") or {}
            cat.create_namespace(ns, props)
            return 200, {"namespace": list(ns), "properties": props}
        ns = tuple(s[1].split("\x1f")) if n > 1 else ()
        if n == 2 and m in ("GET", "HEAD"):
            if m == "HEAD":
                return (204, None) if cat.namespace_exists(ns) else (404, None)
            return 200, {"namespace": list(ns), "properties": cat.load_namespace_properties(ns)}
        if n == 2 and m == "DELETE":
            cat.drop_namespace(ns)
            return 204, None
        if n == 3 and s[2] == "properties" and m == "POST":
            r = cat.update_namespace_properties(ns, set(body.get("removals") or []), body.get("updates") or {})
            return 200, {"updated": r.updated, "removed": r.removed, "missing": r.missing}
        if n == 3 and s[2] == "tables" and m == "GET":
            return 200, {"identifiers": [{"namespace": list(t[:-1]), "name": t[-1]} for t in cat.list_tables(ns)]}
        if n == 3 and s[2] == "tables" and m == "POST":
            return self._create(ns, body)
        if n == 3 and s[2] == "register" and m == "POST":
            t = cat.register_table((*ns, body["name"]), body["metadata-location"], bool(body.get("overwrite")))
            return 200, table_result(t.metadata, t.metadata_location)
        if n == 4 and s[2] == "tables":
            ident = (*ns, s[3])
            if m == "HEAD":
                return (204, None) if cat.table_exists(ident) else (404, None)
            if m == "GET":
                t = cat.load_table(ident)
                return 200, table_result(t.metadata, t.metadata_location)
            if m == "DELETE":
                purge = q.get("purgeRequested", ["false"])[0].lower() == "true"
                (cat.purge_table if purge else cat.drop_table)(ident)
                return 204, None
            if m == "POST":
                return self._commit(ident, body)
        if n == 5 and s[2] == "tables" and s[4] == "metrics" and m == "POST":
            return 204, None
        raise HttpError(404, "NoSuchEndpointException", f"no route for {m} /v1/{'/'.join(s)}")

    def _create(self, ns, b):
        spec, order = b.get("partition-spec"), b.get("write-order")
        args = dict(identifier=(*ns, b["name"]), schema=Schema.model_validate(b["schema"]),
                    location=b.get("location"), properties=b.get("properties") or {},
                    partition_spec=PartitionSpec.model_validate(fill_spec(spec, 1000)) if spec
                    else UNPARTITIONED_PARTITION_SPEC,
                    sort_order=SortOrder.model_validate(order) if order else UNSORTED_SORT_ORDER)
        if b.get("stage-create"):
            if not self.cat.namespace_exists(ns):
                raise NoSuchNamespaceError(f"Namespace does not exist: {ns}")
            if self.cat.table_exists(args["identifier"]):
                raise TableAlreadyExistsError(f"Table already exists: {args['identifier']}")
            args["identifier"] = (".".join(ns), b["name"])  # staging only accepts 2-part names
            return 200, table_result(self.cat._create_staged_table(**args).metadata, None)
        t = self.cat.create_table(**args)
        return 200, table_result(t.metadata, t.metadata_location)

    def _commit(self, ident, b):
        b = dict(b, identifier={"namespace": list(ident[:-1]), "name": ident[-1]})
        if any(u.get("action") == "add-spec" for u in b.get("updates", [])):
            try:
                md = self.cat.load_table(ident).metadata
                next_field, next_spec = (md.last_partition_id or 999) + 1, max(sp.spec_id for sp in md.partition_specs) + 1
            except NoSuchTableError:
                next_field, next_spec = 1000, 0
            b["updates"] = [dict(u, spec=fill_spec(u["spec"], next_field, next_spec)) if u.get("action") == "add-spec"
                            else u for u in b["updates"]]
        req = CommitTableRequest.model_validate(b)
        resp = self.cat.commit_table(_Named(ident), req.requirements, req.updates)
        return 200, resp.model_dump_json()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: Api = None
    quiet = False

    def _serve(self):
        url = urlsplit(self.path)
        segs = [unquote(x) for x in url.path.strip("/").split("/")]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            if segs[:1] != ["v1"]:
                raise HttpError(404, "NoSuchEndpointException", f"unknown path {url.path}")
            body = json.loads(raw) if raw.strip() and "json" in (self.headers.get("Content-Type") or "json") else {}
            code, payload = self.api.handle(self.command, segs[1:], parse_qs(url.query), body)
        except Exception as e:  # noqa: BLE001 -- every failure becomes an ErrorModel
            code, kind = next(((c, k) for cls, c, k in ERRORS if isinstance(e, cls)), (500, type(e).__name__))
            if isinstance(e, HttpError):
                code, kind = e.code, e.kind
            if code == 500:
                traceback.print_exc(file=sys.stderr)
            msg = f"missing field {e.args[0]!r}" if isinstance(e, KeyError) else str(e) or kind
            payload = {"error": {"message": msg, "type": kind, "code": code}}
        data = b"" if payload is None else (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_response(code)
        if code != 204:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and code != 204:
            self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_HEAD = do_PUT = _serve

    def log_message(self, fmt, *args):
        if not self.quiet:
            sys.stderr.write("rest_catalog: %s\n" % (fmt % args))


def make_server(name, uri, warehouse, port=0, quiet=False):
    cat = SqlCatalog(name, uri=uri, warehouse=warehouse)
    handler = type("BoundHandler", (Handler,), {"api": Api(cat), "quiet": quiet})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def self_test():
    import shutil, tempfile, urllib.error, urllib.request
    import pyarrow as pa
    from pyiceberg.catalog.rest import RestCatalog
    from pyiceberg.partitioning import PartitionField
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import DoubleType, LongType, NestedField, StringType
    tmp = tempfile.mkdtemp(prefix="weir-rest-catalog-")
    srv = make_server("selftest", f"sqlite:///{tmp}/catalog.db", f"file://{tmp}/warehouse", quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"

    def http(method, path, body=None):
        req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    c1, c2 = RestCatalog("a", uri=base), RestCatalog("b", uri=base)
    ns, ident = ("weir", "it"), ("weir", "it", "events")
    c1.create_namespace(ns, {"owner": "weir"})
    assert c1.list_namespaces() == [("weir",)] and c1.list_namespaces(("weir",)) == [ns], c1.list_namespaces()
    assert c1.namespace_exists(ns) and c1.load_namespace_properties(ns)["owner"] == "weir"
    schema = Schema(NestedField(1, "id", LongType(), required=True), NestedField(2, "category", StringType()),
                    NestedField(3, "value", DoubleType()))
    spec = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="category"))
    # no client-side auto-retry, so a stale commit surfaces as CommitFailedException (HTTP 409)
    c1.create_table(ident, schema=schema, partition_spec=spec, properties={"commit.retry.num-retries": "0"})
    batch = lambda ids: pa.table({"id": pa.array(ids, pa.int64()), "category": [f"c{i % 2}" for i in ids],
                                  "value": [i * 1.5 for i in ids]}, schema=c1.load_table(ident).schema().as_arrow())
    t = c1.load_table(ident)
    t.append(batch([1, 2, 3]))
    t.append(batch([4, 5]))
    assert sorted(c2.load_table(ident).scan().to_arrow()["id"].to_pylist()) == [1, 2, 3, 4, 5]
    assert c1.list_tables(ns) == [ident] and c1.table_exists(ident) and not c1.table_exists((*ns, "nope"))
    assert c1.load_table(ident).spec().fields[0].name == "category"
    ta, tb = c1.load_table(ident), c2.load_table(ident)  # two writers racing on the same snapshot
    ta.append(batch([6]))
    try:
        tb.append(batch([7]))
        raise AssertionError("stale commit was accepted")
    except CommitFailedException:
        pass
    tb.refresh()
    tb.append(batch([7]))
    assert sorted(c1.load_table(ident).scan().to_arrow()["id"].to_pylist()) == [1, 2, 3, 4, 5, 6, 7]
    path = "/v1/namespaces/weir%1Fit/tables/events"  # raw protocol checks, iceberg-rust style
    code, raw = http("GET", path)
    doc = json.loads(raw)
    assert code == 200 and doc["metadata-location"].endswith(".metadata.json"), doc.keys()
    assert doc["metadata"]["format-version"] == 2 and "current-snapshot-id" in doc["metadata"], doc["metadata"].keys()
    code, raw = http("GET", "/v1/config")
    assert code == 200 and {"defaults", "overrides", "endpoints"} <= json.loads(raw).keys()
    stale = {"requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": 1}],
             "updates": [{"action": "set-properties", "updates": {"k": "v"}}]}  # no identifier, like iceberg-rust
    code, raw = http("POST", path, stale)
    assert code == 409 and json.loads(raw)["error"]["type"] == "CommitFailedException", raw
    ok = {"requirements": [{"type": "assert-table-uuid", "uuid": doc["metadata"]["table-uuid"]}],
          "updates": [{"action": "set-properties", "updates": {"k": "v"}}]}
    code, raw = http("POST", path, ok)
    assert code == 200 and json.loads(raw)["metadata"]["properties"]["k"] == "v", raw
    code, raw = http("GET", "/v1/namespaces/weir%1Fit/tables/missing")
    assert code == 404 and json.loads(raw)["error"] == {"message": json.loads(raw)["error"]["message"],
                                                        "type": "NoSuchTableException", "code": 404}, raw
    assert http("HEAD", path)[0] == 204 and http("HEAD", "/v1/namespaces/nope")[0] == 404
    c1.rename_table(ident, (*ns, "events2"))
    c1.drop_table((*ns, "events2"))
    assert c1.list_tables(ns) == []
    c1.drop_namespace(ns)
    assert not c1.namespace_exists(ns)
    srv.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    print("self-test ok")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog-name", default="weir")
    ap.add_argument("--uri", help="SQLAlchemy URI, e.g. sqlite:////abs/path/catalog.db")
    ap.add_argument("--warehouse", help="e.g. file:///abs/warehouse")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    if not a.uri or not a.warehouse:
        ap.error("--uri and --warehouse are required")
    srv = make_server(a.catalog_name, a.uri, a.warehouse, a.port)
    print(f"listening on http://127.0.0.1:{srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
