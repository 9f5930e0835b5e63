//! Apps' own playback keys, end to end: a customer's backend signs viewer
//! tokens with its private RS256 key (or the HS256 secret we gave it) and
//! never calls us; those tokens open only that app's streams, and stop
//! working once the key is deleted.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{wait_until_live, Server, Source};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

fn field<'a>(value: &'a Value, name: &str) -> &'a str {
    value[name]
        .as_str()
        .unwrap_or_else(|| panic!("no string {name:?} in {value}"))
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, stream_id: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    let claims = serde_json::json!({ "sub": stream_id, "iat": now, "exp": now + 300 });
    jsonwebtoken::encode(&header, &claims, key).expect("sign")
}

async fn status_of(url: &str) -> u16 {
    common::http().get(url).send().await.expect("request").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_own_keys_open_its_streams_and_no_one_elses() {
    let server = Server::start();
    let app_a = server.cli_json(&["app", "create", "--name", "tenant-a"]);
    let app_b = server.cli_json(&["app", "create", "--name", "tenant-b"]);
    let (a, b) = (field(&app_a, "id"), field(&app_b, "id"));
    let stream_a = server.create_stream_in(a, "a-live", Some("passthrough"));
    let stream_b = server.create_stream_in(b, "b-idle", Some("passthrough"));

    // Keys are registered before the publish, as a customer would; the
    // server picks up CLI changes within its reload period.
    let (rsa_private, rsa_public) = common::keys::rsa_pair(server.data_dir.path());
    let rsa_private = std::fs::read(rsa_private).expect("private key");
    let rs_key = server.cli_json(&[
        "playback-key",
        "create",
        "--app",
        a,
        "--alg",
        "RS256",
        "--public-key",
        rsa_public.to_str().expect("path"),
    ]);
    let rs_kid = field(&rs_key, "kid").to_owned();
    let hs_key = server.cli_json(&["playback-key", "create", "--app", b, "--alg", "HS256"]);
    let hs_kid = field(&hs_key, "kid").to_owned();
    let hs_secret = field(&hs_key, "secret").to_owned();
    let listed = server.cli(&["playback-key", "list", "--app", b]);
    assert!(listed.status.success());
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains(&hs_secret),
        "an HS256 secret is listed after creation"
    );

    let _publisher = Source::small().publish(&stream_a.publish_url());
    wait_until_live(&server, &stream_a, Duration::from_secs(30)).await;
    let master = |stream: &str, token: &str| format!("{}/live/{stream}/master.m3u8?token={token}", server.base());

    let rsa = EncodingKey::from_rsa_pem(&rsa_private).expect("rsa key");
    let by_a = sign(Algorithm::RS256, &rs_kid, &rsa, &stream_a.id);
    // The reload is periodic: allow it a few seconds to see the new keys.
    let deadline = Instant::now() + Duration::from_secs(15);
    while status_of(&master(&stream_a.id, &by_a)).await != 200 {
        assert!(
            Instant::now() < deadline,
            "a token signed by app A's own RS256 key never opened its stream"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // App B's key (HS256 over the secret text we returned) cannot open A's stream,
    // even though the signature itself is good.
    let hs = EncodingKey::from_secret(hs_secret.as_bytes());
    let by_b_for_a = sign(Algorithm::HS256, &hs_kid, &hs, &stream_a.id);
    assert_eq!(status_of(&master(&stream_a.id, &by_b_for_a)).await, 403);
    // A's key for B's stream: refused before anything about B is looked at.
    let by_a_for_b = sign(Algorithm::RS256, &rs_kid, &rsa, &stream_b.id);
    assert!(matches!(status_of(&master(&stream_b.id, &by_a_for_b)).await, 403 | 404));
    // A kid nobody issued, and A's kid over a forged HS256 signature.
    assert_eq!(
        status_of(&master(
            &stream_a.id,
            &sign(Algorithm::RS256, "pk_nobody", &rsa, &stream_a.id)
        ))
        .await,
        401
    );
    let forged = sign(
        Algorithm::HS256,
        &rs_kid,
        &EncodingKey::from_secret(b"guess"),
        &stream_a.id,
    );
    assert_eq!(status_of(&master(&stream_a.id, &forged)).await, 401);

    // Deleting the key shuts its tokens out, remembered or not.
    let out = server.cli(&["playback-key", "delete", "--app", a, &rs_kid]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(15);
    while status_of(&master(&stream_a.id, &by_a)).await != 401 {
        assert!(
            Instant::now() < deadline,
            "a deleted key's token still opens the stream"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The server's own token for the stream still works.
    assert_eq!(status_of(&master(&stream_a.id, &stream_a.token())).await, 200);
}
