//! A real S3-compatible server for the tests: s3s-fs (objects as files under
//! a directory; SigV4 verified), run in-process on its own thread so that a
//! test can stop it (an outage) and start it again on the same port. Every
//! request's method, path and header names are kept, to check what the
//! edge sends.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const ACCESS_KEY: &str = "pulse-test-access";
pub const SECRET_KEY: &str = "pulse-test-secret-0123456789";
pub const BUCKET: &str = "media";

#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<String>,
}

pub struct S3Server {
    pub addr: SocketAddr,
    pub root: tempfile::TempDir,
    pub seen: Arc<Mutex<Vec<SeenRequest>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl S3Server {
    /// Starts with one bucket, [`BUCKET`].
    pub fn start() -> Self {
        let root = tempfile::tempdir().expect("s3 root");
        std::fs::create_dir_all(root.path().join(BUCKET)).expect("bucket dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut server = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            root,
            seen: Arc::default(),
            runtime: None,
        };
        server.resume();
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bucket's directory (objects are files under it).
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.path().join(BUCKET)
    }

    /// Environment for a server that stores media here.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PULSE_STORAGE_BACKEND".into(), "s3".into()),
            ("PULSE_STORAGE_BUCKET".into(), BUCKET.into()),
            ("PULSE_STORAGE_ENDPOINT_URL".into(), self.endpoint()),
            ("PULSE_STORAGE_FORCE_PATH_STYLE".into(), "true".into()),
            ("PULSE_STORAGE_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("PULSE_STORAGE_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
            ("PULSE_STORAGE_TIMEOUT_SECS".into(), "3".into()),
        ]
    }

    /// Stops answering: the listener and every connection close.
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        // Let the port be released before a restart binds it again.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    /// Starts (again) on the same port and directory.
    pub fn resume(&mut self) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("s3 runtime");
        let fs = s3s_fs::FileSystem::new(self.root.path()).expect("s3s-fs");
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let seen = self.seen.clone();
        let addr = self.addr;
        // Bound here, not in the runtime: tests call this from async code.
        let mut bound = None;
        for _ in 0..50 {
            match std::net::TcpListener::bind(addr) {
                Ok(listener) => {
                    bound = Some(listener);
                    break;
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
        let listener = bound.unwrap_or_else(|| panic!("s3 port {addr} stays taken"));
        listener.set_nonblocking(true).expect("nonblocking");
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let handler = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        seen.lock().expect("seen").push(SeenRequest {
                            method: req.method().to_string(),
                            path: req.uri().path().to_string(),
                            query: req.uri().query().unwrap_or("").to_string(),
                            headers: req.headers().keys().map(|k| k.as_str().to_string()).collect(),
                        });
                        hyper::service::Service::call(&service, req)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), handler)
                        .await;
                });
            }
        });
        self.runtime = Some(runtime);
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().expect("seen").clone()
    }

    /// Whether the object exists (a file, not s3s-fs's metadata sidecars).
    pub fn has(&self, key: &str) -> bool {
        self.bucket_dir().join(key).is_file()
    }

    /// Keys of the objects under `prefix` ("" for all), sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        collect(&self.bucket_dir(), &self.bucket_dir(), &mut keys);
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        keys
    }

    /// A client of our own, to read objects back with their metadata.
    pub async fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "test",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn collect(root: &Path, dir: &Path, keys: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, keys);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let key = relative.to_string_lossy().replace('\\', "/");
            // s3s-fs keeps metadata and upload state in dot-files.
            if !key.split('/').any(|seg| seg.starts_with('.')) {
                keys.push(key);
            }
        }
    }
}
