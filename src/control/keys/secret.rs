//! A secret value (a signing key, a password, a URL with credentials) whose
//! `Debug` never shows it, and which is zeroed when dropped. Structs that hold
//! one can derive `Debug` and still be logged safely.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Default)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The secret itself: call it only where the value is used (signing,
    /// connecting, storing), never to log it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Whether it is set is useful when reading a configuration dump.
        f.write_str(if self.is_empty() { "\"\"" } else { "<redacted>" })
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

/// For configuration and tests; not constant time, so not for checking a
/// secret a client sent.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

/// Writes the secret itself: the configuration is layered (file, then
/// environment) by a round trip through `toml::Value`, which needs it. API
/// types that hold a `Secret` mark the field `#[serde(skip)]`.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_only_whether_it_is_set() {
        let secret = Secret::from("hunter2-hunter2");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
        assert_eq!(secret.expose(), "hunter2-hunter2");
    }

    #[test]
    fn it_round_trips_through_toml_for_config_layering() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        struct Holder {
            key: Secret,
        }
        let holder: Holder = toml::from_str("key = \"abc\"").expect("toml");
        assert_eq!(holder.key.expose(), "abc");
        let value = toml::Value::try_from(&holder).expect("serialise");
        let back: Holder = value.try_into().expect("deserialise");
        assert_eq!(back, holder);
        assert!(!format!("{holder:?}").contains("abc"));
    }
}
