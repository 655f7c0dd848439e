//! Asking a running gRPC server what any operator's tool would: its health
//! (`grpc.health.v1`) and, through reflection (`grpc.reflection.v1`), its services and
//! their methods.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

/// A health status as the server named it (`SERVING`, `NOT_SERVING`, …), or the gRPC
/// error code when the check itself failed (`Unavailable`, `NotFound`, …).
pub async fn health(url: &str, service: &str) -> String {
    let channel = match tonic::transport::Endpoint::from_shared(url.to_owned()) {
        Ok(endpoint) => endpoint.connect_timeout(Duration::from_secs(1)),
        Err(error) => return format!("bad url: {error}"),
    };
    let channel = match channel.connect().await {
        Ok(channel) => channel,
        Err(_) => return "Unreachable".to_owned(),
    };
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    request.set_timeout(Duration::from_secs(2));
    match client.check(request).await {
        Ok(response) => tonic_health::pb::health_check_response::ServingStatus::try_from(
            response.get_ref().status,
        )
        .map_or_else(|_| "UNKNOWN".to_owned(), |s| s.as_str_name().to_owned()),
        Err(status) => format!("{:?}", status.code()),
    }
}

/// Polls [`health`] every 50 ms until it reads `want`; `Err` with the last reading
/// after `within`.
pub async fn await_health(
    url: &str,
    service: &str,
    want: &str,
    within: Duration,
) -> Result<Duration, String> {
    let started = tokio::time::Instant::now();
    loop {
        let now = health(url, service).await;
        if now == want {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= within {
            return Err(now);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every service the server at `url` lists through reflection, with its methods'
/// names (read from the file descriptor reflection returns for the service).
pub async fn reflected_methods(url: &str) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect()
        .await?;
    let mut client = ServerReflectionClient::new(channel);
    let services = match ask(&mut client, MessageRequest::ListServices(String::new())).await? {
        MessageResponse::ListServicesResponse(list) => {
            list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
        }
        other => anyhow::bail!("list_services answered {other:?}"),
    };
    let mut methods = BTreeMap::new();
    for service in services {
        let files = match ask(
            &mut client,
            MessageRequest::FileContainingSymbol(service.clone()),
        )
        .await?
        {
            MessageResponse::FileDescriptorResponse(files) => files.file_descriptor_proto,
            other => anyhow::bail!("file_containing_symbol({service}) answered {other:?}"),
        };
        let mut names = None;
        for encoded in files {
            let file = prost_types::FileDescriptorProto::decode(encoded.as_slice())?;
            for described in &file.service {
                let full = match file.package() {
                    "" => described.name().to_owned(),
                    package => format!("{package}.{}", described.name()),
                };
                if full == service {
                    names = Some(
                        described
                            .method
                            .iter()
                            .map(|m| m.name().to_owned())
                            .collect::<Vec<_>>(),
                    );
                }
            }
        }
        let names =
            names.ok_or_else(|| anyhow::anyhow!("no descriptor describes service {service}"))?;
        methods.insert(service, names);
    }
    Ok(methods)
}

async fn ask(
    client: &mut ServerReflectionClient<tonic::transport::Channel>,
    request: MessageRequest,
) -> anyhow::Result<MessageResponse> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::once(request))
        .await?
        .into_inner();
    let answer: ServerReflectionResponse = answers
        .message()
        .await?
        .ok_or_else(|| anyhow::anyhow!("reflection closed the stream without answering"))?;
    answer
        .message_response
        .ok_or_else(|| anyhow::anyhow!("reflection answered nothing"))
}

/// The methods of every service of `package` in an encoded `FileDescriptorSet` (what a
/// server serving that package should list through reflection).
pub fn described_methods(
    descriptor_set: &[u8],
    package: &str,
) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let set = prost_types::FileDescriptorSet::decode(descriptor_set)?;
    let mut methods = BTreeMap::new();
    for file in set.file.iter().filter(|f| f.package() == package) {
        for service in &file.service {
            methods.insert(
                format!("{package}.{}", service.name()),
                service.method.iter().map(|m| m.name().to_owned()).collect(),
            );
        }
    }
    Ok(methods)
}
