//! What every store implementation refuses, whoever calls it: the admin API
//! validates too, but garbage must not reach the database through the CLI or
//! a future caller. Messages name the rule, never echo the value.

use super::StoreError;
use crate::media::LadderProfile;

pub const APP_NAME_MAX: usize = 64;
pub const STREAM_NAME_MAX: usize = 128;
pub const TOKEN_NAME_MAX: usize = 128;
pub const PROFILE_NAME_MAX: usize = 64;
/// A ladder is a few rungs of TOML; anything bigger is a mistake.
pub const CUSTOM_LADDER_MAX_BYTES: usize = 64 * 1024;
pub const KEY_ROTATION_SEGMENTS_MAX: u64 = 100_000;

pub fn app_name(name: &str) -> Result<(), StoreError> {
    let ok = (1..=APP_NAME_MAX).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "app name must be 1 to {APP_NAME_MAX} characters of A-Z, a-z, 0-9, '_' and '-'"
        )))
    }
}

pub fn stream_name(name: &str) -> Result<(), StoreError> {
    printable("stream name", name, STREAM_NAME_MAX)
}

pub fn admin_token_name(name: &str) -> Result<(), StoreError> {
    printable("admin token name", name, TOKEN_NAME_MAX)
}

fn printable(what: &str, value: &str, max: usize) -> Result<(), StoreError> {
    let count = value.chars().count();
    if (1..=max).contains(&count) && !value.trim().is_empty() && !value.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{what} must be 1 to {max} printable characters"
        )))
    }
}

/// A profile names a file in `pipelines/` (without `.toml`); whether it
/// exists is checked by whoever knows that directory.
pub fn profile_name(name: &str) -> Result<(), StoreError> {
    let ok = (1..=PROFILE_NAME_MAX).contains(&name.len())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "profile must be 1 to {PROFILE_NAME_MAX} characters of A-Z, a-z, 0-9, '_', '-' and '.', not starting with '.'"
        )))
    }
}

pub fn custom_ladder(toml: &str) -> Result<(), StoreError> {
    if toml.len() > CUSTOM_LADDER_MAX_BYTES {
        return Err(StoreError::Invalid(format!(
            "custom ladder is larger than {CUSTOM_LADDER_MAX_BYTES} bytes"
        )));
    }
    LadderProfile::from_toml(toml)
        .map(drop)
        .map_err(|e| StoreError::Invalid(format!("custom ladder: {e}")))
}

/// S3 bucket naming rules (also what R2 accepts): 3–63 characters of
/// lower-case letters, digits, '-' and '.', starting and ending alphanumeric.
pub fn bucket_name(name: &str) -> Result<(), StoreError> {
    let valid = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !name.contains("..");
    if valid {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "storage_bucket {name:?}: 3-63 characters of a-z, 0-9, '-' and '.', starting and ending with a letter or digit"
        )))
    }
}

/// A key prefix: `/`-separated segments of printable characters, no `.`/`..`.
pub fn storage_prefix(prefix: &str) -> Result<(), StoreError> {
    let trimmed = prefix.trim_matches('/');
    let valid = prefix.len() <= 256
        && !prefix.chars().any(|c| c.is_control() || c == '\\')
        && (trimmed.is_empty()
            || trimmed
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != ".."));
    if valid {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "storage_prefix {prefix:?}: at most 256 characters, '/'-separated, no empty, '.' or '..' segments"
        )))
    }
}

/// An absolute http(s) URL without query or fragment (media URIs are appended to it).
pub fn cdn_base_url(url: &str) -> Result<(), StoreError> {
    let parsed = url::Url::parse(url).ok();
    let valid = url.len() <= 2048
        && parsed.as_ref().is_some_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host().is_some()
                && u.query().is_none()
                && u.fragment().is_none()
        });
    if valid {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "cdn_base_url {url:?}: an absolute http(s) URL without query or fragment"
        )))
    }
}

pub fn key_rotation_segments(n: u64) -> Result<i64, StoreError> {
    if (1..=KEY_ROTATION_SEGMENTS_MAX).contains(&n) {
        i64::try_from(n).map_err(|_| rotation_error())
    } else {
        Err(rotation_error())
    }
}

fn rotation_error() -> StoreError {
    StoreError::Invalid(format!(
        "key_rotation_segments must be 1 to {KEY_ROTATION_SEGMENTS_MAX}"
    ))
}

pub fn optional<T: ?Sized>(value: Option<&T>, check: impl Fn(&T) -> Result<(), StoreError>) -> Result<(), StoreError> {
    value.map(check).unwrap_or(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(r: Result<(), StoreError>) -> bool {
        matches!(r, Err(StoreError::Invalid(_)))
    }

    #[test]
    fn storage_overrides() {
        for ok in ["media", "tenant-media.eu", "a1b"] {
            assert!(bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "Media", "-media", "media-", "me..dia", "me_dia", &"a".repeat(64)] {
            assert!(invalid(bucket_name(bad)), "{bad:?}");
        }
        for ok in ["", "live", "/customers/t1/", "a/b.c"] {
            assert!(storage_prefix(ok).is_ok(), "{ok:?}");
        }
        for bad in ["a//b", "../x", "a/./b", "a\\b", "x\n", &"p".repeat(257)] {
            assert!(invalid(storage_prefix(bad)), "{bad:?}");
        }
        for ok in ["https://cdn.example.com", "http://127.0.0.1:8081/media/"] {
            assert!(cdn_base_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "cdn.example.com",
            "ftp://x/y",
            "https://x/y?a=1",
            "https://x/#f",
            "javascript:alert(1)",
        ] {
            assert!(invalid(cdn_base_url(bad)), "{bad:?}");
        }
    }

    #[test]
    fn app_names() {
        assert!(app_name("tenant-a_1").is_ok());
        assert!(app_name(&"a".repeat(64)).is_ok());
        for bad in ["", "a b", "é", "a/b", "a.b", "x\n"] {
            assert!(invalid(app_name(bad)), "{bad:?}");
        }
        assert!(invalid(app_name(&"a".repeat(65))));
    }

    #[test]
    fn stream_and_token_names() {
        assert!(stream_name("Évènement du jour #1").is_ok());
        assert!(stream_name(&"é".repeat(128)).is_ok());
        assert!(invalid(stream_name(&"é".repeat(129))));
        for bad in ["", "   ", "a\u{0}b", "tab\there", "line\n"] {
            assert!(invalid(stream_name(bad)), "{bad:?}");
            assert!(invalid(admin_token_name(bad)), "{bad:?}");
        }
    }

    #[test]
    fn profiles_ladders_and_rotation() {
        assert!(profile_name("small").is_ok());
        assert!(profile_name("hd.v2").is_ok());
        for bad in ["", ".hidden", "../etc", "a/b", "a b"] {
            assert!(invalid(profile_name(bad)), "{bad:?}");
        }
        assert!(invalid(custom_ladder("not = [toml")));
        assert!(invalid(custom_ladder(&" ".repeat(CUSTOM_LADDER_MAX_BYTES + 1))));
        assert!(custom_ladder("passthrough = true\n").is_ok());
        assert_eq!(key_rotation_segments(10).ok(), Some(10));
        assert!(key_rotation_segments(0).is_err());
        assert!(key_rotation_segments(u64::MAX).is_err());
    }

    #[test]
    fn messages_do_not_echo_the_value() {
        let Err(e) = stream_name("secret\u{7}value") else {
            panic!("accepted")
        };
        assert!(!e.to_string().contains("secret"));
    }
}
