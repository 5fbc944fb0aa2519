//! ECS task metadata (`${ECS_CONTAINER_METADATA_URI_V4}/task`) and the log stream name
//! template over it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;

/// What the task metadata tells us, reduced to the fields we label with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskInfo {
    /// Cluster name (the last part of the cluster ARN).
    pub cluster: String,
    /// Task id (the last part of the task ARN).
    pub task_id: String,
    /// `family:revision` of the task definition.
    pub family_revision: String,
    /// Availability zone.
    pub availability_zone: String,
    /// The application container: the first container that is not this sidecar.
    pub app_container: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaskMetadata {
    #[serde(default)]
    cluster: String,
    #[serde(rename = "TaskARN", default)]
    task_arn: String,
    #[serde(default)]
    family: String,
    #[serde(default)]
    revision: String,
    #[serde(default)]
    availability_zone: String,
    #[serde(default)]
    containers: Vec<ContainerMetadata>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerMetadata {
    #[serde(default)]
    name: String,
}

fn last_segment(arn: &str) -> &str {
    arn.rsplit(['/', ':']).next().unwrap_or(arn)
}

/// Decodes the `/task` document; `self_name` is this sidecar's container name.
pub fn decode_task(json: &[u8], self_name: Option<&str>) -> Result<TaskInfo, serde_json::Error> {
    let task: TaskMetadata = serde_json::from_slice(json)?;
    let app_container = task
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .find(|name| Some(*name) != self_name && !name.starts_with("~internal~"))
        .unwrap_or_default()
        .to_owned();
    Ok(TaskInfo {
        cluster: last_segment(&task.cluster).to_owned(),
        task_id: last_segment(&task.task_arn).to_owned(),
        family_revision: format!("{}:{}", task.family, task.revision),
        availability_zone: task.availability_zone,
        app_container,
    })
}

/// The latest metadata, filled in the background; readers see `None` until it arrives.
#[derive(Debug, Clone, Default)]
pub struct SharedTaskInfo(Arc<RwLock<Option<Arc<TaskInfo>>>>);

impl SharedTaskInfo {
    /// The metadata, once known.
    pub fn get(&self) -> Option<Arc<TaskInfo>> {
        self.0.read().ok().and_then(|guard| guard.clone())
    }

    /// Publishes the metadata.
    pub fn set(&self, info: TaskInfo) {
        if let Ok(mut guard) = self.0.write() {
            *guard = Some(Arc::new(info));
        }
    }
}

/// Fetches `${uri}/task` until it succeeds (backing off up to 30 s), then publishes it.
pub async fn fetch_in_background(uri: String, shared: SharedTaskInfo) {
    let mut delay = Duration::from_millis(200);
    let self_name = match http_get(&uri).await {
        Ok(body) => serde_json::from_slice::<ContainerMetadata>(&body)
            .ok()
            .map(|c| c.name),
        Err(_) => None,
    };
    loop {
        match http_get(&format!("{uri}/task"))
            .await
            .map(|body| decode_task(&body, self_name.as_deref()))
        {
            Ok(Ok(info)) => {
                tracing::info!(cluster = %info.cluster, task_id = %info.task_id, "ECS task metadata loaded");
                shared.set(info);
                return;
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "ECS task metadata unreadable; retrying")
            }
            Err(error) => tracing::warn!(error = %error, "ECS task metadata unavailable; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// GET with the metadata endpoint's budget; non-200 is an error.
async fn http_get(url: &str) -> std::io::Result<Vec<u8>> {
    let response = crate::http_client::get(url, Duration::from_secs(2)).await?;
    if response.status != 200 {
        return Err(std::io::Error::other(format!(
            "metadata endpoint answered {}",
            response.status
        )));
    }
    Ok(response.body)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const TASK: &str = r#"{
        "Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/prod-cluster",
        "TaskARN": "arn:aws:ecs:us-east-1:123456789012:task/prod-cluster/0123456789abcdef",
        "Family": "api", "Revision": "42", "AvailabilityZone": "us-east-1b",
        "Containers": [{"Name": "~internal~ecs~pause"}, {"Name": "log-router"}, {"Name": "api"}]
    }"#;

    #[test]
    fn decodes_the_fields_we_label_with() {
        let info = decode_task(TASK.as_bytes(), Some("log-router")).unwrap();
        assert_eq!(
            info,
            TaskInfo {
                cluster: "prod-cluster".into(),
                task_id: "0123456789abcdef".into(),
                family_revision: "api:42".into(),
                availability_zone: "us-east-1b".into(),
                app_container: "api".into(),
            }
        );
    }

    #[tokio::test]
    async fn fetches_from_a_metadata_endpoint() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/v4/abc", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 1024];
                let n = socket.read(&mut buf).await.unwrap();
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let body = if request.starts_with("GET /v4/abc/task ") {
                    TASK.to_owned()
                } else {
                    r#"{"Name":"log-router"}"#.to_owned()
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                socket.write_all(response.as_bytes()).await.unwrap();
            }
        });
        let shared = SharedTaskInfo::default();
        tokio::time::timeout(
            Duration::from_secs(5),
            fetch_in_background(uri, shared.clone()),
        )
        .await
        .unwrap();
        assert_eq!(shared.get().unwrap().app_container, "api");
    }
}
