//! The bearer token that POST endpoints require when `admin.token_file` is set.
//!
//! The file is read on every POST, so a rotated token applies at once without a reload; a
//! configured file that cannot be read refuses every POST (fail closed).

use std::path::Path;

use http::header::AUTHORIZATION;
use http::HeaderMap;
use subtle::ConstantTimeEq;

/// Why a POST was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No or wrong `Authorization: Bearer` token (401).
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// The token file is configured but unreadable or empty (503).
    #[error("admin token file {path} cannot be used: {reason}")]
    TokenFile {
        /// The configured file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// Check the request's bearer token against `token_file` (no file configured: allowed).
pub fn authorize(token_file: Option<&Path>, headers: &HeaderMap) -> Result<(), AuthError> {
    let Some(path) = token_file else {
        return Ok(());
    };
    let expected = std::fs::read_to_string(path).map_err(|e| AuthError::TokenFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let expected = expected.trim();
    if expected.is_empty() {
        return Err(AuthError::TokenFile {
            path: path.display().to_string(),
            reason: "the file is empty".to_owned(),
        });
    }
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    // Constant time over the token bytes, so response timing does not reveal a prefix.
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_checks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let mut h = HeaderMap::new();
        assert!(authorize(None, &h).is_ok());
        assert!(matches!(
            authorize(Some(&file), &h),
            Err(AuthError::Unauthorized)
        ));
        h.insert(AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(matches!(
            authorize(Some(&file), &h),
            Err(AuthError::Unauthorized)
        ));
        h.insert(AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorize(Some(&file), &h).is_ok());
        let missing = dir.path().join("nope");
        assert!(matches!(
            authorize(Some(&missing), &h),
            Err(AuthError::TokenFile { .. })
        ));
    }
}
