//! Caller phone numbers: parsed once at the edge, stored once, shown masked everywhere else.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("a phone number has 7 to 12 digits (spaces, dashes and a +86 prefix are allowed)")]
    BadLength,
    #[error("a phone number may contain only digits, spaces, dashes, parentheses and a leading +")]
    BadCharacter,
}

impl PhoneNumber {
    pub fn parse(raw: &str) -> Result<Self, PhoneError> {
        let trimmed = raw.trim();
        let without_country = trimmed
            .strip_prefix("+86")
            .or_else(|| trimmed.strip_prefix("0086"))
            .unwrap_or(trimmed);
        let mut digits = String::with_capacity(without_country.len());
        for c in without_country.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '(' | ')' => {}
                _ => return Err(PhoneError::BadCharacter),
            }
        }
        if !(7..=12).contains(&digits.len()) {
            return Err(PhoneError::BadLength);
        }
        Ok(Self(digits))
    }

    /// The digits, for storage in the appeals table only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `138****1234`: the first three and the last four digits, the middle hidden.
    pub fn masked(&self) -> String {
        mask_digits(&self.0)
    }
}

/// Masks any stored number the same way [`PhoneNumber::masked`] does.
pub fn mask_digits(digits: &str) -> String {
    let chars: Vec<char> = digits.chars().collect();
    if chars.len() < 8 {
        let keep = chars.len().saturating_sub(2);
        return format!(
            "{}{}",
            "*".repeat(keep),
            chars[keep..].iter().collect::<String>()
        );
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output ends up in logs; never the clear number.
        write!(f, "PhoneNumber({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks() {
        let check = |raw: &str, expected: Result<&str, PhoneError>| {
            let got = PhoneNumber::parse(raw).map(|p| p.masked());
            assert_eq!(got.as_deref().map_err(Clone::clone), expected, "{raw}");
        };
        check("13812341234", Ok("138****1234"));
        check("+86 138-1234-1234", Ok("138****1234"));
        check("0532-85912901", Ok("053****2901"));
        check("1234567", Ok("*****67"));
        check("12345", Err(PhoneError::BadLength));
        check("138abc41234", Err(PhoneError::BadCharacter));
        check("", Err(PhoneError::BadLength));
    }

    #[test]
    fn debug_never_shows_the_number() {
        let phone = PhoneNumber::parse("13812341234").unwrap();
        assert_eq!(format!("{phone:?}"), "PhoneNumber(138****1234)");
    }
}
