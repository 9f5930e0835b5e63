//! Calling the admin API of a test server.

use reqwest::Method;
use serde_json::Value;

use super::{http, Server};

impl Server {
    /// A global admin token made with the CLI, as an operator would.
    pub fn global_admin_token(&self) -> String {
        let out = self.cli(&["admin-token", "create", "--name", "test-ops"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let created: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        created["secret"].as_str().expect("secret").to_owned()
    }

    /// `method path` under `/api/v1` with a bearer token: (status, JSON body or Null).
    pub async fn api(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = http()
            .request(method, format!("{}/api/v1{path}", self.base()))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin API request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// The lifecycle event types recorded for a stream of the default app, oldest first.
    pub async fn event_types(&self, token: &str, stream_id: &str) -> Vec<String> {
        self.stream_events(token, "app_default", stream_id)
            .await
            .into_iter()
            .map(|(event_type, _)| event_type)
            .collect()
    }

    /// A stream's lifecycle events, oldest first: (type, `data.reason`, or "").
    pub async fn stream_events(&self, token: &str, app: &str, stream_id: &str) -> Vec<(String, String)> {
        let (status, events) = self
            .api(
                token,
                "GET",
                &format!("/apps/{app}/events?stream_id={stream_id}&limit=100"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{events}");
        let mut list: Vec<(u64, String, String)> = events
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["sequence"].as_u64().unwrap_or(0),
                            e["type"].as_str().unwrap_or_default().to_string(),
                            e["body"]["data"]["reason"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        list.sort();
        list.into_iter().map(|(_, t, r)| (t, r)).collect()
    }
}
