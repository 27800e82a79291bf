//! What makes an account slug or an email address acceptable.

use uuid::Uuid;

/// Account slugs: lowercase letters, digits and dashes, starting with a letter or digit, and
/// never a UUID (ids and slugs share one path segment).
pub fn valid_slug(slug: &str) -> bool {
    let mut chars = slug.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && slug.len() <= 64
        && slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && Uuid::parse_str(slug).is_err()
}

/// An email address in the common dot-atom form: `local@domain.tld`, the local part of RFC
/// 5322 `atext` and single dots, the domain of letter/digit/dash labels, 254 bytes at most. No
/// quotes, backslashes, spaces or control characters, so an address is safe inside the JSON
/// datasets of signed keys and in any log line.
pub fn valid_email(email: &str) -> bool {
    const ATEXT: &[u8] = b"!#$%&'*+-/=?^_`{|}~";
    let Some((local, domain)) = email.rsplit_once('@') else { return false };
    let dot_atoms = |s: &str, ok: &dyn Fn(u8) -> bool| {
        !s.is_empty() && s.split('.').all(|atom| !atom.is_empty() && atom.bytes().all(ok))
    };
    let labels_ok = domain.split('.').all(|l| l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'));
    email.len() <= 254
        && local.len() <= 64
        && dot_atoms(local, &|b| b.is_ascii_alphanumeric() || ATEXT.contains(&b))
        && dot_atoms(domain, &|b| b.is_ascii_alphanumeric() || b == b'-')
        && domain.contains('.')
        && labels_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_emails() {
        assert!(valid_slug("acme"));
        assert!(valid_slug("acme-2"));
        assert!(!valid_slug("Acme"));
        assert!(!valid_slug("-acme"));
        assert!(!valid_slug(""));
        assert!(!valid_slug(&Uuid::new_v4().to_string()));
        assert!(valid_email("a@b.co"));
        assert!(!valid_email("a@b"));
        assert!(!valid_email("ab.co"));
        assert!(!valid_email("a b@c.co"));
        assert!(valid_email("first.o'neil+tag@mail.example.com"));
        for bad in [
            "a\"b@c.co",
            "a@b@c.co",
            "a\\b@c.co",
            "a..b@c.co",
            ".a@c.co",
            "a@-c.co",
            "a@c..co",
            "a\u{7}@c.co",
            "\"x\",\"tier\":\"enterprise@evil.co",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }
}
