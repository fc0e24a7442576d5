//! Check-digit algorithms that turn "looks like a number" into "is one": Luhn and IBAN mod-97.

/// True if the ASCII digits in `digits` (other bytes ignored) pass the Luhn check.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    let mut count = 0usize;
    // Walk from the right: every second digit is doubled.
    for b in digits.bytes().rev().filter(u8::is_ascii_digit) {
        let mut d = u32::from(b - b'0');
        if count % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        count += 1;
    }
    count > 0 && sum.is_multiple_of(10)
}

/// True if `iban` (letters and digits only, any case) has the length registered for its
/// country and its mod-97 remainder is 1 (ISO 13616).
pub fn iban_valid(iban: &str) -> bool {
    let bytes = iban.as_bytes();
    if bytes.len() < 5 || !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let country = [bytes[0].to_ascii_uppercase(), bytes[1].to_ascii_uppercase()];
    let expected = std::str::from_utf8(&country).ok().and_then(iban_length);
    if expected != Some(bytes.len()) || !bytes[2..4].iter().all(u8::is_ascii_digit) {
        return false;
    }
    // Move the first four characters to the end, map letters to 10..35, reduce mod 97
    // incrementally so no big integers are needed.
    let mut rem: u32 = 0;
    for &b in bytes[4..].iter().chain(&bytes[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            _ => u32::from(b.to_ascii_uppercase() - b'A') + 10,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// Registered IBAN length for a two-letter country code (uppercase), per the SWIFT registry.
pub fn iban_length(country: &str) -> Option<usize> {
    let len = match country {
        "NO" => 15,
        "BE" => 16,
        "DK" | "FI" | "FK" | "FO" | "GL" | "NL" | "SD" => 18,
        "MK" | "SI" => 19,
        "AT" | "BA" | "EE" | "KZ" | "LT" | "LU" | "MN" | "XK" => 20,
        "CH" | "HR" | "LI" | "LV" => 21,
        "BG" | "BH" | "CR" | "DE" | "GB" | "GE" | "IE" | "ME" | "RS" | "VA" => 22,
        "AE" | "GI" | "IL" | "IQ" | "OM" | "SO" | "TL" => 23,
        "AD" | "CZ" | "ES" | "MD" | "PK" | "RO" | "SA" | "SE" | "SK" | "TN" | "VG" => 24,
        "LY" | "PT" | "ST" => 25,
        "IS" => 26,
        "BI" | "DJ" | "FR" | "GR" | "IT" | "MC" | "MR" | "SM" => 27,
        "AL" | "AZ" | "BY" | "CY" | "DO" | "GT" | "HU" | "LB" | "NI" | "PL" | "SV" => 28,
        "BR" | "EG" | "PS" | "QA" | "UA" => 29,
        "JO" | "KW" | "MU" | "YE" => 30,
        "MT" | "SC" => 31,
        "LC" => 32,
        "RU" => 33,
        _ => return None,
    };
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_rejects_neighbours() {
        for ok in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
        ] {
            assert!(luhn_valid(ok), "{ok}");
        }
        for bad in ["4111111111111112", "1234567812345678", "", "abc"] {
            assert!(!luhn_valid(bad), "{bad}");
        }
    }

    #[test]
    fn iban_checks_length_and_mod97() {
        assert!(iban_valid("GB82WEST12345698765432"));
        assert!(iban_valid("DE89370400440532013000"));
        assert!(iban_valid("NO9386011117947"));
        assert!(iban_valid("gb82west12345698765432"));
        // Wrong check digits.
        assert!(!iban_valid("GB83WEST12345698765432"));
        assert!(!iban_valid("DE88370400440532013000"));
        // Right checksum shape but wrong length for the country.
        assert!(!iban_valid("DE8937040044053201300"));
        // Unknown country, non-alphanumeric, too short.
        assert!(!iban_valid("ZZ82WEST12345698765432"));
        assert!(!iban_valid("GB82 WEST12345698765432"));
        assert!(!iban_valid("GB8"));
        assert!(!iban_valid("ü"));
    }
}
