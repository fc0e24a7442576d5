//! Identifiers: random ids, and the rules for client-chosen ones.

use base64::Engine;

/// `n` bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS RNG failing means the platform is unusable; there is no safe fallback.
    getrandom::fill(&mut buf).expect("OS random number generator unavailable");
    buf
}

/// `n` bytes from a fast per-thread generator (seeded once per thread),
/// for ids that only need to be unique: never for anything that grants
/// access or must not be guessed (keys, tokens, ids that name stored data).
/// Saves a `getrandom` system call per id on every turn.
fn unique_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    fastrand::fill(&mut buf);
    buf
}

/// A random URL-safe token of `N` random bytes, prefixed.
pub fn random_token<const N: usize>(prefix: &str) -> String {
    prefixed(prefix, random_bytes::<N>())
}

/// `prefix` followed by `bytes` in URL-safe base64.
fn prefixed<const N: usize>(prefix: &str, bytes: [u8; N]) -> String {
    let mut s = String::with_capacity(prefix.len() + N * 4 / 3 + 2);
    s.push_str(prefix);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(bytes, &mut s);
    s
}

/// A new `chatcmpl-...` id for a completion (unique, not secret: nothing
/// is looked up by it).
pub fn completion_id() -> String {
    prefixed("chatcmpl-", unique_bytes::<18>())
}

/// A new `msg_...` id for an Anthropic Messages answer (unique, not
/// secret: nothing is looked up by it).
pub fn message_id() -> String {
    prefixed("msg_", unique_bytes::<18>())
}

/// A new `conv_...` id for a conversation the gateway names (a new
/// Responses API conversation, a fork).
pub fn conversation_id() -> String {
    random_token::<18>("conv_")
}

/// A new `resp_...` id for a Responses API response.
pub fn response_id() -> String {
    random_token::<18>("resp_")
}

/// A new request id (used when the platform gives none): unique, for logs
/// and support, not secret.
pub fn request_id() -> String {
    hex::encode(unique_bytes::<12>())
}

/// Whether `s` is 1 to 64 characters of `[A-Za-z0-9_.-]`: a code or reason
/// from a remote service that is safe to log.
pub fn is_token(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `id` is a valid client-chosen id: 1..=`max` chars of `[A-Za-z0-9._:-]`.
///
/// The same charset is used for tenants and conversation ids; it keeps store
/// keys unambiguous (no `#` or control characters) and safe to log.
pub fn is_valid_id(id: &str, max: usize) -> bool {
    !id.is_empty()
        && id.len() <= max
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Whether `id` is a valid conversation id: a client-chosen id (see
/// [`is_valid_id`]) that is not all dots, so `.` and `..` can never name a
/// conversation (as path segments they would be resolved away by clients
/// and proxies, reaching a different route than the one sent).
pub fn is_valid_conversation_id(id: &str) -> bool {
    is_valid_id(id, MAX_CONVERSATION_ID) && !id.bytes().all(|b| b == b'.')
}

/// Longest accepted conversation id.
pub const MAX_CONVERSATION_ID: usize = 128;
/// Longest accepted tenant id.
pub const MAX_TENANT_ID: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_rules() {
        assert!(is_valid_id("conv-1:a.b_c", 128));
        assert!(is_valid_id(&"a".repeat(128), 128));
        assert!(!is_valid_id(&"a".repeat(129), 128));
        assert!(!is_valid_id("", 128));
        assert!(!is_valid_id("a#b", 128));
        assert!(!is_valid_id("a b", 128));
        assert!(!is_valid_id("é", 128));
    }

    // Issue 12, point 14: `.` and `..` are not conversation ids.
    #[test]
    fn dot_segments_are_not_conversation_ids() {
        for bad in [".", "..", "...", ""] {
            assert!(!is_valid_conversation_id(bad), "{bad:?}");
        }
        for good in ["a.", ".a", "..a", "a..b", "conv-1"] {
            assert!(is_valid_conversation_id(good), "{good:?}");
        }
    }

    #[test]
    fn unique_ids_are_distinct_and_shaped() {
        let (a, b) = (completion_id(), completion_id());
        assert_ne!(a, b);
        assert!(a.starts_with("chatcmpl-"));
        assert_eq!(a.len(), "chatcmpl-".len() + 24);
        assert_eq!(message_id().len(), "msg_".len() + 24);
        let r = request_id();
        assert_eq!(r.len(), 24);
        assert!(r.bytes().all(|b| b.is_ascii_hexdigit()), "{r}");
        assert_ne!(r, request_id());
    }

    #[test]
    fn tokens_are_distinct_and_prefixed() {
        let a = random_token::<32>("cgk_");
        let b = random_token::<32>("cgk_");
        assert_ne!(a, b);
        assert!(a.starts_with("cgk_"));
        assert_eq!(a.len(), 4 + 43);
    }
}
