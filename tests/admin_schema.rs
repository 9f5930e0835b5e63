//! Schemathesis against the real binary's OpenAPI document: thousands of
//! generated requests (valid, boundary and malformed) to every operation;
//! none may get a 5xx, and every answer must match the documented status
//! codes, content types and schemas.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{manifest_dir, Server};

fn schemathesis() -> PathBuf {
    let path = std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target/pyenv/bin/schemathesis"));
    assert!(
        path.exists(),
        "schemathesis not found at {} (set SCHEMATHESIS, or run `make test-deps`, which installs it into target/pyenv)",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_holds_up_under_generated_requests() {
    let tool = schemathesis();
    // Loopback allowed, so that a webhook endpoint can exist to be fuzzed.
    let server = Server::start_with(&[("PULSE_WEBHOOKS_ALLOW_NETWORKS", "127.0.0.0/8")]);
    let token = server.global_admin_token();
    // Something to find: an app with a stream and a key, so that generated
    // ids are not all 404s.
    let (status, app) = server
        .api(&token, "POST", "/apps", Some(serde_json::json!({ "name": "fuzzed" })))
        .await;
    assert_eq!(status, 201);
    let app_id = app["id"].as_str().expect("id").to_owned();
    let (status, _) = server
        .api(
            &token,
            "POST",
            &format!("/apps/{app_id}/streams"),
            Some(serde_json::json!({ "name": "s" })),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = server
        .api(
            &token,
            "POST",
            &format!("/apps/{app_id}/webhooks"),
            Some(serde_json::json!({ "url": "http://127.0.0.1:9/hook" })),
        )
        .await;
    assert_eq!(status, 201);

    // A pull source (nothing listens there: it keeps retrying).
    let (status, _) = server
        .api(
            &token,
            "POST",
            &format!("/apps/{app_id}/sources"),
            Some(serde_json::json!({ "name": "cam", "url": "rtsp://127.0.0.1:9/cam" })),
        )
        .await;
    assert_eq!(status, 201);

    let report = tempfile::tempdir().expect("report dir");
    let out = Command::new(&tool)
        .current_dir(report.path())
        .args(["run", &format!("{}/api/v1/openapi.json", server.base())])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // Revoking its own token would turn the rest of the run into 401s.
        .args(["--exclude-name", "DELETE /admin-tokens/{token_id}"])
        .args(["--max-examples", "25", "--seed", "20261122", "--workers", "1"])
        .args(["--report-dir", &report.path().display().to_string()])
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Tested: 47"),
        "not every operation was exercised:\n{stdout}"
    );
    assert!(!server.log().contains("panicked"), "{}", server.log());
    // The run left the server serving.
    let (status, _) = server.api(&token, "GET", "/apps", None).await;
    assert_eq!(status, 200);
}
