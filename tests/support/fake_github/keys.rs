//! A test-only RSA key pair, generated once per test process with the
//! `openssl` CLI (nothing secret is committed): the App's private key in
//! PKCS#1 (as GitHub issues it) and PKCS#8, and the public key the fake
//! verifies App JWTs with.

use std::process::Command;
use std::sync::OnceLock;

pub struct TestKeys {
    pub pkcs1_pem: String,
    pub pkcs8_pem: String,
    pub public_pem: String,
}

pub fn test_keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(generate)
}

fn openssl(args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .status()
        .expect("the openssl CLI is needed to generate the test App key");
    assert!(status.success(), "openssl {args:?} failed");
}

fn generate() -> TestKeys {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).display().to_string();
    let (k1, k8, public) = (path("app.pem"), path("app8.pem"), path("pub.pem"));
    openssl(&["genrsa", "-traditional", "-out", &k1, "2048"]);
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", &k1, "-out", &k8]);
    openssl(&["rsa", "-in", &k1, "-pubout", "-out", &public]);
    let read = |p: &str| std::fs::read_to_string(p).expect("read key");
    let keys = TestKeys {
        pkcs1_pem: read(&k1),
        pkcs8_pem: read(&k8),
        public_pem: read(&public),
    };
    assert!(keys.pkcs1_pem.contains("BEGIN RSA PRIVATE KEY"));
    assert!(keys.pkcs8_pem.contains("BEGIN PRIVATE KEY"));
    keys
}
