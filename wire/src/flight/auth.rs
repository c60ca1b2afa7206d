//! Flight credentials: the users and roles of REST and Postgres.
//!
//! Every call carries `authorization: Bearer KEY` (as REST does) or
//! `authorization: Basic base64(NAME:KEY)` (a Postgres login). Clients
//! that only log in by the handshake (pyarrow's
//! `authenticate_basic_token`, ADBC with `username`/`password`) send the
//! basic form to `Handshake` and get `authorization: Bearer KEY` back,
//! which they then send with every call: the token is the user's own key,
//! so no server-side session exists to expire or leak.

use base64::Engine as _;
use tonic::metadata::MetadataMap;

use super::FlightError;
use crate::auth::{Auth, Role};

/// The `authorization` header of a call, when it is text.
fn header(metadata: &MetadataMap) -> Option<&str> {
    metadata.get("authorization").and_then(|v| v.to_str().ok())
}

/// Standard base64 with or without padding: Go's Flight client (ADBC's
/// driver) sends the basic credential unpadded.
const BASIC: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// `NAME:KEY` of a `Basic` credential.
fn basic(encoded: &str) -> Option<(String, String)> {
    let bytes = BASIC.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (name, key) = text.split_once(':')?;
    Some((name.to_owned(), key.to_owned()))
}

/// Strips an authorization scheme, compared without regard to case as
/// RFC 9110 says.
fn scheme<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(name).then_some(rest.trim())
}

/// The role and key of the caller. Without configured users every caller
/// has the write role (the server then listens on loopback only).
pub fn credentials(
    auth: &Auth,
    metadata: &MetadataMap,
) -> Result<(Role, Option<String>), FlightError> {
    let value = header(metadata);
    if auth.is_open() {
        let key = value.and_then(|v| {
            scheme(v, "Bearer")
                .map(str::to_owned)
                .or_else(|| scheme(v, "Basic").and_then(basic).map(|(_, key)| key))
        });
        return Ok((Role::Write, key));
    }
    let value = value.ok_or(FlightError::Unauthenticated)?;
    if let Some(key) = scheme(value, "Bearer") {
        let role = auth.role_of_key(key).ok_or(FlightError::Unauthenticated)?;
        return Ok((role, Some(key.to_owned())));
    }
    if let Some((name, key)) = scheme(value, "Basic").and_then(basic) {
        let role = auth
            .role_of_login(&name, &key)
            .ok_or(FlightError::Unauthenticated)?;
        return Ok((role, Some(key)));
    }
    Err(FlightError::Unauthenticated)
}

/// The role of the caller.
pub fn role(auth: &Auth, metadata: &MetadataMap) -> Result<Role, FlightError> {
    credentials(auth, metadata).map(|(role, _)| role)
}

/// The caller's role if it may write.
pub fn writer(auth: &Auth, metadata: &MetadataMap) -> Result<Role, FlightError> {
    let role = role(auth, metadata)?;
    if !role.may_write() {
        return Err(FlightError::ReadOnly);
    }
    Ok(role)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().expect("ascii header"));
        m
    }

    /// Proves both credential forms map to the configured roles, that a
    /// wrong key or password is refused, and that without users every
    /// caller may write.
    #[test]
    fn bearer_and_basic_map_to_roles() {
        let auth = Auth::new(vec![
            "alice:s3cret:write".parse().expect("user"),
            "bob:r3ad:read".parse().expect("user"),
        ]);
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(role(&auth, &with("Bearer s3cret")).ok(), Some(Role::Write));
        assert_eq!(role(&auth, &with("bearer r3ad")).ok(), Some(Role::Read));
        assert_eq!(
            role(&auth, &with(&format!("Basic {}", b64("bob:r3ad")))).ok(),
            Some(Role::Read)
        );
        assert!(role(&auth, &with(&format!("Basic {}", b64("bob:s3cret")))).is_err());
        // Unpadded, as Go's Flight client sends it ("bob:r3ad" pads to
        // "Ym9iOnIzYWQ=").
        assert_eq!(
            role(&auth, &with("Basic Ym9iOnIzYWQ")).ok(),
            Some(Role::Read)
        );
        assert!(role(&auth, &with("Bearer nope")).is_err());
        assert!(role(&auth, &MetadataMap::new()).is_err());
        assert!(matches!(
            writer(&auth, &with("Bearer r3ad")),
            Err(FlightError::ReadOnly)
        ));
        let open = Auth::new(Vec::new());
        assert_eq!(role(&open, &MetadataMap::new()).ok(), Some(Role::Write));
    }
}
