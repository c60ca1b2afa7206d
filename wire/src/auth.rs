//! Users, their keys and roles, shared by the REST and Postgres front ends.
//!
//! A user has a name, a secret key and a role. REST clients send the key as
//! `Authorization: Bearer KEY`; Postgres clients log in with the user's name
//! and the key as password. With no users configured the server is open:
//! every request has the write role.

use std::fmt;

use subtle::ConstantTimeEq;

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Queries, searches, proofs, snapshot listings.
    Read,
    /// Everything `Read` may, plus writes, DDL and snapshots.
    Write,
}

impl Role {
    pub fn may_write(self) -> bool {
        self == Role::Write
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Write => "write",
        })
    }
}

/// One configured user. Built by [`User::new`] (also from a settings
/// file, through `UserFields`), so its name and key are never empty.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "UserFields")]
pub struct User {
    pub name: String,
    pub key: String,
    pub role: Role,
}

/// A user as written in the settings file, before it is checked.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFields {
    name: String,
    key: String,
    role: Role,
}

/// Why a user is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// An empty key would let an empty bearer token or password in.
    #[error("user {name:?} has an empty key")]
    EmptyKey { name: String },
    #[error("a user has an empty name")]
    EmptyName,
}

impl User {
    /// A user with a non-empty name and key.
    pub fn new(name: String, key: String, role: Role) -> Result<User, UserError> {
        if name.is_empty() {
            return Err(UserError::EmptyName);
        }
        if key.is_empty() {
            return Err(UserError::EmptyKey { name });
        }
        Ok(User { name, key, role })
    }
}

impl TryFrom<UserFields> for User {
    type Error = UserError;

    fn try_from(fields: UserFields) -> Result<User, UserError> {
        User::new(fields.name, fields.key, fields.role)
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key never reaches a log.
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl std::str::FromStr for User {
    type Err = String;

    /// `NAME:KEY:ROLE`, the form of `--user` and `VALORI_USERS`.
    fn from_str(s: &str) -> Result<User, String> {
        let mut parts = s.splitn(3, ':');
        let (Some(name), Some(key), Some(role)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("user {s:?} is not NAME:KEY:ROLE"));
        };
        let role = match role {
            "read" => Role::Read,
            "write" => Role::Write,
            other => return Err(format!("role {other:?} is not read or write")),
        };
        User::new(name.into(), key.into(), role).map_err(|e| e.to_string())
    }
}

/// The configured users; none means open access.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    users: Vec<User>,
}

impl Auth {
    pub fn new(users: Vec<User>) -> Auth {
        Auth { users }
    }

    /// No users: every request is allowed with the write role.
    pub fn is_open(&self) -> bool {
        self.users.is_empty()
    }

    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// The role of the user whose key this is. Every configured key is
    /// compared in constant time, so timing tells nothing about which
    /// prefix matched.
    pub fn role_of_key(&self, key: &str) -> Option<Role> {
        let mut found = None;
        for user in &self.users {
            if bool::from(user.key.as_bytes().ct_eq(key.as_bytes())) {
                found = Some(user.role);
            }
        }
        found
    }

    /// The role of `name` logging in with `password`.
    pub fn role_of_login(&self, name: &str, password: &str) -> Option<Role> {
        let user = self.user(name)?;
        bool::from(user.key.as_bytes().ct_eq(password.as_bytes())).then_some(user.role)
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(vec![
            "alice:s3cret:write".parse().unwrap(),
            "bob:r3ad:read".parse().unwrap(),
        ])
    }

    #[test]
    fn keys_map_to_roles() {
        let a = auth();
        assert!(!a.is_open());
        assert_eq!(a.role_of_key("s3cret"), Some(Role::Write));
        assert_eq!(a.role_of_key("r3ad"), Some(Role::Read));
        assert_eq!(a.role_of_key("s3cre"), None);
        assert_eq!(a.role_of_key(""), None);
        assert_eq!(a.role_of_login("bob", "r3ad"), Some(Role::Read));
        assert_eq!(a.role_of_login("bob", "s3cret"), None);
        assert_eq!(a.role_of_login("carol", "s3cret"), None);
    }

    #[test]
    fn user_syntax_is_checked() {
        assert!("alice:key".parse::<User>().is_err());
        assert!("alice:key:admin".parse::<User>().is_err());
        assert!(":key:read".parse::<User>().is_err());
        // The key may not hold ':'.
        assert!("svc:a:b:read".parse::<User>().is_err());
        assert!(!format!("{:?}", auth().users()[0]).contains("s3cret"));
    }
}
