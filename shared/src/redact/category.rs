//! The kinds of sensitive data the redactor knows, with their names and placeholders.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// A kind of sensitive data; custom tenant patterns carry their (lowercase) name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// E-mail address.
    Email,
    /// Telephone number (heuristic).
    Phone,
    /// Payment card number that passes the Luhn check.
    Card,
    /// IBAN whose mod-97 check passes.
    Iban,
    /// US social security number in AAA-GG-SSSS form.
    Ssn,
    /// IPv4 address.
    Ipv4,
    /// AWS access key id (AKIA/ASIA...).
    AwsAccessKey,
    /// AWS secret access key seen next to a "secret" keyword.
    AwsSecretKey,
    /// PEM/PGP private key block.
    PrivateKey,
    /// Token following "Bearer".
    Bearer,
    /// JSON Web Token.
    Jwt,
    /// A tenant's denylisted term.
    Denylist,
    /// A tenant's named custom regex pattern.
    Custom(Arc<str>),
}

impl Category {
    /// Every built-in category, for iteration and name lookup.
    pub const BUILTIN: [Category; 12] = [
        Category::Email,
        Category::Phone,
        Category::Card,
        Category::Iban,
        Category::Ssn,
        Category::Ipv4,
        Category::AwsAccessKey,
        Category::AwsSecretKey,
        Category::PrivateKey,
        Category::Bearer,
        Category::Jwt,
        Category::Denylist,
    ];

    /// Lowercase name, as used for policy keys and counts.
    pub fn as_str(&self) -> &str {
        match self {
            Category::Email => "email",
            Category::Phone => "phone",
            Category::Card => "card",
            Category::Iban => "iban",
            Category::Ssn => "ssn",
            Category::Ipv4 => "ipv4",
            Category::AwsAccessKey => "aws_access_key",
            Category::AwsSecretKey => "aws_secret_key",
            Category::PrivateKey => "private_key",
            Category::Bearer => "bearer",
            Category::Jwt => "jwt",
            Category::Denylist => "denylist",
            Category::Custom(name) => name,
        }
    }

    /// Text that replaces a redacted value, e.g. `[EMAIL]`.
    pub fn placeholder(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Category::Email => "[EMAIL]",
            Category::Phone => "[PHONE]",
            Category::Card => "[CARD]",
            Category::Iban => "[IBAN]",
            Category::Ssn => "[SSN]",
            Category::Ipv4 => "[IPV4]",
            Category::AwsAccessKey => "[AWS_ACCESS_KEY]",
            Category::AwsSecretKey => "[AWS_SECRET_KEY]",
            Category::PrivateKey => "[PRIVATE_KEY]",
            Category::Bearer => "[TOKEN]",
            Category::Jwt => "[JWT]",
            Category::Denylist => "[DENYLIST]",
            Category::Custom(name) => {
                return Cow::Owned(format!("[{}]", name.to_ascii_uppercase()));
            }
        })
    }

    /// Built-in category with this lowercase name, if any.
    pub fn builtin_from_name(name: &str) -> Option<Category> {
        Category::BUILTIN.into_iter().find(|c| c.as_str() == name)
    }

    /// Tie-break rank when two findings cover exactly the same span (lower wins).
    ///
    /// More specific detectors win: a JWT after "Bearer" is reported as a JWT.
    pub(super) fn priority(&self) -> u8 {
        match self {
            Category::PrivateKey => 0,
            Category::Jwt => 1,
            Category::AwsAccessKey => 2,
            Category::AwsSecretKey => 3,
            Category::Card => 4,
            Category::Iban => 5,
            Category::Ssn => 6,
            Category::Email => 7,
            Category::Ipv4 => 8,
            Category::Phone => 9,
            Category::Bearer => 10,
            Category::Custom(_) => 11,
            Category::Denylist => 12,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Category {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_placeholders_are_uppercase() {
        for c in Category::BUILTIN {
            assert_eq!(Category::builtin_from_name(c.as_str()), Some(c.clone()));
            let p = c.placeholder();
            assert!(p.starts_with('[') && p.ends_with(']'));
            assert_eq!(p.to_ascii_uppercase(), p);
        }
        assert_eq!(Category::Bearer.placeholder(), "[TOKEN]");
        let custom = Category::Custom(Arc::from("employee_id"));
        assert_eq!(custom.as_str(), "employee_id");
        assert_eq!(custom.placeholder(), "[EMPLOYEE_ID]");
        assert_eq!(Category::builtin_from_name("nope"), None);
    }
}
