"""Tests of scripts/cwfront.py: the translation of each shape kind against CloudWatch's real
service model, then every operation the agent and `agent provision` call, as CBOR, through the
front to a real emulator and back. Run: .venv/bin/python -m pytest -q scripts/test_cwfront.py
"""

from __future__ import annotations

import datetime
import gzip
import math
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import cbor2
import pytest
from botocore.model import ShapeResolver

sys.path.insert(0, os.path.dirname(__file__))
import cwfront  # noqa: E402

UTC = datetime.timezone.utc
MODEL = cwfront.SERVICE_MODEL


def op(name):
    return MODEL.operation_model(name)


def tag1(value):
    """The CBOR encoding of a timestamp: tag 1 (0xc1) then an integer or a float."""
    return cbor2.dumps(cbor2.CBORTag(1, value))


# ---- requests: CBOR -> JSON 1.0 -----------------------------------------------------------


def test_put_metric_data_timestamps_lists_and_doubles_become_json():
    ts = datetime.datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
    request = cbor2.loads(
        cbor2.dumps(
            {
                "Namespace": "Test/Api",
                "MetricData": [
                    {
                        "MetricName": "Latency",
                        "Dimensions": [{"Name": "Route", "Value": "/a"}],
                        "Timestamp": cbor2.CBORTag(1, ts.timestamp()),
                        "Values": [1.5, 2.0],
                        "Counts": [3.0, 1.0],
                        "StorageResolution": 1,
                        "Unit": "Milliseconds",
                    },
                    {"MetricName": "Bad", "Value": math.nan, "Timestamp": cbor2.CBORTag(1, 1772366400)},
                ],
            }
        )
    )
    out = cwfront.to_json(request, op("PutMetricData").input_shape)
    first, second = out["MetricData"]
    assert first["Timestamp"] == pytest.approx(1772366400.25)
    assert first["Dimensions"] == [{"Name": "Route", "Value": "/a"}]
    assert first["Values"] == [1.5, 2.0] and first["Counts"] == [3.0, 1.0]
    assert first["StorageResolution"] == 1 and isinstance(first["StorageResolution"], int)
    assert second["Value"] == "NaN", "JSON spells non-finite doubles as strings"
    assert second["Timestamp"] == 1772366400


def test_untagged_timestamps_and_wrong_types_are_refused():
    shape = op("GetMetricStatistics").input_shape
    with pytest.raises(cwfront.TranslationError, match="tag 1"):
        cwfront.to_json({"StartTime": 1772366400}, shape)
    with pytest.raises(cwfront.TranslationError, match="integer"):
        cwfront.to_json({"Period": 60.5}, shape)
    with pytest.raises(cwfront.TranslationError, match="not a member"):
        cwfront.to_json({"Nope": 1}, shape)
    with pytest.raises(cwfront.TranslationError, match="array"):
        cwfront.to_json({"Statistics": "Sum"}, shape)


def test_nested_alarm_metrics_keep_their_structure():
    request = {
        "AlarmName": "app-dev-agent-api-5xx-rate",
        "EvaluationPeriods": 2,
        "Threshold": 5,  # an integer for a double member: still a number in JSON
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
        "Metrics": [
            {
                "Id": "errors",
                "ReturnData": False,
                "MetricStat": {
                    "Metric": {
                        "Namespace": "App/Api",
                        "MetricName": "ErrorCount",
                        "Dimensions": [{"Name": "Service", "Value": "api"}],
                    },
                    "Period": 300,
                    "Stat": "Sum",
                },
            },
            {"Id": "rate", "Expression": "100 * errors / requests", "ReturnData": True},
        ],
    }
    out = cwfront.to_json(request, op("PutMetricAlarm").input_shape)
    assert out["Threshold"] == 5.0 and isinstance(out["Threshold"], float)
    assert out["Metrics"][0]["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "Service", "Value": "api"}]
    assert out["Metrics"][0]["ReturnData"] is False
    assert out["Metrics"][1] == {"Id": "rate", "Expression": "100 * errors / requests", "ReturnData": True}


BLOBS = ShapeResolver(
    {
        "Doc": {"type": "structure", "members": {"Data": {"shape": "Bytes"}, "When": {"shape": "Time"}}},
        "Bytes": {"type": "blob"},
        "Time": {"type": "timestamp"},
    }
).get_shape_by_name("Doc")


def test_blobs_are_byte_strings_in_cbor_and_base64_in_json():
    assert cwfront.to_json({"Data": b"\x00\xffhi"}, BLOBS) == {"Data": "AP9oaQ=="}
    with pytest.raises(cwfront.TranslationError, match="byte string"):
        cwfront.to_json({"Data": "AP9oaQ=="}, BLOBS)
    assert cwfront.from_json({"Data": "AP9oaQ=="}, BLOBS) == {"Data": b"\x00\xffhi"}
    # CloudWatch's one blob: GetMetricWidgetImage's PNG.
    image = cwfront.from_json({"MetricWidgetImage": "iVBORw=="}, op("GetMetricWidgetImage").output_shape)
    assert cbor2.dumps(image) == b"\xa1\x71MetricWidgetImage\x44\x89PNG"


# ---- responses: JSON 1.0 -> CBOR ----------------------------------------------------------


def test_datapoints_get_tag_1_timestamps_and_float_doubles():
    answer = {
        "Label": "RequestCount",
        "Datapoints": [{"Timestamp": 1772366400, "Sum": 110, "SampleCount": 110.0, "Unit": "Count"}],
        "Unknown": "dropped",
        "Null": None,
    }
    document = cwfront.from_json(answer, op("GetMetricStatistics").output_shape)
    encoded = cwfront.encode(document)
    point = document["Datapoints"][0]
    assert point["Timestamp"] == datetime.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert tag1(1772366400) in encoded, "whole seconds: tag 1 + integer"
    assert isinstance(point["Sum"], float), "the SDK decodes doubles only from CBOR floats"
    assert b"\x63Sum\xfb" in encoded, "Sum is a float64"
    assert set(document) == {"Label", "Datapoints"}
    assert cbor2.loads(encoded)["Datapoints"][0]["Timestamp"] == point["Timestamp"]


def test_fractional_timestamps_are_tag_1_floats_and_longs_stay_integers():
    answer = {
        "DashboardEntries": [
            {"DashboardName": "d", "DashboardArn": "arn:x", "LastModified": 1772366400.542, "Size": 14}
        ]
    }
    document = cwfront.from_json(answer, op("ListDashboards").output_shape)
    encoded = cwfront.encode(document)
    assert b"\xc1\xfb" in encoded, "a fractional timestamp is tag 1 + float64"
    entry = cbor2.loads(encoded)["DashboardEntries"][0]
    assert entry["LastModified"].timestamp() == pytest.approx(1772366400.542, abs=1e-6)
    assert entry["Size"] == 14 and b"\x64Size\x0e" in encoded


def test_metric_data_results_lists_of_timestamps_and_non_finite_values():
    answer = {
        "MetricDataResults": [
            {
                "Id": "q",
                "Timestamps": [1772366460, 1772366400],
                "Values": [1, "NaN", "Infinity"],
                "StatusCode": "Complete",
            }
        ],
        "Messages": [],
    }
    result = cwfront.from_json(answer, op("GetMetricData").output_shape)["MetricDataResults"][0]
    assert [t.timestamp() for t in result["Timestamps"]] == [1772366460, 1772366400]
    assert result["Values"][0] == 1.0 and math.isnan(result["Values"][1]) and result["Values"][2] == math.inf


def test_alarm_descriptions_keep_nested_structures():
    answer = {
        "MetricAlarms": [
            {
                "AlarmName": "a",
                "StateUpdatedTimestamp": "2026-03-01T12:00:00.000Z",
                "Threshold": 1,
                "EvaluationPeriods": 3,
                "Metrics": [{"Id": "m", "MetricStat": {"Metric": {"MetricName": "x", "Dimensions": []}, "Period": 60, "Stat": "Sum"}}],
            }
        ],
        "CompositeAlarms": [],
    }
    alarm = cwfront.from_json(answer, op("DescribeAlarms").output_shape)["MetricAlarms"][0]
    assert alarm["StateUpdatedTimestamp"] == datetime.datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert alarm["Threshold"] == 1.0 and isinstance(alarm["Threshold"], float)
    assert alarm["Metrics"][0]["MetricStat"]["Period"] == 60


# ---- errors --------------------------------------------------------------------------------


def test_errors_become_smithy_shape_ids_with_the_query_code_header():
    body = b'{"__type": "GraniteServiceVersion20100801#ResourceNotFound", "message": "Dashboard does not exist", "Message": "Dashboard does not exist"}'
    status, headers, document = cwfront.translate_error(
        op("GetDashboard"), 404, {"x-amzn-query-error": "ResourceNotFound;Sender"}, body
    )
    assert status == 404
    assert document == {"__type": "com.amazonaws.cloudwatch#DashboardNotFoundError", "message": "Dashboard does not exist"}
    assert headers == {"x-amzn-query-error": "ResourceNotFound;Sender"}


def test_a_missing_query_code_header_is_derived_from_the_model():
    body = b'{"__type": "DashboardInvalidInputError", "message": "Body is invalid JSON"}'
    status, headers, document = cwfront.translate_error(op("PutDashboard"), 400, {}, body)
    assert (status, document["__type"]) == (400, "com.amazonaws.cloudwatch#DashboardInvalidInputError")
    assert headers == {"x-amzn-query-error": "InvalidParameterInput;Sender"}
    _, headers, _ = cwfront.translate_error(op("PutDashboard"), 500, {}, b'{"__type": "InternalServiceFault"}')
    assert headers == {"x-amzn-query-error": "InternalServiceError;Receiver"}


def test_an_unknown_error_keeps_its_name_and_a_non_json_answer_keeps_its_status():
    _, headers, document = cwfront.translate_error(op("PutMetricData"), 400, {}, b'{"__type": "ThrottlingException", "message": "slow down"}')
    assert document == {"__type": "com.amazonaws.cloudwatch#ThrottlingException", "message": "slow down"}
    assert headers == {}
    status, _, document = cwfront.translate_error(op("PutMetricData"), 500, {}, b"<html>boom</html>")
    assert status == 500 and document["__type"] == "cwfront#UpstreamError" and "boom" in document["message"]


# ---- end to end: the front in front of a real emulator ------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def front():
    moto_port = free_port()
    moto = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{moto_port}/moto-api/data.json", timeout=1).read()
            break
        except OSError:
            assert time.monotonic() < deadline and moto.poll() is None, "moto did not start"
            time.sleep(0.1)
    server = cwfront.serve(f"http://127.0.0.1:{moto_port}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    moto.terminate()
    moto.wait(10)


AUTH = "AWS4-HMAC-SHA256 Credential=testing/20260301/us-east-1/monitoring/aws4_request, SignedHeaders=host, Signature=00"


def call(front, operation, document, *, gzip_body=False, headers=None):
    """(status, headers, decoded CBOR) of one rpc-v2-cbor call, as the Rust SDK makes it."""
    body = cbor2.dumps(document, datetime_as_timestamp=True, timezone=UTC)
    sent = {
        "content-type": "application/cbor",
        "accept": "application/cbor",
        "smithy-protocol": "rpc-v2-cbor",
        "authorization": AUTH,
        "x-amz-date": "20260301T120000Z",
    }
    if gzip_body:
        body = gzip.compress(body)
        sent["content-encoding"] = "gzip"
    sent.update(headers or {})
    request = urllib.request.Request(
        f"{front}/service/GraniteServiceVersion20100801/operation/{operation}", data=body, headers=sent, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, answer, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        status, answer, raw = e.code, e.headers, e.read()
    if status < 300 or answer.get("content-type") == "application/cbor":
        assert answer["smithy-protocol"] == "rpc-v2-cbor"
        assert answer["content-type"] == "application/cbor"
    return status, answer, cbor2.loads(raw)


def test_metrics_round_trip_through_put_get_list(front):
    now = datetime.datetime.now(UTC).replace(microsecond=0)
    dims = [{"Name": "Service", "Value": "api"}]
    data = [
        {"MetricName": "Latency", "Dimensions": dims, "Timestamp": now, "Values": [10.0, 30.0], "Counts": [3.0, 1.0], "Unit": "Milliseconds"},
        {"MetricName": "RequestCount", "Dimensions": dims, "Timestamp": now, "Value": 4.0, "Unit": "Count", "StorageResolution": 1},
    ]
    # The SDK gzips PutMetricData bodies over 10 KiB.
    status, _, document = call(front, "PutMetricData", {"Namespace": "Test/Front", "MetricData": data}, gzip_body=True)
    assert (status, document) == (200, {})

    span = {"StartTime": now - datetime.timedelta(minutes=10), "EndTime": now + datetime.timedelta(minutes=10)}
    status, _, stats = call(
        front,
        "GetMetricStatistics",
        {"Namespace": "Test/Front", "MetricName": "Latency", "Dimensions": dims, "Period": 60, "Statistics": ["Sum", "SampleCount", "Maximum"], **span},
    )
    assert status == 200
    (point,) = stats["Datapoints"]
    assert isinstance(point["Timestamp"], datetime.datetime), "tag 1 decodes to a datetime"
    assert (point["Sum"], point["SampleCount"], point["Maximum"]) == (60.0, 4.0, 30.0)

    query = {"Id": "q", "MetricStat": {"Metric": {"Namespace": "Test/Front", "MetricName": "RequestCount", "Dimensions": dims}, "Period": 60, "Stat": "Sum"}}
    status, _, data_out = call(front, "GetMetricData", {"MetricDataQueries": [query], **span})
    assert status == 200
    (result,) = data_out["MetricDataResults"]
    assert result["Id"] == "q" and result["Values"] == [4.0]
    assert all(isinstance(t, datetime.datetime) for t in result["Timestamps"])

    status, _, listed = call(front, "ListMetrics", {"Namespace": "Test/Front"})
    assert status == 200
    assert sorted(m["MetricName"] for m in listed["Metrics"]) == ["Latency", "RequestCount"]
    assert listed["Metrics"][0]["Dimensions"] == dims


def test_dashboards_put_get_list_delete_and_not_found(front):
    body = '{"widgets":[]}'
    assert call(front, "PutDashboard", {"DashboardName": "app-dev-agent-x", "DashboardBody": body})[0] == 200
    status, _, got = call(front, "GetDashboard", {"DashboardName": "app-dev-agent-x"})
    assert status == 200 and got["DashboardBody"] == body and got["DashboardName"] == "app-dev-agent-x"
    status, _, listed = call(front, "ListDashboards", {"DashboardNamePrefix": "app-dev-agent-"})
    (entry,) = listed["DashboardEntries"]
    assert entry["DashboardName"] == "app-dev-agent-x" and isinstance(entry["LastModified"], datetime.datetime)
    assert isinstance(entry["Size"], int)
    assert call(front, "DeleteDashboards", {"DashboardNames": ["app-dev-agent-x"]})[:2][0] == 200

    status, headers, error = call(front, "GetDashboard", {"DashboardName": "app-dev-agent-x"})
    assert status == 404
    assert error["__type"] == "com.amazonaws.cloudwatch#DashboardNotFoundError"
    assert error["message"]
    assert headers["x-amzn-query-error"] == "ResourceNotFound;Sender"

    status, headers, error = call(front, "PutDashboard", {"DashboardName": "bad", "DashboardBody": "not json"})
    assert status == 400 and error["__type"] == "com.amazonaws.cloudwatch#DashboardInvalidInputError"
    assert headers["x-amzn-query-error"].startswith("InvalidParameterInput;")


def test_alarms_put_describe_delete(front):
    alarm = {
        "AlarmName": "app-dev-agent-api-down",
        "Namespace": "Test/Front",
        "MetricName": "HealthCheck",
        "Dimensions": [{"Name": "Endpoint", "Value": "/health"}],
        "Statistic": "Minimum",
        "Period": 60,
        "EvaluationPeriods": 3,
        "DatapointsToAlarm": 2,
        "Threshold": 1.0,
        "ComparisonOperator": "LessThanThreshold",
        "TreatMissingData": "breaching",
        "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:pager"],
    }
    assert call(front, "PutMetricAlarm", alarm)[0] == 200
    status, _, described = call(front, "DescribeAlarms", {"AlarmNamePrefix": "app-dev-agent-"})
    assert status == 200
    (got,) = described["MetricAlarms"]
    assert got["Threshold"] == 1.0 and got["EvaluationPeriods"] == 3 and got["TreatMissingData"] == "breaching"
    assert got["Dimensions"] == alarm["Dimensions"] and got["AlarmActions"] == alarm["AlarmActions"]
    assert isinstance(got["StateUpdatedTimestamp"], datetime.datetime)
    assert call(front, "DeleteAlarms", {"AlarmNames": ["app-dev-agent-api-down"]})[0] == 200
    assert call(front, "DescribeAlarms", {"AlarmNamePrefix": "app-dev-agent-"})[2].get("MetricAlarms", []) == []


def test_requests_outside_the_protocol_are_refused(front):
    status, _, error = call(front, "ListMetrics", {}, headers={"smithy-protocol": "rpc-v2-json"})
    assert status == 400 and "rpc-v2-cbor" in error["message"]
    status, _, error = call(front, "NoSuchOperation", {})
    assert status == 404 and error["__type"] == "UnknownOperationException"
    status, _, error = call(front, "GetMetricStatistics", {"Namespace": "x", "StartTime": 5})
    assert status == 400 and "tag 1" in error["message"]
    status, _, error = call(front, "ListMetrics", {}, headers={"authorization": ""})
    assert status == 502 and error["__type"] == "cwfront#UpstreamError", "no SigV4: moto cannot route it"
