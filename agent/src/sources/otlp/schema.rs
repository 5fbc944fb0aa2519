//! The shape of the three OTLP export requests as prost materialises them, for the
//! pre-count (`precount.rs`): per message type, what one element of a repeated field of it
//! costs in memory (the Rust struct: a `Vec<T>` holds its elements inline), what it counts
//! as (log record, span, data point, attribute, ...), and which of its fields allocate
//! (nested messages, strings and bytes, repeated scalars). Every other field (scalars,
//! unknown fields) allocates nothing and is skipped.
//!
//! Field numbers are opentelemetry-proto's (`opentelemetry/proto/*/v1/*.proto`, the 0.33
//! crate's generated code); `precount/tests.rs` checks them against prost's encoding.

use std::mem::size_of;

use opentelemetry_proto::tonic::common::v1::{AnyValue, EntityRef, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, SummaryDataPoint,
};
use opentelemetry_proto::tonic::trace::v1::span::{Event as SpanEvent, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

/// What a message counts as in [`super::precount::Counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counted {
    LogRecord,
    Span,
    SpanEvent,
    SpanLink,
    DataPoint,
    /// A `KeyValue`, wherever it sits (resource, scope, record, span, point, nested maps).
    Attribute,
    /// Nothing counted, only its size.
    Other,
}

/// How a field is materialised.
#[derive(Debug, Clone, Copy)]
pub(super) enum Field {
    /// `repeated Message`: each element is one more `T` in a `Vec<T>`, then walked.
    Repeated(&'static Schema),
    /// A message held once (`Option<T>` or a oneof variant): inline in its parent (a
    /// repeated occurrence on the wire is merged into it), walked.
    Single(&'static Schema),
    /// `string` or `bytes`: its length is allocated.
    Text,
    /// `repeated string`: a `String` and its length per element.
    RepeatedText,
    /// `repeated fixed64` / `double`: 8 bytes per element, packed or not.
    Fixed64s,
    /// `repeated uint64` (varints): 8 bytes per element, however short on the wire.
    Varints,
}

/// One message type.
#[derive(Debug)]
pub(super) struct Schema {
    /// The generated Rust type's size: what one more element of a repeated field costs (0
    /// for types only ever held once, inline in their parent).
    pub(super) size: usize,
    pub(super) counted: Counted,
    /// Fields that allocate, by field number.
    pub(super) fields: &'static [(u32, Field)],
}

impl Schema {
    /// How field `number` is materialised; `None`: it allocates nothing (a scalar, or a
    /// field this version does not know), so it is skipped.
    pub(super) fn field(&self, number: u64) -> Option<Field> {
        self.fields
            .iter()
            .find(|(n, _)| u64::from(*n) == number)
            .map(|(_, field)| *field)
    }
}

const fn schema(size: usize, counted: Counted, fields: &'static [(u32, Field)]) -> Schema {
    Schema {
        size,
        counted,
        fields,
    }
}

use self::Counted::{Attribute, DataPoint, LogRecord as Record, Other};
use self::Field::{Fixed64s, Repeated, RepeatedText, Single, Text, Varints};

// common.proto, resource.proto -------------------------------------------------------------

/// `AnyValue`: string 1, array 5, kvlist 6, bytes 7 (bool, int, double: scalars).
static ANY_VALUE: Schema = schema(
    size_of::<AnyValue>(),
    Other,
    &[
        (1, Text),
        (5, Single(&ARRAY_VALUE)),
        (6, Single(&KEY_VALUE_LIST)),
        (7, Text),
    ],
);
/// `ArrayValue`: values 1.
static ARRAY_VALUE: Schema = schema(0, Other, &[(1, Repeated(&ANY_VALUE))]);
/// `KeyValueList`: values 1.
static KEY_VALUE_LIST: Schema = schema(0, Other, &[(1, Repeated(&KEY_VALUE))]);
/// `KeyValue`: key 1, value 2.
pub(super) static KEY_VALUE: Schema = schema(
    size_of::<KeyValue>(),
    Attribute,
    &[(1, Text), (2, Single(&ANY_VALUE))],
);
/// `InstrumentationScope`: name 1, version 2, attributes 3.
static SCOPE: Schema = schema(
    size_of::<InstrumentationScope>(),
    Other,
    &[(1, Text), (2, Text), (3, Repeated(&KEY_VALUE))],
);
/// `EntityRef`: schema_url 1, type 2, id_keys 3, description_keys 4.
static ENTITY_REF: Schema = schema(
    size_of::<EntityRef>(),
    Other,
    &[(1, Text), (2, Text), (3, RepeatedText), (4, RepeatedText)],
);
/// `Resource`: attributes 1, entity_refs 3.
static RESOURCE: Schema = schema(
    0,
    Other,
    &[(1, Repeated(&KEY_VALUE)), (3, Repeated(&ENTITY_REF))],
);

// logs.proto ------------------------------------------------------------------------------

/// `ExportLogsServiceRequest`: resource_logs 1.
pub(super) static EXPORT_LOGS: Schema = schema(0, Other, &[(1, Repeated(&RESOURCE_LOGS))]);
/// `ResourceLogs`: resource 1, scope_logs 2, schema_url 3.
static RESOURCE_LOGS: Schema = schema(
    size_of::<ResourceLogs>(),
    Other,
    &[
        (1, Single(&RESOURCE)),
        (2, Repeated(&SCOPE_LOGS)),
        (3, Text),
    ],
);
/// `ScopeLogs`: scope 1, log_records 2, schema_url 3.
static SCOPE_LOGS: Schema = schema(
    size_of::<ScopeLogs>(),
    Other,
    &[(1, Single(&SCOPE)), (2, Repeated(&LOG_RECORD)), (3, Text)],
);
/// `LogRecord`: severity_text 3, body 5, attributes 6, trace_id 9, span_id 10, event_name 12.
pub(super) static LOG_RECORD: Schema = schema(
    size_of::<LogRecord>(),
    Record,
    &[
        (3, Text),
        (5, Single(&ANY_VALUE)),
        (6, Repeated(&KEY_VALUE)),
        (9, Text),
        (10, Text),
        (12, Text),
    ],
);

// trace.proto -----------------------------------------------------------------------------

/// `ExportTraceServiceRequest`: resource_spans 1.
pub(super) static EXPORT_TRACES: Schema = schema(0, Other, &[(1, Repeated(&RESOURCE_SPANS))]);
/// `ResourceSpans`: resource 1, scope_spans 2, schema_url 3.
static RESOURCE_SPANS: Schema = schema(
    size_of::<ResourceSpans>(),
    Other,
    &[
        (1, Single(&RESOURCE)),
        (2, Repeated(&SCOPE_SPANS)),
        (3, Text),
    ],
);
/// `ScopeSpans`: scope 1, spans 2, schema_url 3.
static SCOPE_SPANS: Schema = schema(
    size_of::<ScopeSpans>(),
    Other,
    &[(1, Single(&SCOPE)), (2, Repeated(&SPAN)), (3, Text)],
);
/// `Span`: trace_id 1, span_id 2, trace_state 3, parent_span_id 4, name 5, attributes 9,
/// events 11, links 13, status 15.
pub(super) static SPAN: Schema = schema(
    size_of::<Span>(),
    Counted::Span,
    &[
        (1, Text),
        (2, Text),
        (3, Text),
        (4, Text),
        (5, Text),
        (9, Repeated(&KEY_VALUE)),
        (11, Repeated(&SPAN_EVENT)),
        (13, Repeated(&SPAN_LINK)),
        (15, Single(&STATUS)),
    ],
);
/// `Span.Event`: name 2, attributes 3.
static SPAN_EVENT: Schema = schema(
    size_of::<SpanEvent>(),
    Counted::SpanEvent,
    &[(2, Text), (3, Repeated(&KEY_VALUE))],
);
/// `Span.Link`: trace_id 1, span_id 2, trace_state 3, attributes 4.
static SPAN_LINK: Schema = schema(
    size_of::<Link>(),
    Counted::SpanLink,
    &[(1, Text), (2, Text), (3, Text), (4, Repeated(&KEY_VALUE))],
);
/// `Status`: message 2.
static STATUS: Schema = schema(0, Other, &[(2, Text)]);

// metrics.proto ---------------------------------------------------------------------------

/// `ExportMetricsServiceRequest`: resource_metrics 1.
pub(super) static EXPORT_METRICS: Schema = schema(0, Other, &[(1, Repeated(&RESOURCE_METRICS))]);
/// `ResourceMetrics`: resource 1, scope_metrics 2, schema_url 3.
static RESOURCE_METRICS: Schema = schema(
    size_of::<ResourceMetrics>(),
    Other,
    &[
        (1, Single(&RESOURCE)),
        (2, Repeated(&SCOPE_METRICS)),
        (3, Text),
    ],
);
/// `ScopeMetrics`: scope 1, metrics 2, schema_url 3.
static SCOPE_METRICS: Schema = schema(
    size_of::<ScopeMetrics>(),
    Other,
    &[(1, Single(&SCOPE)), (2, Repeated(&METRIC)), (3, Text)],
);
/// `Metric`: name 1, description 2, unit 3, gauge 5, sum 7, histogram 9,
/// exponential_histogram 10, summary 11, metadata 12.
static METRIC: Schema = schema(
    size_of::<Metric>(),
    Other,
    &[
        (1, Text),
        (2, Text),
        (3, Text),
        (5, Single(&NUMBER_POINTS)),
        (7, Single(&NUMBER_POINTS)),
        (9, Single(&HISTOGRAM_POINTS)),
        (10, Single(&EXPONENTIAL_POINTS)),
        (11, Single(&SUMMARY_POINTS)),
        (12, Repeated(&KEY_VALUE)),
    ],
);
/// `Gauge` and `Sum`: data_points 1.
static NUMBER_POINTS: Schema = schema(0, Other, &[(1, Repeated(&NUMBER_POINT))]);
/// `Histogram`: data_points 1.
static HISTOGRAM_POINTS: Schema = schema(0, Other, &[(1, Repeated(&HISTOGRAM_POINT))]);
/// `ExponentialHistogram`: data_points 1.
static EXPONENTIAL_POINTS: Schema = schema(0, Other, &[(1, Repeated(&EXPONENTIAL_POINT))]);
/// `Summary`: data_points 1.
static SUMMARY_POINTS: Schema = schema(0, Other, &[(1, Repeated(&SUMMARY_POINT))]);
/// `NumberDataPoint`: exemplars 5, attributes 7.
pub(super) static NUMBER_POINT: Schema = schema(
    size_of::<NumberDataPoint>(),
    DataPoint,
    &[(5, Repeated(&EXEMPLAR)), (7, Repeated(&KEY_VALUE))],
);
/// `HistogramDataPoint`: bucket_counts 6, explicit_bounds 7, exemplars 8, attributes 9.
static HISTOGRAM_POINT: Schema = schema(
    size_of::<HistogramDataPoint>(),
    DataPoint,
    &[
        (6, Fixed64s),
        (7, Fixed64s),
        (8, Repeated(&EXEMPLAR)),
        (9, Repeated(&KEY_VALUE)),
    ],
);
/// `ExponentialHistogramDataPoint`: attributes 1, positive 8, negative 9, exemplars 11.
static EXPONENTIAL_POINT: Schema = schema(
    size_of::<ExponentialHistogramDataPoint>(),
    DataPoint,
    &[
        (1, Repeated(&KEY_VALUE)),
        (8, Single(&BUCKETS)),
        (9, Single(&BUCKETS)),
        (11, Repeated(&EXEMPLAR)),
    ],
);
/// `ExponentialHistogramDataPoint.Buckets`: bucket_counts 2 (uint64 varints).
pub(super) static BUCKETS: Schema = schema(size_of::<Buckets>(), Other, &[(2, Varints)]);
/// `SummaryDataPoint`: quantile_values 6, attributes 7.
static SUMMARY_POINT: Schema = schema(
    size_of::<SummaryDataPoint>(),
    DataPoint,
    &[(6, Repeated(&QUANTILE)), (7, Repeated(&KEY_VALUE))],
);
/// `SummaryDataPoint.ValueAtQuantile`: two doubles.
static QUANTILE: Schema = schema(size_of::<ValueAtQuantile>(), Other, &[]);
/// `Exemplar`: span_id 4, trace_id 5, filtered_attributes 7.
static EXEMPLAR: Schema = schema(
    size_of::<Exemplar>(),
    Other,
    &[(4, Text), (5, Text), (7, Repeated(&KEY_VALUE))],
);
