//! OTLP/gRPC: the three `Export` methods, served with a codec that runs the pre-count
//! (`precount.rs`) on each message before prost decodes it. tonic hands the codec the
//! whole message, already inflated (gzip) and capped at `max_body_bytes`; a message that
//! would decode into more than the limit is answered RESOURCE_EXHAUSTED, malformed wire
//! data INVALID_ARGUMENT, neither decoded. (opentelemetry-proto's generated servers
//! hard-wire prost's codec, so the services are written out here, as tonic generates them.)

use std::marker::PhantomData;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::bytes::Buf as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{
    BoxFuture, CompressionEncoding, Context, EnabledCompressionEncodings, Poll, Service, StdError,
    http,
};
use tonic::{Status, server::NamedService, server::UnaryService};

use super::Receiver;
use super::grpc_listener::CappedIncoming;
use super::precount::{Refusal, Signal};
use crate::pipeline::Closed;
use crate::sources::http::ConnectionLimits;

/// Interval of HTTP/2 keepalive pings on gRPC connections, and how long an answer may take.
const GRPC_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);

/// Concurrent requests (streams) per gRPC connection.
const GRPC_MAX_STREAMS: u32 = 64;

/// Serves the three OTLP services on `listener` until `shutdown` fires.
pub(super) async fn serve_grpc(
    listener: TcpListener,
    receiver: Receiver,
    max_body: usize,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let limits = ConnectionLimits::default();
    let incoming = CappedIncoming::new(listener, limits.max_connections, receiver.logs.clone());
    tonic::transport::Server::builder()
        // A request (its message included) must arrive and be handled within this; dead or
        // silent peers are found by keepalive pings; streams per connection are bounded.
        .timeout(limits.request_timeout)
        .http2_keepalive_interval(Some(GRPC_KEEPALIVE))
        .http2_keepalive_timeout(Some(GRPC_KEEPALIVE))
        .max_concurrent_streams(Some(GRPC_MAX_STREAMS))
        .concurrency_limit_per_connection(GRPC_MAX_STREAMS as usize)
        .add_service(ExportServer::<Traces>::new(receiver.clone(), max_body))
        .add_service(ExportServer::<Metrics>::new(receiver.clone(), max_body))
        .add_service(ExportServer::<Logs>::new(receiver, max_body))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// One OTLP signal's gRPC service.
pub(super) trait Export: Send + Sync + 'static {
    type Request: prost::Message + Default + Send + 'static;
    type Response: prost::Message + Default + Send + 'static;
    /// The gRPC service name.
    const SERVICE: &'static str;
    /// The one method's path.
    const PATH: &'static str;
    const SIGNAL: Signal;

    /// Hands a decoded request to the receiver.
    fn export(receiver: Receiver, request: Self::Request) -> BoxFuture<Self::Response, Status>;
}

/// `opentelemetry.proto.collector.logs.v1.LogsService`.
#[derive(Debug)]
pub(super) struct Logs;
/// `opentelemetry.proto.collector.trace.v1.TraceService`.
#[derive(Debug)]
pub(super) struct Traces;
/// `opentelemetry.proto.collector.metrics.v1.MetricsService`.
#[derive(Debug)]
pub(super) struct Metrics;

impl Export for Logs {
    type Request = ExportLogsServiceRequest;
    type Response = ExportLogsServiceResponse;
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    const SIGNAL: Signal = Signal::Logs;

    fn export(receiver: Receiver, request: Self::Request) -> BoxFuture<Self::Response, Status> {
        Box::pin(async move {
            match receiver.logs(&request).await {
                Ok(()) => Ok(ExportLogsServiceResponse::default()),
                Err(Closed) => Err(Status::unavailable("shutting down")),
            }
        })
    }
}

impl Export for Traces {
    type Request = ExportTraceServiceRequest;
    type Response = ExportTraceServiceResponse;
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    const SIGNAL: Signal = Signal::Traces;

    fn export(receiver: Receiver, request: Self::Request) -> BoxFuture<Self::Response, Status> {
        receiver.traces(&request);
        Box::pin(async { Ok(ExportTraceServiceResponse::default()) })
    }
}

impl Export for Metrics {
    type Request = ExportMetricsServiceRequest;
    type Response = ExportMetricsServiceResponse;
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    const SIGNAL: Signal = Signal::Metrics;

    fn export(receiver: Receiver, request: Self::Request) -> BoxFuture<Self::Response, Status> {
        receiver.metrics(&request);
        Box::pin(async { Ok(ExportMetricsServiceResponse::default()) })
    }
}

/// A signal's service: accepts gzip, messages up to `max_message` bytes (inflated).
#[derive(Debug)]
pub(super) struct ExportServer<E> {
    receiver: Receiver,
    max_message: usize,
    signal: PhantomData<fn() -> E>,
}

impl<E> Clone for ExportServer<E> {
    fn clone(&self) -> Self {
        Self {
            receiver: self.receiver.clone(),
            max_message: self.max_message,
            signal: PhantomData,
        }
    }
}

impl<E: Export> ExportServer<E> {
    pub(super) fn new(receiver: Receiver, max_message: usize) -> Self {
        Self {
            receiver,
            max_message,
            signal: PhantomData,
        }
    }

    /// One unary call through tonic's server with the admitting codec.
    async fn call_export<B>(self, request: http::Request<B>) -> http::Response<tonic::body::Body>
    where
        B: tonic::codegen::Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        let mut gzip = EnabledCompressionEncodings::default();
        gzip.enable(CompressionEncoding::Gzip);
        let codec = ExportCodec::<E> {
            receiver: self.receiver.clone(),
            signal: PhantomData,
        };
        let mut grpc = tonic::server::Grpc::new(codec)
            .apply_compression_config(gzip, EnabledCompressionEncodings::default())
            .apply_max_message_size_config(Some(self.max_message), None);
        grpc.unary(Method::<E>::new(self.receiver), request).await
    }
}

impl<E: Export> NamedService for ExportServer<E> {
    const NAME: &'static str = E::SERVICE;
}

impl<E, B> Service<http::Request<B>> for ExportServer<E>
where
    E: Export,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != E::PATH {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let server = self.clone();
        Box::pin(async move { Ok(server.call_export(request).await) })
    }
}

/// The method, as tonic's unary handler takes it.
struct Method<E> {
    receiver: Receiver,
    signal: PhantomData<fn() -> E>,
}

impl<E> Method<E> {
    fn new(receiver: Receiver) -> Self {
        Self {
            receiver,
            signal: PhantomData,
        }
    }
}

impl<E: Export> UnaryService<E::Request> for Method<E> {
    type Response = E::Response;
    type Future = BoxFuture<tonic::Response<E::Response>, Status>;

    fn call(&mut self, request: tonic::Request<E::Request>) -> Self::Future {
        let export = E::export(self.receiver.clone(), request.into_inner());
        Box::pin(async move { export.await.map(tonic::Response::new) })
    }
}

/// prost's encoding for answers; for requests, the pre-count, then prost.
struct ExportCodec<E> {
    receiver: Receiver,
    signal: PhantomData<fn() -> E>,
}

impl<E: Export> Codec for ExportCodec<E> {
    type Encode = E::Response;
    type Decode = E::Request;
    type Encoder = ProstEncoder<E::Response>;
    type Decoder = AdmittingDecoder<E>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        AdmittingDecoder {
            receiver: self.receiver.clone(),
            signal: PhantomData,
        }
    }
}

/// Encodes answers with prost.
struct ProstEncoder<T>(PhantomData<fn(T)>);

impl<T: prost::Message> Encoder for ProstEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|error| Status::internal(error.to_string()))
    }
}

/// Decodes a request only once [`Receiver::admit`] has let it through.
struct AdmittingDecoder<E> {
    receiver: Receiver,
    signal: PhantomData<fn() -> E>,
}

impl<E: Export> Decoder for AdmittingDecoder<E> {
    type Item = E::Request;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<E::Request>, Status> {
        // tonic's buffer holds the whole message in one piece (a `BytesMut`).
        let whole = src.chunk().len() == src.remaining();
        let copy;
        let message = if whole {
            src.chunk()
        } else {
            copy = src.copy_to_bytes(src.remaining());
            &copy[..]
        };
        if let Err(refusal) = self.receiver.admit(E::SIGNAL, message) {
            return Err(match refusal {
                Refusal::Malformed(_) => Status::invalid_argument(refusal.to_string()),
                Refusal::TooLarge { .. } => Status::resource_exhausted(refusal.to_string()),
            });
        }
        let request = <E::Request as prost::Message>::decode(message)
            .map_err(|error| Status::invalid_argument(format!("invalid OTLP protobuf: {error}")))?;
        if whole {
            src.advance(src.remaining());
        }
        Ok(Some(request))
    }
}
