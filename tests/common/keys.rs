//! Key material for tests, from the openssl command line, and the CLI's JSON.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::Server;

pub fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (private key file, public key file) of a fresh RSA 2048 pair in `dir`.
pub fn rsa_pair(dir: &Path) -> (PathBuf, PathBuf) {
    let private = dir.join("customer-private.pem");
    let public = dir.join("customer-public.pem");
    let private_s = private.to_str().expect("utf-8 path");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private_s,
    ]);
    openssl(&[
        "pkey",
        "-in",
        private_s,
        "-pubout",
        "-out",
        public.to_str().expect("utf-8 path"),
    ]);
    (private, public)
}

impl Server {
    /// Runs the CLI, which must succeed, and parses the JSON it prints.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "pulse-edge {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("pulse-edge {args:?} printed no JSON ({e})"))
    }
}
