//! Values of `DBT_ENV_SECRET_*` variables, kept out of artifacts and logs.

use std::borrow::Cow;
use std::sync::{LazyLock, RwLock};

static SECRETS: LazyLock<RwLock<Vec<String>>> = LazyLock::new(|| RwLock::new(Vec::new()));

/// Remembers a secret value so that `scrub` hides it.
pub fn register(value: &str) {
    if value.is_empty() {
        return;
    }
    if let Ok(mut s) = SECRETS.write() {
        if !s.iter().any(|v| v == value) {
            s.push(value.to_string());
        }
    }
}

/// Registers the values of every `DBT_ENV_SECRET_*` variable in the environment.
pub fn register_from_env() {
    for (k, v) in std::env::vars() {
        if k.starts_with("DBT_ENV_SECRET_") {
            register(&v);
        }
    }
}

/// Replaces every known secret value with `*****`.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Ok(s) = SECRETS.read() else {
        return Cow::Borrowed(text);
    };
    if !s.iter().any(|secret| text.contains(secret.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for secret in s.iter() {
        out = out.replace(secret.as_str(), "*****");
    }
    Cow::Owned(out)
}

pub fn any() -> bool {
    SECRETS.read().map(|s| !s.is_empty()).unwrap_or(false)
}
