//! Test identity provider: RSA and EC signing keys generated in the test, a
//! JWKS endpoint on loopback, and hand-made JWTs (so broken ones can be made too).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use serde_json::{Value, json};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An issuer with one RSA and one EC key.
pub struct Issuer {
    /// `iss` of the tokens.
    pub issuer: String,
    /// The JWKS URL.
    pub jwks_url: String,
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
    jwks: Arc<Mutex<Value>>,
    /// How many times the JWKS was fetched.
    pub fetches: Arc<Mutex<u32>>,
    failing: Arc<AtomicBool>,
}

#[derive(Clone)]
struct JwksState {
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<Mutex<u32>>,
    failing: Arc<AtomicBool>,
}

async fn serve_jwks(State(s): State<JwksState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    *s.fetches.lock().unwrap() += 1;
    if s.failing.load(Ordering::SeqCst) {
        return http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    axum::Json(s.jwks.lock().unwrap().clone()).into_response()
}

impl Issuer {
    /// Generates keys and starts the JWKS server; `publish_ec` controls
    /// whether the EC key is in the JWKS from the start.
    pub async fn start(publish_ec: bool) -> Self {
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let jwks = Arc::new(Mutex::new(json!({"keys": []})));
        let fetches = Arc::new(Mutex::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let app = Router::new()
            .route("/.well-known/jwks.json", get(serve_jwks))
            .with_state(JwksState {
                jwks: jwks.clone(),
                fetches: fetches.clone(),
                failing: failing.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let me = Self {
            issuer: base.clone(),
            jwks_url: format!("{base}/.well-known/jwks.json"),
            rsa,
            ec,
            jwks,
            fetches,
            failing,
        };
        me.publish(publish_ec);
        me
    }

    /// Makes the JWKS endpoint answer 503 (`true`) or serve the keys again.
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// How many times the JWKS was fetched so far.
    pub fn fetch_count(&self) -> u32 {
        *self.fetches.lock().unwrap()
    }

    /// Publishes the RSA key without an `alg` member.
    pub fn publish_rsa_without_alg(&self) {
        self.publish(false);
        let mut jwks = self.jwks.lock().unwrap();
        jwks["keys"][0].as_object_mut().unwrap().remove("alg");
    }

    /// Publishes the RSA key, and the EC key too when `with_ec`.
    pub fn publish(&self, with_ec: bool) {
        let pk = self.rsa.public_key();
        let mut keys = vec![json!({
            "kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
            "n": b64(pk.modulus().big_endian_without_leading_zero()),
            "e": b64(pk.exponent().big_endian_without_leading_zero()),
        })];
        if with_ec {
            let point = self.ec.public_key().as_ref();
            keys.push(json!({
                "kty": "EC", "kid": "ec-1", "use": "sig", "alg": "ES256", "crv": "P-256",
                "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            }));
        }
        *self.jwks.lock().unwrap() = json!({ "keys": keys });
    }

    /// Standard claims for `tenant`, valid for an hour.
    pub fn claims(&self, tenant: &str, aud: &str, scope: &str) -> Value {
        let now = ctxgate::now_secs();
        json!({"iss": self.issuer, "aud": aud, "sub": "user-1", "tenant": tenant, "scope": scope,
               "iat": now, "nbf": now - 5, "exp": now + 3600})
    }

    /// A token signed with RS256 (kid `rsa-1`).
    pub fn rs256(&self, claims: &Value) -> String {
        let signing_input = Self::input(
            &json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}),
            claims,
        );
        let mut sig = vec![0; self.rsa.public_modulus_len()];
        self.rsa
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{signing_input}.{}", b64(&sig))
    }

    /// A token signed with the RSA key (kid `rsa-1`) under PS256 (RSASSA-PSS).
    pub fn ps256(&self, claims: &Value) -> String {
        let signing_input = Self::input(
            &json!({"alg": "PS256", "typ": "JWT", "kid": "rsa-1"}),
            claims,
        );
        let mut sig = vec![0; self.rsa.public_modulus_len()];
        self.rsa
            .sign(
                &signature::RSA_PSS_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .unwrap();
        format!("{signing_input}.{}", b64(&sig))
    }

    /// A token signed with ES256 (kid `ec-1`).
    pub fn es256(&self, claims: &Value) -> String {
        let signing_input = Self::input(
            &json!({"alg": "ES256", "typ": "JWT", "kid": "ec-1"}),
            claims,
        );
        let sig = self
            .ec
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .unwrap();
        format!("{signing_input}.{}", b64(sig.as_ref()))
    }

    /// An unsigned `alg: none` token.
    pub fn unsigned(&self, claims: &Value) -> String {
        format!(
            "{}.",
            Self::input(
                &json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"}),
                claims
            )
        )
    }

    fn input(header: &Value, claims: &Value) -> String {
        format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        )
    }
}
