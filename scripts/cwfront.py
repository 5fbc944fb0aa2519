#!/usr/bin/env python3
"""Test-only front for CloudWatch: smithy rpc-v2-cbor in, the emulator's JSON 1.0 protocol out.

Since aws-sdk-cloudwatch 1.100 the Rust SDK speaks only rpc-v2-cbor to CloudWatch; the AWS
emulator (moto) speaks CloudWatch's query and JSON 1.0 protocols but not CBOR. This front
listens on a loopback port and, per request:

  POST /service/GraniteServiceVersion20100801/operation/<Op>   (smithy-protocol: rpc-v2-cbor,
  CBOR body, optionally gzip: PutMetricData is compressed above 10 KiB)
    -> POST <upstream>/  X-Amz-Target: GraniteServiceVersion20100801.<Op>, JSON 1.0 body,
       the caller's SigV4 headers (moto takes the region and account from them)
  <- the JSON answer or error, re-encoded as CBOR with `smithy-protocol: rpc-v2-cbor`

Both protocols serialize the operation's input and output structures member by member, so
the translation is driven by the service model botocore ships (installed with moto): it only
has to change how each scalar is spelled. Timestamps are CBOR tag 1 (epoch seconds, integer
or float) one side and epoch-second numbers the other; blobs are byte strings one side and
base64 the other; non-finite doubles are floats one side and "NaN"/"Infinity" strings the
other; doubles must be CBOR floats and integers CBOR integers for the SDK's decoder. Errors
keep their HTTP status; the body becomes {"__type": "com.amazonaws.cloudwatch#<Shape>",
"message": ...} and the `x-amzn-query-error: <Code>;<Sender|Receiver>` header (CloudWatch is
awsQueryCompatible: the SDK takes the error code from that header) is passed on or derived
from the model.

Usage: cwfront.py --upstream http://127.0.0.1:<moto port> [--port N]   (prints the port)
GET /ping answers 200 once it listens. Nothing here is used in production.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import gzip
import json
import math
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import botocore.session
import cbor2

SERVICE_MODEL = botocore.session.get_session().get_service_model("cloudwatch")
TARGET_PREFIX = SERVICE_MODEL.metadata["targetPrefix"]  # GraniteServiceVersion20100801
SMITHY_NAMESPACE = "com.amazonaws.cloudwatch"
PATH_PREFIX = f"/service/{TARGET_PREFIX}/operation/"
UTC = datetime.timezone.utc
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class TranslationError(ValueError):
    """A value that does not fit its shape: the caller sent something the protocol forbids."""


# ---- CBOR request values -> JSON 1.0 request values --------------------------------------


def to_json(value: Any, shape: Any, path: str = "") -> Any:
    """A decoded CBOR value of `shape` as the JSON protocol spells it."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise TranslationError(f"{path or 'input'}: expected a map")
        out = {}
        for name, member in value.items():
            if name not in shape.members:
                raise TranslationError(f"{path}{name}: not a member of {shape.name}")
            if member is not None:
                out[name] = to_json(member, shape.members[name], f"{path}{name}.")
        return out
    if kind == "list":
        if not isinstance(value, list):
            raise TranslationError(f"{path}: expected an array")
        return [to_json(item, shape.member, f"{path}[{i}].") for i, item in enumerate(value)]
    if kind == "map":
        if not isinstance(value, dict):
            raise TranslationError(f"{path}: expected a map")
        return {key: to_json(item, shape.value, f"{path}{key}.") for key, item in value.items()}
    if kind == "timestamp":
        # rpc-v2-cbor: tag 1 only (cbor2 decodes it to an aware datetime).
        if not isinstance(value, datetime.datetime):
            raise TranslationError(f"{path}: a timestamp must be CBOR tag 1, got {value!r}")
        return value.timestamp()
    if kind == "blob":
        if not isinstance(value, (bytes, bytearray)):
            raise TranslationError(f"{path}: a blob must be a CBOR byte string")
        return base64.b64encode(value).decode("ascii")
    if kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TranslationError(f"{path}: expected a number, got {value!r}")
        value = float(value)
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if kind in ("integer", "long", "short", "byte"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TranslationError(f"{path}: expected an integer, got {value!r}")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise TranslationError(f"{path}: expected a boolean, got {value!r}")
        return value
    if not isinstance(value, str):  # string, enums
        raise TranslationError(f"{path}: expected a text string, got {value!r}")
    return value


# ---- JSON 1.0 response values -> CBOR response values -------------------------------------


def from_json(value: Any, shape: Any) -> Any:
    """A JSON-protocol value of `shape` as rpc-v2-cbor spells it (members the model does not
    know, and nulls, are left out: the SDK's decoder expects neither)."""
    kind = shape.type_name
    if kind == "structure":
        return {
            name: from_json(member, shape.members[name])
            for name, member in value.items()
            if name in shape.members and member is not None
        }
    if kind == "list":
        return [from_json(item, shape.member) for item in value if item is not None]
    if kind == "map":
        return {key: from_json(item, shape.value) for key, item in value.items() if item is not None}
    if kind == "timestamp":
        if isinstance(value, str):  # ISO 8601 (some emulator versions)
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return datetime.datetime.fromtimestamp(value, UTC)
    if kind == "blob":
        return base64.b64decode(value)
    if kind in ("double", "float"):
        return NON_FINITE[value] if isinstance(value, str) else float(value)
    if kind in ("integer", "long", "short", "byte"):
        return int(value)
    return value


def encode(document: Any) -> bytes:
    # datetime -> tag 1 (int seconds, or a float when there are fractions of a second).
    return cbor2.dumps(document, datetime_as_timestamp=True, timezone=UTC)


# ---- errors --------------------------------------------------------------------------------


def error_shape(operation: Any, name_or_code: str) -> Any:
    """The operation's error shape named `name_or_code` or carrying it as its query code."""
    for shape in operation.error_shapes:
        if name_or_code in (shape.name, shape.metadata.get("error", {}).get("code")):
            return shape
    return None


def translate_error(operation: Any, status: int, headers: Any, body: bytes) -> tuple[int, dict, Any]:
    """(status, extra headers, CBOR document) for an error answer of the emulator."""
    try:
        error = json.loads(body or b"{}")
        if not isinstance(error, dict):
            raise ValueError("not an object")
    except ValueError:
        text = body[:300].decode("utf-8", "replace")
        return status, {}, {"__type": "cwfront#UpstreamError", "message": f"emulator answered {status}: {text}"}
    raw_type = str(error.get("__type") or error.get("code") or "UnknownError")
    name = raw_type.split("#")[-1].split(":")[0]
    query_error = headers.get("x-amzn-query-error")
    code = query_error.split(";")[0] if query_error else name
    shape = error_shape(operation, name) or error_shape(operation, code)
    document = {"__type": f"{SMITHY_NAMESPACE}#{shape.name if shape is not None else name}"}
    if shape is not None:
        members = {k: v for k, v in error.items() if k in shape.members and k != "message"}
        document.update(from_json(members, shape))
    message = error.get("message") or error.get("Message")
    if message is not None:
        document["message"] = str(message)
    extra = {}
    if query_error:
        extra["x-amzn-query-error"] = query_error
    elif shape is not None and "code" in shape.metadata.get("error", {}):
        fault = "Sender" if shape.metadata["error"].get("senderFault") else "Receiver"
        extra["x-amzn-query-error"] = f"{shape.metadata['error']['code']};{fault}"
    return status, extra, document


# ---- HTTP ------------------------------------------------------------------------------------


class Front(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK pools connections
    upstream = ""  # set by serve()
    server_version = "cwfront"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        sys.stderr.write("cwfront: %s\n" % (format % args))

    def do_GET(self) -> None:
        if self.path == "/ping":
            self.reply(200, {"content-type": "text/plain"}, b"ok\n")
        else:
            self.reply(404, {"content-type": "text/plain"}, b"not found\n")

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.headers.get("content-encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        return body

    def do_POST(self) -> None:
        try:
            body = self.read_body()
        except (ValueError, OSError, EOFError) as e:
            return self.reply_cbor(400, {}, {"__type": "cwfront#BadRequest", "message": f"unreadable body: {e}"})
        if self.headers.get("smithy-protocol") != "rpc-v2-cbor":
            return self.reply_cbor(400, {}, {"__type": "cwfront#BadRequest", "message": "smithy-protocol: rpc-v2-cbor expected"})
        if not self.path.startswith(PATH_PREFIX):
            return self.reply_cbor(404, {}, {"__type": "UnknownOperationException", "message": self.path})
        name = self.path[len(PATH_PREFIX):]
        if name not in SERVICE_MODEL.operation_names:
            return self.reply_cbor(404, {}, {"__type": "UnknownOperationException", "message": name})
        operation = SERVICE_MODEL.operation_model(name)
        try:
            request = cbor2.loads(body) if body else {}
            payload = to_json(request, operation.input_shape) if operation.input_shape else {}
        except (TranslationError, cbor2.CBORDecodeError) as e:
            return self.reply_cbor(400, {}, {"__type": "cwfront#SerializationException", "message": str(e)})
        status, headers, answer = self.forward(name, payload)
        if status >= 300:
            status, extra, document = translate_error(operation, status, headers, answer)
            return self.reply_cbor(status, extra, document, headers.get("x-amzn-requestid"))
        try:
            output = json.loads(answer or b"{}")
            document = from_json(output, operation.output_shape) if operation.output_shape else {}
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            # Not the JSON protocol (without SigV4 headers moto cannot tell the service).
            text = answer[:200].decode("utf-8", "replace")
            message = f"untranslatable emulator answer ({e}): {text}"
            return self.reply_cbor(502, {}, {"__type": "cwfront#UpstreamError", "message": message})
        self.reply_cbor(status, {}, document, headers.get("x-amzn-requestid"))

    def forward(self, operation: str, payload: dict) -> tuple[int, Any, bytes]:
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"{TARGET_PREFIX}.{operation}",
        }
        for name in ("authorization", "x-amz-date", "x-amz-security-token", "user-agent"):
            if self.headers.get(name):
                headers[name] = self.headers[name]
        request = urllib.request.Request(
            self.upstream + "/", data=json.dumps(payload).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()
        except OSError as e:  # the emulator is down: what a real outage looks like to the SDK
            return 503, {}, json.dumps({"__type": "ServiceUnavailable", "message": str(e)}).encode()

    def reply_cbor(self, status: int, extra: dict, document: Any, request_id: str | None = None) -> None:
        headers = {"content-type": "application/cbor", "smithy-protocol": "rpc-v2-cbor", **extra}
        if request_id:
            headers["x-amzn-requestid"] = request_id
        self.reply(status, headers, encode(document))

    def reply(self, status: int, headers: dict, body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(upstream: str, port: int = 0) -> ThreadingHTTPServer:
    """A front bound to 127.0.0.1:`port` (0: any free port); call serve_forever() on it."""
    handler = type("BoundFront", (Front,), {"upstream": upstream.rstrip("/")})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True, help="the emulator, e.g. http://127.0.0.1:5000")
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: any free one)")
    args = parser.parse_args()
    server = serve(args.upstream, args.port)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
