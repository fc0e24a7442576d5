//! jsonwebtoken's signature checks on ring, the crypto library TLS already
//! uses ([`crate::tls`]). jsonwebtoken ships aws-lc and RustCrypto backends;
//! either puts a second crypto library into every function binary (RustCrypto
//! about 0.5 MB). Verification only, of the algorithms [`super::jwt`]
//! accepts: RSA PKCS#1 v1.5 and PSS with keys of 2048 to 8192 bits, ECDSA on
//! P-256 and P-384. Anything else is refused as an invalid algorithm.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self as sig, RsaParameters, UnparsedPublicKey, VerificationAlgorithm};

/// Makes ring jsonwebtoken's provider for this process (idempotent; the first
/// provider installed stays).
pub fn install() {
    let _ = RING.install_default();
}

static RING: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(ErrorKind::InvalidKeyFormat.into()),
        rsa_pub_components_from_public_key: |_| Err(ErrorKind::InvalidKeyFormat.into()),
        ec_pub_components_from_private_key: |_, _| Err(ErrorKind::InvalidKeyFormat.into()),
        ed_pub_components_from_private_key: |_: &[u8], _: &EllipticCurve| {
            Err(ErrorKind::InvalidKeyFormat.into())
        },
        compute_digest,
    },
};

/// The gateway signs no tokens.
fn no_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(ring::digest::digest(algorithm, data).as_ref().to_vec())
}

/// ring's RSA parameters for `alg`, if it is an accepted RSA algorithm.
fn rsa(alg: Algorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// ring's ECDSA algorithm for `alg` (fixed-size `r || s` signatures, as JWS has them).
fn ecdsa(alg: Algorithm) -> Option<&'static sig::EcdsaVerificationAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED),
        _ => None,
    }
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    let fits = match key.family() {
        AlgorithmFamily::Rsa => rsa(*alg).is_some(),
        AlgorithmFamily::Ec => ecdsa(*alg).is_some(),
        _ => false,
    };
    if !fits {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(Verifier {
        alg: *alg,
        key: key.clone(),
    }))
}

/// One key checking signatures of one algorithm.
struct Verifier {
    alg: Algorithm,
    key: DecodingKey,
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for Verifier {
    fn verify(
        &self,
        msg: &[u8],
        signature: &Vec<u8>,
    ) -> std::result::Result<(), jsonwebtoken::signature::Error> {
        let checked = match self.key.kind() {
            DecodingKeyKind::RsaModulusExponent { n, e } => match rsa(self.alg) {
                Some(params) => sig::RsaPublicKeyComponents { n, e }.verify(params, msg, signature),
                None => Err(ring::error::Unspecified),
            },
            // An RSA public key in PKCS#1 DER, or an EC point (uncompressed).
            DecodingKeyKind::SecretOrDer(bytes) => {
                let algorithm: Option<&'static dyn VerificationAlgorithm> = match rsa(self.alg) {
                    Some(params) => Some(params),
                    None => ecdsa(self.alg).map(|a| a as &'static dyn VerificationAlgorithm),
                };
                match algorithm {
                    Some(a) => UnparsedPublicKey::new(a, bytes).verify(msg, signature),
                    None => Err(ring::error::Unspecified),
                }
            }
        };
        checked.map_err(|_| jsonwebtoken::signature::Error::new())
    }
}

impl JwtVerifier for Verifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_mismatched_keys_are_refused() {
        install();
        let hmac = DecodingKey::from_secret(b"secret");
        assert!(verifier(&Algorithm::HS256, &hmac).is_err());
        assert!(verifier(&Algorithm::RS256, &hmac).is_err());
        let ec = DecodingKey::from_ec_components("AAAA", "AAAA").unwrap();
        assert!(verifier(&Algorithm::RS256, &ec).is_err());
        assert!(verifier(&Algorithm::EdDSA, &ec).is_err());
        assert!(verifier(&Algorithm::ES256, &ec).is_ok());
    }
}
