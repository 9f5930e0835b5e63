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
        let (_, events) = self
            .api(
                token,
                "GET",
                &format!("/apps/app_default/events?stream_id={stream_id}&limit=100"),
                None,
            )
            .await;
        events
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["type"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}
