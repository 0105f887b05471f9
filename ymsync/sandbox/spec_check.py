"""The sandbox's test mode: each API request checked against the Market's official OpenAPI description.

One validator serves the sandbox (every request it receives, when the mode is on) and the
contract tests (every exchange a client sends, and the sandbox's replies). openapi-core and
fastjsonschema are test dependencies: import this module only when the mode is on.

What the description cannot say by itself is handled here, by hand:
- security: openapi-core skips oauth2 schemes, so "Api-Key header or Bearer token" is checked here;
- ``page_token`` is an ``x-aliases`` vendor alias of ``pageToken``: aliases are mapped before the
  parameters are validated, and a query parameter the operation does not declare is refused;
- 423 (a cabinet being migrated) is not documented; the contract test checks its body as a 500's.

Speed: the description is one file per schema, and openapi-core re-reads a ``$ref``'d file for
every array item (2 s for a 2000-SKU updateStocks body). Files are therefore read once, and each
operation's JSON body schema is compiled once with fastjsonschema (~5 ms for 2000 SKUs). A body
the compiled schema accepts is valid; anything else is judged by openapi-core, whose messages are
the ones reported.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import parse_qsl

import fastjsonschema
from jsonschema_path import SchemaPath
from jsonschema_path.handlers.urllib import UrllibHandler
from jsonschema_path.readers import FilePathReader
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.validation.request.exceptions import MissingRequestBody
from openapi_core.validation.request.validators import V30RequestBodyValidator, V30RequestParametersValidator
from openapi_schema_validator import oas30_format_checker
from werkzeug.datastructures import Headers, ImmutableMultiDict

NO_CREDENTIALS = "no credentials for security schemes ApiKey or OAuth"
# Keywords whose meaning fastjsonschema (draft 4) shares with OpenAPI 3.0 schemas; a body schema using
# any other (readOnly, discriminator, not, ...) is always judged by openapi-core alone.
_SHARED_KEYWORDS = {"type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
                    "uniqueItems", "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
                    "exclusiveMaximum", "multipleOf", "enum", "format", "nullable", "allOf", "anyOf", "oneOf",
                    "minProperties", "maxProperties", "default", "description", "example", "title", "deprecated"}
_INT_RANGES = {"int32": (-(1 << 31) + 1, (1 << 31) - 1), "int64": (-(1 << 63) + 1, (1 << 63) - 1)}
_MAX_DEPTH = 64
_MAX_PART = 200


def describe(error: BaseException) -> str:
    """An openapi-core error, its causes and their schema errors (the JSON path and what is wrong)."""
    parts: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        schema_errors = getattr(seen, "schema_errors", ()) or ()
        if seen is error or not schema_errors:  # a cause with schema errors only repeats the value
            text = f"{type(seen).__name__}: {seen}"  # openapi-core quotes the whole value: a 2000-SKU body
            parts.append(text if len(text) <= _MAX_PART else text[:_MAX_PART] + "…")
        parts.extend(f"  - {getattr(e, 'json_path', '$')}: {e.message}" for e in schema_errors)
        seen = seen.__cause__
    return "\n".join(parts)


def security_errors(headers: Mapping[str, str]) -> list[str]:
    """ApiKey (Api-Key header) or OAuth (Bearer token): the description's two schemes."""
    auth = headers.get("Authorization", "")
    if headers.get("Api-Key") or auth.startswith("Bearer ") and auth[7:].strip():
        return []
    return [NO_CREDENTIALS]


class SpecRequest:
    """openapi_core.protocols.Request for one request, re-based on the description's server."""

    def __init__(self, server: str, method: str, path: str, query: Iterable[tuple[str, str]],
                 headers: Mapping[str, str], body: bytes | None) -> None:
        self.host_url, self.path, self.method = server, path, method.lower()
        self.body = body or None
        self.content_type = headers.get("Content-Type", "")
        self.parameters = RequestParameters(query=ImmutableMultiDict(list(query)), header=Headers(dict(headers)),
                                            cookie=ImmutableMultiDict())


class SpecResponse:
    """openapi_core.protocols.Response for one reply."""

    def __init__(self, status: int, data: bytes, headers: Mapping[str, str]) -> None:
        self.status_code, self.data = status, data
        self.content_type = headers.get("Content-Type", "")
        self.headers = Headers(dict(headers))


class _CachedFiles(UrllibHandler):
    """Reads each file of the description once (openapi-core asks for one per $ref it follows)."""

    @functools.lru_cache(maxsize=None)  # noqa: B019 - one handler per loaded description, kept for its life
    def __call__(self, uri: str) -> Any:
        return super().__call__(uri)


class SpecValidator:
    """The official description, loaded once; judges requests (and, for the contract tests, replies)."""

    def __init__(self, spec_path: str | Path) -> None:
        data, base_uri = FilePathReader(str(spec_path)).read()
        files = _CachedFiles("file")
        self.spec = SchemaPath.from_dict(data, base_uri=base_uri, handlers={"file": files, "<all_urls>": files})
        self.api = OpenAPI(self.spec)  # also checks the description itself
        self.server = (self.spec / "servers" / 0 / "url").read_str()
        self.finder = APICallPathFinder(self.spec, base_url=None)
        self._parameters = V30RequestParametersValidator(self.spec)
        self._body = V30RequestBodyValidator(self.spec)
        self._compiled: dict[tuple[str, str], Callable[[Any], Any] | None] = {}
        self._lock = threading.Lock()

    def request(self, method: str, path: str, query: Iterable[tuple[str, str]], headers: Mapping[str, str],
                body: bytes | None) -> SpecRequest:
        return SpecRequest(self.server, method, path, query, headers, body)

    def check_request(self, method: str, path: str, query: Iterable[tuple[str, str]], headers: Mapping[str, str],
                      body: bytes | None) -> tuple[str | None, list[str], SpecRequest]:
        """(operationId or None, what breaks the description, the request as validated)."""
        try:
            found = self.finder.find(method.lower(), self.server + path)
        except PathError as exc:
            return None, [describe(exc)], self.request(method, path, query, headers, body)
        operation = (found.operation / "operationId").read_str()
        errors, mapped = self._query(found, list(query))
        errors += security_errors(headers)
        request = self.request(method, path, mapped, headers, body)
        errors += [describe(e) for e in self._parameters.iter_errors(request)]
        errors += self._body_errors(operation, found.operation, request)
        return operation, errors, request

    def response_errors(self, request: SpecRequest, response: SpecResponse) -> list[str]:
        return [describe(e) for e in self.api.iter_response_errors(request, response)]

    # --- the parts ----------------------------------------------------------------------------

    @staticmethod
    def _query(found: Any, pairs: list[tuple[str, str]]) -> tuple[list[str], list[tuple[str, str]]]:
        """Map x-aliases (page_token → pageToken) and refuse query parameters the spec does not declare."""
        declared: dict[str, str] = {}
        for params in (found.path.get("parameters", []), found.operation.get("parameters", [])):
            for p in params:
                if p["in"] == "query":
                    declared[p["name"]] = p["name"]
                    aliases = (p / "x-aliases").read_value() if "x-aliases" in p else []
                    declared.update({alias: p["name"] for alias in aliases})
        unknown = [f"undeclared query parameter {k!r}" for k, _ in pairs if k not in declared]
        return unknown, [(declared.get(k, k), v) for k, v in pairs]

    def _body_errors(self, operation: str, spec_operation: SchemaPath, request: SpecRequest) -> list[str]:
        if "requestBody" not in spec_operation:
            return []  # openapi-core ignores a body the operation does not take; so does the Market
        if request.body:
            fast = self._compiled_body(operation, spec_operation, request.content_type.split(";")[0].strip())
            if fast is not None:
                try:
                    fast(json.loads(request.body))
                    return []
                except (ValueError, fastjsonschema.JsonSchemaException):
                    pass  # openapi-core decides, and words the error
        return [describe(e) for e in self._body.iter_errors(request) if type(e) is not MissingRequestBody]

    def _compiled_body(self, operation: str, spec_operation: SchemaPath, media: str) -> Callable[[Any], Any] | None:
        key = (operation, media)
        with self._lock:
            if key not in self._compiled:
                content = spec_operation / "requestBody" / "content"
                schema_path = content / media / "schema" if media.endswith("json") and media in content else None
                self._compiled[key] = _compile(schema_path) if schema_path is not None else None
            return self._compiled[key]


def _compile(schema_path: SchemaPath) -> Callable[[Any], Any] | None:
    """fastjsonschema for an OpenAPI 3.0 schema, or None if it uses a keyword the two read differently."""
    formats: set[str] = set()
    try:
        schema = _plain(schema_path, formats, 0)
    except (_Unshared, RecursionError):
        return None
    schema["$schema"] = "http://json-schema.org/draft-04/schema#"
    checks = {name: functools.partial(_conforms, name) for name in formats if name in oas30_format_checker.checkers}
    return fastjsonschema.compile(schema, formats=checks, use_default=False)


def _conforms(name: str, value: Any) -> bool:
    return oas30_format_checker.conforms(value, name)


class _Unshared(Exception):
    pass


def _plain(node: SchemaPath, formats: set[str], depth: int) -> Any:
    """The schema at ``node`` with every $ref followed, as draft-4 JSON Schema."""
    if depth > _MAX_DEPTH:
        raise RecursionError("schema nests too deep (recursive?)")
    with node.open() as value:
        raw = value
    if isinstance(raw, list):
        return [_plain(node / i, formats, depth + 1) for i in range(len(raw))]
    if not isinstance(raw, dict):
        return raw
    out: dict[str, Any] = {}
    for key in raw:
        if key.startswith("x-"):
            continue
        if key not in _SHARED_KEYWORDS:
            raise _Unshared(key)
        if key in ("properties",):
            out[key] = {name: _plain(node / key / name, formats, depth + 1) for name in raw[key]}
        elif key in ("enum", "required", "default", "example", "description", "title"):
            out[key] = (node / key).read_value()
        else:
            out[key] = _plain(node / key, formats, depth + 1)
    if out.pop("nullable", False) is True and "type" in out:
        out["type"] = [out["type"], "null"]
    fmt = out.get("format")
    if isinstance(fmt, str):
        formats.add(fmt)
        if fmt in _INT_RANGES and "integer" in (out.get("type") or ()):
            low, high = _INT_RANGES[fmt]
            out.setdefault("minimum", low)
            out.setdefault("maximum", high)
    return out


@functools.lru_cache(maxsize=None)
def load(spec_path: str) -> SpecValidator:
    """One validator per description per process (loading takes a second or two)."""
    return SpecValidator(spec_path)


# --- the sandbox's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    operation: str | None
    method: str
    path: str
    message: str
    t: float

    def reply(self) -> str:
        name = self.operation or f"{self.method} {self.path}"
        return f"The request does not match the Market's OpenAPI description ({name}): {self.message}"


class SpecCheck:
    """What one sandbox has seen: requests checked, violations found (kept across admin resets, so a
    test cannot wipe them), each also appended to ``log_path`` as a JSON line when one is given."""

    def __init__(self, spec_path: str | Path, log_path: str | Path | None = None) -> None:
        self.spec_path = str(spec_path)
        self.validator = load(self.spec_path)
        self.log_path = Path(log_path) if log_path else None
        self.violations: list[Violation] = []
        self.checked = 0
        self._lock = threading.Lock()

    def check(self, method: str, path: str, raw_query: str, headers: Mapping[str, str],
              body: bytes) -> Violation | None:
        pairs = parse_qsl(raw_query, keep_blank_values=True)
        operation, errors, _ = self.validator.check_request(method, path, pairs, headers, body)
        with self._lock:
            self.checked += 1
        if not errors:
            return None
        violation = Violation(operation, method, path, "; ".join(" ".join(e.split()) for e in errors), time.time())
        with self._lock:
            self.violations.append(violation)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as log:
                    log.write(json.dumps(asdict(violation), ensure_ascii=False) + "\n")
        return violation

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"enabled": True, "spec": self.spec_path, "checked": self.checked,
                    "violations": [asdict(v) for v in self.violations]}
