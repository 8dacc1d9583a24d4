//! The JWT path of `--auth jwt`: a token as the client sends it (header first, then
//! `auth.token`). Two shapes from one input: the bytes as the token itself (the header
//! parse, the algorithm checks, the signature), and the bytes split at the first `\n` into
//! a header and a claims JSON text signed with the replica's secret, so the claims path
//! (`exp`, `nbf`, `iss`, `aud`, the user and projects claims) is reached with any JSON.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::sign;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use wsgate::auth::jwt::{JwtAuthenticator, JwtSettings, KeySource};

const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret";

static AUTH: LazyLock<JwtAuthenticator> = LazyLock::new(|| {
    JwtAuthenticator::new(JwtSettings {
        keys: KeySource::Secret(SECRET.to_owned()),
        algorithms: Vec::new(),
        issuers: vec!["wsgate-fuzz".to_owned()],
        audiences: Vec::new(),
        leeway: Duration::from_secs(5),
        user_claim: "sub".to_owned(),
        projects_claim: "projects".to_owned(),
        numeric_sub: false,
    })
    .expect("a secret is a valid key")
});

static KEY: LazyLock<EncodingKey> = LazyLock::new(|| EncodingKey::from_secret(SECRET.as_bytes()));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = AUTH.verify(text);
    if let Some((header, claims)) = text.split_once('\n') {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        if let Ok(signature) = sign(signing_input.as_bytes(), &KEY, Algorithm::HS256) {
            let _ = AUTH.verify(&format!("{signing_input}.{signature}"));
        }
    }
});
