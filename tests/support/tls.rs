//! A throw-away CA and the certificates the TLS Redis tests need, made with rcgen in a
//! temporary directory per test (nothing to install, no key ever committed).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM files of one test's CA, a server certificate for `127.0.0.1` / `localhost`, a
/// client certificate, and a second CA that signed none of them.
pub struct TestPki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that did not sign the server's certificate (the "wrong CA" case).
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let pem = params.self_signed(&key).expect("self-signed CA").pem();
    (params, key, pem)
}

fn leaf(
    issuer: &Issuer<'_, &KeyPair>,
    names: &[&str],
    usage: Vec<ExtendedKeyUsagePurpose>,
) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = usage;
    let cert = params.signed_by(&key, issuer).expect("signed leaf");
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pem).expect("write PEM");
    p
}

impl TestPki {
    /// Makes the CA and certificates in a new directory under the system temp dir.
    pub fn new() -> TestPki {
        let dir = std::env::temp_dir().join(format!("wsgate-pki-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("PKI dir");
        let (ca_params, ca_key, ca_pem) = ca("wsgate test CA");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        // Redis presents its certificate as a client too (replication, sentinel, the cluster
        // bus), so it has both uses.
        let (server, server_key) = leaf(
            &issuer,
            &["localhost", "127.0.0.1"],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let (client, client_key) = leaf(
            &issuer,
            &["wsgate"],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        let (_, _, other) = ca("another CA");
        TestPki {
            ca: write(&dir, "ca.pem", &ca_pem),
            server_cert: write(&dir, "server.pem", &server),
            server_key: write(&dir, "server.key", &server_key),
            client_cert: write(&dir, "client.pem", &client),
            client_key: write(&dir, "client.key", &client_key),
            other_ca: write(&dir, "other-ca.pem", &other),
            dir,
        }
    }

    /// `redis-server` arguments for a TLS-only server on `port` (no plain port); with
    /// `verify_clients`, a client must present a certificate from the CA (mTLS).
    pub fn redis_args(&self, port: u16, verify_clients: bool) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
        ];
        args.extend(self.cert_args());
        args.extend([
            "--tls-auth-clients".into(),
            if verify_clients { "yes" } else { "no" }.into(),
        ]);
        args
    }

    /// `redis-server` arguments naming the server certificate, its key and the CA.
    pub fn cert_args(&self) -> Vec<String> {
        let s = |p: &Path| p.display().to_string();
        vec![
            "--tls-cert-file".into(),
            s(&self.server_cert),
            "--tls-key-file".into(),
            s(&self.server_key),
            "--tls-ca-cert-file".into(),
            s(&self.ca),
        ]
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
